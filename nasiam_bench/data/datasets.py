"""Datasets: what each one is (classes, splits, size, statistics) and how to read its images from a source.

A source is one of: an ImageFolder tree ``<root>/<split>/<class>/.../<image>`` (ImageNet, Imagenette, the JPEG copy
of CIFAR-10 in ../shared/datasets), a ``.tar``/``.tar.gz`` archive of such a tree, or, for CIFAR, torchvision's
pickled batches (``cifar-10-batches-py`` / ``cifar-100-python``), which ``--download`` fetches through torchvision.
Each split folder is read as torchvision's ``ImageFolder`` reads its root: its subfolders are the classes, and every
file with one of torchvision's image extensions at any depth below a class folder is an image of that class.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from nasiam_bench.core.registry import DATASETS, NasiamBenchError

FOLDER_LAYOUT = "<root>/<split>/<class>/<image> (images may sit deeper below <class>/, as torchvision's ImageFolder)"
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(NasiamBenchError):
    """A dataset source, archive, image or .beton that is not what it should be."""


@dataclass(frozen=True)
class CifarFormat:
    """torchvision's on-disk CIFAR layout: pickled batches in one folder."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    meta_file: str
    names_key: str
    torchvision_class: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_size: int  # the resolution the SSL recipe trains at by default
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_split: str = "train"
    eval_split: str = "val"
    num_classes: int | None = None  # None: whatever the source holds
    blur: bool = True  # MoCo v2's Gaussian blur, for ImageNet-sized images only
    store_raw: bool = False  # small images are stored uncompressed: exact and fastest to decode
    cifar: CifarFormat | None = field(default=None, repr=False)


CIFAR10 = DATASETS.register("cifar10")(
    DatasetInfo(
        "cifar10",
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        eval_split="test",
        num_classes=10,
        blur=False,
        store_raw=True,
        cifar=CifarFormat(
            "cifar-10-batches-py",
            tuple(f"data_batch_{i}" for i in range(1, 6)),
            ("test_batch",),
            "labels",
            "batches.meta",
            "label_names",
            "CIFAR10",
        ),
    )
)
CIFAR100 = DATASETS.register("cifar100")(
    DatasetInfo(
        "cifar100",
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        eval_split="test",
        num_classes=100,
        blur=False,
        store_raw=True,
        cifar=CifarFormat(
            "cifar-100-python", ("train",), ("test",), "fine_labels", "meta", "fine_label_names", "CIFAR100"
        ),
    )
)
DATASETS.register("imagenet")(DatasetInfo("imagenet", 224, IMAGENET_MEAN, IMAGENET_STD, num_classes=1000))
DATASETS.register("imagenette")(DatasetInfo("imagenette", 224, IMAGENET_MEAN, IMAGENET_STD, num_classes=10))
DATASETS.register("imagefolder")(DatasetInfo("imagefolder", 224, IMAGENET_MEAN, IMAGENET_STD))


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name)


# ------------------------------------------------------------------------------------------------------ sources


class ImageSource(Protocol):
    """Images of a dataset, by split: labelled items and a way to read one as an HxWx3 uint8 array."""

    classes: list[str]

    def splits(self) -> list[str]: ...

    def samples(self, split: str) -> list[tuple[object, int]]: ...

    def read(self, item: object) -> np.ndarray: ...

    def describe(self, item: object) -> str: ...


class FolderSource:
    """An ImageFolder tree: ``root/<split>/<class>/.../<image>``, each split read as torchvision's ImageFolder.

    The classes are those of the training split (the union over splits when there is none); a split holding a class
    the training split lacks is an error, as is a split folder with images but no class subfolders. Folders beside
    the splits that hold no image at all (notes, annotations) are left alone.
    """

    def __init__(self, root: Path, origin: str | None = None) -> None:
        self.root = root
        origin = origin or str(root)
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self._class_names = {p.name: _split_classes(p) for p in folders if _holds_images(p)}
        self._split_dirs = {p.name: p for p in folders if p.name in self._class_names}
        if not self._split_dirs:
            raise DataError(f"{origin}: not an ImageFolder tree; expected {FOLDER_LAYOUT}, found {_preview(root)}")
        train = self._class_names.get("train")
        for split, names in self._class_names.items():
            stray = sorted(set(names) - set(train or names))
            if stray:
                raise DataError(
                    f"{self._split_dirs[split]}: classes {', '.join(stray[:5])} are not in train/; a split folder "
                    f"holds the training classes only ({FOLDER_LAYOUT})"
                )
        self.classes = list(train) if train else sorted({c for names in self._class_names.values() for c in names})

    def splits(self) -> list[str]:
        return list(self._split_dirs)

    def samples(self, split: str) -> list[tuple[object, int]]:
        folder = self._split_dirs[split]
        return list(_listing(str(folder), tuple(self.classes), _tree_signature(folder)))

    def read(self, item: object) -> np.ndarray:
        # torchvision's loader: grayscale, CMYK, palette and alpha images become RGB.
        with Image.open(item) as img:
            return np.asarray(img.convert("RGB"))

    def describe(self, item: object) -> str:
        return str(item)


@functools.lru_cache(maxsize=8)
def _listing(folder: str, classes: tuple[str, ...], signature: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
    """A split folder's images and labels, as torchvision's ImageFolder lists them. Listing 50,000 files takes
    seconds, and every torch loader of a run lists its split: kept while ``signature`` holds."""
    index = {c: i for i, c in enumerate(classes)}
    return tuple(make_dataset(folder, index, IMG_EXTENSIONS, allow_empty=True))


def _tree_signature(folder: Path) -> tuple[int, ...]:
    """The modification time and entry count of a split folder and of each class folder: they change when an image
    is added to or removed from a class folder (one deeper inside is caught by the loader's count check against the
    .beton)."""
    folders = (folder, *sorted(c for c in folder.iterdir() if c.is_dir()))
    return tuple(x for p in folders for x in (p.stat().st_mtime_ns, sum(1 for _ in os.scandir(p))))


def _split_classes(folder: Path) -> list[str]:
    try:
        return find_classes(folder)[0]
    except FileNotFoundError:
        raise DataError(f"{folder}: holds images but no class subfolders; expected {FOLDER_LAYOUT}") from None


def _holds_images(folder: Path) -> bool:
    return any(p.name.lower().endswith(IMG_EXTENSIONS) for p in folder.rglob("*") if p.is_file())


class CifarSource:
    """torchvision's pickled CIFAR batches, read in their exact on-disk format."""

    def __init__(self, folder: Path, fmt: CifarFormat) -> None:
        self.folder, self.fmt = folder, fmt
        meta = _unpickle(folder / fmt.meta_file)
        self.classes = [n.decode() if isinstance(n, bytes) else n for n in meta[fmt.names_key]]
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def splits(self) -> list[str]:
        return ["train", "test"]

    def _load(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split not in self._arrays:
            images, labels = [], []
            for name in self.fmt.train_files if split == "train" else self.fmt.test_files:
                batch = _unpickle(self.folder / name)
                data = np.asarray(batch["data"], dtype=np.uint8)
                if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
                    raise DataError(f"{self.folder / name}: 'data' has shape {data.shape}; expected (N, 3072)")
                images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels.append(np.asarray(batch[self.fmt.label_key], dtype=np.int64))
            self._arrays[split] = (np.concatenate(images), np.concatenate(labels))
        return self._arrays[split]

    def samples(self, split: str) -> list[tuple[object, int]]:
        _, labels = self._load(split)
        return [((split, i), int(y)) for i, y in enumerate(labels)]

    def read(self, item: object) -> np.ndarray:
        split, i = item
        return self._load(split)[0][i]

    def describe(self, item: object) -> str:
        return f"{self.folder} {item[0]}[{item[1]}]"


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return pickle.load(fh, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"{path}: missing; a torchvision CIFAR folder holds {path.parent.name}/{path.name}") from None
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a CIFAR pickle ({exc})") from None


def _preview(root: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:6]
    return ", ".join(names) if names else "an empty folder"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, into: Path) -> Path:
    """Extract a tar archive and return the ImageFolder root inside it (descending through a single top folder)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"{archive}: cannot extract ({exc}); expected a .tar or .tar.gz of an ImageFolder tree"
        ) from None
    return tree_root(into)


def tree_root(path: Path) -> Path:
    """The folder holding the split folders (one of them ``train/``): ``path`` itself, or inside its only
    subfolder (``cifar10/``)."""
    if (path / "train").is_dir():
        return path
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    return tree_root(entries[0]) if len(entries) == 1 and entries[0].is_dir() else path


def find_cifar_folder(source: Path, fmt: CifarFormat) -> Path | None:
    """The folder of pickled batches, given it or its parent (torchvision's ``root``)."""
    for candidate in (source, source / fmt.folder):
        if candidate.is_dir() and (candidate / fmt.meta_file).is_file():
            return candidate
    return None


def source_digest(path: Path) -> str:
    """A digest that changes when the source changes: file contents for an archive or CIFAR batches, the
    listing (names, sizes, modification times) for a tree, which may hold a million files."""
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(path)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
