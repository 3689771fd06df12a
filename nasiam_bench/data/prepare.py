"""``nasiam-bench data prepare``: a dataset source to one FFCV ``.beton`` per split, checked and written atomically.

Layout under the data root (``--root``, else ``$NASIAM_DATA``, else ``./data``)::

    <root>/<dataset>/meta.json            classes, per-split counts, the source and its digest
    <root>/<dataset>/<split>.beton        FFCV file: image (RGB), label (int)
    <root>/<dataset>/<split>.labels.npy   the labels again, for stratified subsets and kNN without a loader
    <root>/<dataset>/<split>.positions.npy  (split off another) its images' positions among that split's
    <root>/<dataset>/source/              an extracted archive, kept for the torch reference loader

A source without an evaluation split gets one: a seeded, class-stratified ``holdout`` of its training images
(``--holdout``, 10% by default), left out of ``train``, so that kNN never queries a bank that holds the query.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from nasiam_bench.core.io import atomic_path, atomic_write_json, usual_mode
from nasiam_bench.core.progress import progress
from nasiam_bench.data.datasets import (
    CifarSource,
    DataError,
    DatasetInfo,
    FolderSource,
    ImageSource,
    dataset_info,
    extract_archive,
    find_cifar_folder,
    is_archive,
    source_digest,
    tree_root,
)
from nasiam_bench.data.ffcv_support import ffcv_missing
from nasiam_bench.data.splits import stratified_subset

WRITER_VERSION = 1  # bump when the stored format changes, so that existing files are rewritten
JPEG_QUALITY = 90
HOLDOUT_FRACTION = 0.1
HOLDOUT_SEED = 0
HOLDOUT_SPLIT = "holdout"


class CorruptImageWarning(UserWarning):
    """An image of the source could not be decoded and was left out."""


def data_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$NASIAM_DATA``, else ``./data``."""
    return Path(root or os.environ.get("NASIAM_DATA") or "data")


@dataclass(frozen=True)
class SplitFiles:
    beton: Path
    labels: Path
    count: int


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset as the loaders see it."""

    info: DatasetInfo
    folder: Path
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def train_split(self) -> str:
        return self.meta["train_split"]

    @property
    def eval_split(self) -> str:
        return self.meta["eval_split"]

    def split(self, name: str) -> SplitFiles:
        if name not in self.meta["splits"]:
            raise DataError(f"{self.folder}: no split {name!r}; prepared: {', '.join(self.meta['splits'])}")
        entry = self.meta["splits"][name]
        return SplitFiles(self.folder / entry["beton"], self.folder / entry["labels"], int(entry["count"]))

    def labels(self, name: str) -> np.ndarray:
        files = self.split(name)
        labels = np.load(files.labels)
        if len(labels) != files.count:
            raise DataError(f"{files.labels}: holds {len(labels)} labels; meta.json says {files.count}")
        return labels

    def check_beton(self, name: str) -> SplitFiles:
        """The split's files, after checking that the .beton holds the count meta.json recorded."""
        from ffcv.reader import Reader

        files = self.split(name)
        if not files.beton.is_file():
            raise DataError(f"{files.beton}: missing; run `nasiam-bench data prepare {self.info.name}` again")
        try:
            found = Reader(str(files.beton)).num_samples
        except Exception as exc:  # ffcv raises bare errors for a damaged header
            raise DataError(f"{files.beton}: not a readable .beton ({type(exc).__name__}: {exc})") from None
        if found != files.count:
            raise DataError(
                f"{files.beton}: holds {found} images, but meta.json says {files.count}; "
                f"the file is stale or damaged: prepare it again with --force"
            )
        return files

    @property
    def tree(self) -> Path | None:
        """The ImageFolder tree or CIFAR folder the torch reference loader reads."""
        return Path(self.meta["tree"]) if self.meta.get("tree") else None


def open_prepared(dataset: str, root: str | Path | None = None) -> PreparedDataset:
    """A prepared dataset, or an error that says how to prepare it."""
    info = dataset_info(dataset)
    folder = data_root(root) / info.name
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise DataError(
            f"{meta_path}: not found; prepare the data first: "
            f"`nasiam-bench data prepare {info.name} --source PATH [--root {data_root(root)}]`"
        )
    return PreparedDataset(info, folder, read_meta(meta_path))


META_KEYS = ("classes", "splits", "train_split", "eval_split", "source_digest", "writer")


def read_meta(path: Path) -> dict[str, Any]:
    """A prepared dataset's ``meta.json``, or a one-line error that says how to prepare it again."""
    try:
        meta = json.loads(Path(path).read_text())
        missing = [k for k in META_KEYS if k not in meta]
    except (OSError, ValueError, TypeError) as exc:
        missing, meta = [f"({type(exc).__name__}: {exc})"], None
    if missing:
        name = Path(path).parent.name
        raise DataError(
            f"{path}: not a meta.json this suite wrote (missing {', '.join(missing)}); prepare the data again: "
            f"`nasiam-bench data prepare {name} --source PATH --force`"
        )
    return meta


# ------------------------------------------------------------------------------------------------------ prepare


def prepare(
    dataset: str,
    source: str | Path | None = None,
    *,
    download: bool = False,
    root: str | Path | None = None,
    workers: int = 2,
    max_resolution: int = 256,
    force: bool = False,
    holdout: float = HOLDOUT_FRACTION,
) -> PreparedDataset:
    """Write the .beton files of ``dataset`` from ``source`` (or a torchvision download); skip if up to date.

    ``holdout``: the fraction of the training images held out for evaluation when the source has no other split.
    """
    info = dataset_info(dataset)
    if not 0 <= holdout < 1:
        raise DataError(f"--holdout {holdout}: the held-out fraction must be in [0, 1), e.g. 0.1")
    folder = data_root(root) / info.name
    with _removed_on_failure(folder):
        folder.mkdir(parents=True, exist_ok=True)
        # Several processes may prepare one dataset at once (the jobs of a sweep, test workers): one writes, the
        # others wait, then find it up to date.
        with FileLock(folder.parent / f".{info.name}.prepare.lock"):
            return _prepare(info, folder, source, download, workers, max_resolution, force, holdout)


@contextlib.contextmanager
def _removed_on_failure(folder: Path) -> Iterator[None]:
    """Remove the folders the block created (the first missing ancestor of ``folder`` down) if it fails."""
    first_new = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
    try:
        yield
    except BaseException:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        raise


def _prepare(info, folder: Path, source, download: bool, workers: int, max_resolution: int, force: bool, holdout):
    options = default_writer_options(info, max_resolution, holdout)
    source = _source(info, folder, source, download)
    digest = source_digest(source)
    existing = _up_to_date(folder, digest, options)
    if existing is not None and not force:
        print(f"{info.name}: up to date in {folder} ({_counts(existing)}); --force rewrites")
        return PreparedDataset(info, folder, existing)

    images, tree = _open_source(info, source, folder)
    splits = images.splits()
    eval_split = _eval_split(info, source, images, splits, holdout)
    meta: dict[str, Any] = {
        "dataset": info.name,
        "classes": images.classes,
        "train_split": "train",
        "eval_split": eval_split or HOLDOUT_SPLIT,
        "source": str(source.resolve()),
        "source_digest": digest,
        "writer": options,
        "tree": str(tree.resolve()) if tree else None,
        "holdout": None,
        "splits": {},
    }
    for split in splits:
        samples, skipped = _readable_samples(images, split, workers)
        parts = {split: (samples, None)}
        if split == "train" and eval_split is None:
            parts, meta["holdout"] = _hold_out(samples, holdout)
        for name, (part, positions) in parts.items():
            entry = _write_split(info, images, name, part, folder, workers, max_resolution)
            entry.update(skipped=len(skipped), skipped_items=skipped)
            if positions is not None:
                entry.update(source_split=split, positions=_save_npy(folder / f"{name}.positions.npy", positions))
            meta["splits"][name] = entry
    atomic_write_json(folder / "meta.json", meta)
    print(f"{info.name}: wrote {folder} ({_counts(meta)})")
    return PreparedDataset(info, folder, meta)


def _source(info, folder: Path, source, download: bool) -> Path:
    """Where to prepare from: the given path, or torchvision's download; refused when there is neither."""
    if download:
        source = _download(info, folder)
    if source is None:
        raise DataError(
            f"prepare {info.name}: give --source PATH (an ImageFolder tree, a .tar/.tar.gz of one"
            + (", or torchvision's CIFAR folder" if info.cifar else "")
            + ")"
            + (" or --download" if info.cifar else "")
        )
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"prepare {info.name}: source {source} does not exist")
    return source


def _eval_split(info, source: Path, images, splits: list[str], holdout) -> str | None:
    """The split evaluation reads (None: a held-out part of ``train``); a source it cannot serve is refused."""
    if "train" not in splits:
        raise DataError(f"{source}: no 'train' split; found {', '.join(splits)}")
    eval_split = info.eval_split if info.eval_split in splits else next((s for s in splits if s != "train"), None)
    if eval_split is None and holdout == 0:
        raise DataError(
            f"{source}: no split besides 'train' and --holdout 0: evaluation would query the kNN bank with its own "
            f"images; give --holdout FRACTION (e.g. 0.1) or a test split"
        )
    if info.num_classes is not None and len(images.classes) != info.num_classes:
        raise DataError(f"{source}: holds {len(images.classes)} classes; {info.name} has {info.num_classes}")
    return eval_split


def default_writer_options(
    info: DatasetInfo, max_resolution: int = 256, holdout: float = HOLDOUT_FRACTION
) -> dict[str, Any]:
    """What ``meta.json`` records of how the files were written (part of the dataset's identity)."""
    return {"version": WRITER_VERSION, "max_resolution": max_resolution, "raw": info.store_raw, "holdout": holdout}


def _counts(meta: dict[str, Any]) -> str:
    return ", ".join(
        f"{s}: {e['count']:,} images" + (f" ({e['skipped']} corrupt skipped)" if e["skipped"] else "")
        for s, e in meta["splits"].items()
    )


def _up_to_date(folder: Path, digest: str, options: dict[str, Any]) -> dict[str, Any] | None:
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_meta(meta_path)
    except DataError:  # damaged: written anew
        return None
    if meta.get("source_digest") != digest or meta.get("writer") != options:
        return None
    splits = meta["splits"].values()
    if not all((folder / e["labels"]).is_file() for e in splits):
        return None
    # Prepared without FFCV, a dataset gains its .beton once FFCV is there. Asked only when a .beton is missing:
    # importing FFCV compiles with numba (seconds), which a process reading with the torch loader need not pay.
    betons_there = all((folder / e["beton"]).is_file() for e in splits)
    return meta if betons_there or ffcv_missing() else None


def _download(info: DatasetInfo, folder: Path) -> Path:
    if info.cifar is None:
        raise DataError(
            f"--download: torchvision downloads cifar10 and cifar100 only, not {info.name}; "
            f"give --source PATH to an ImageFolder tree or archive"
        )
    import torchvision.datasets

    cls = getattr(torchvision.datasets, info.cifar.torchvision_class)
    target = folder / "download"
    fresh = not target.exists()
    try:
        for train in (True, False):
            cls(root=str(target), train=train, download=True)
    except OSError as exc:  # URLError, a refused connection, a failed checksum
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"--download: could not download {info.name} through torchvision ({reason}); offline? give "
            f"--source PATH, a copy of the dataset (e.g. ../shared/datasets/{info.name}.tar.gz)"
        ) from None
    return target / info.cifar.folder


def _open_source(info: DatasetInfo, source: Path, folder: Path) -> tuple[ImageSource, Path | None]:
    if info.cifar is not None and source.is_dir():
        cifar_folder = find_cifar_folder(source, info.cifar)
        if cifar_folder is not None:
            return CifarSource(cifar_folder, info.cifar), cifar_folder
    if is_archive(source):
        extracted = folder / "source"
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".extract-"))
        tmp.chmod(usual_mode(directory=True))  # mkdtemp makes 0700
        try:
            extract_archive(source, tmp)
            FolderSource(tree_root(tmp), origin=str(source))  # check the layout before replacing the old copy
            shutil.rmtree(extracted, ignore_errors=True)
            os.replace(tmp, extracted)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        root = tree_root(extracted)
        return FolderSource(root, origin=str(source)), root
    if source.is_dir():
        root = tree_root(source)
        return FolderSource(root, origin=str(source)), root
    raise DataError(
        f"{source}: not a folder or a .tar/.tar.gz archive"
        + (f", nor torchvision's {info.cifar.folder}/" if info.cifar else "")
    )


# ---------------------------------------------------------------------------------------------- one split


class _Readable:
    """The indexed dataset FFCV's writer consumes: (HxWx3 uint8 image, label)."""

    def __init__(self, images: ImageSource, samples: list[tuple[object, int]]) -> None:
        self.images, self.samples = images, samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        item, label = self.samples[i]
        return self.images.read(item), label


def _try_read(args: tuple[ImageSource, object]) -> str | None:
    images, item = args
    try:
        image = images.read(item)
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            return f"decoded to shape {image.shape}, not HxWx3"
        return None
    except Exception as exc:  # PIL raises many types for a damaged file
        return f"{type(exc).__name__}: {exc}"


def _readable_samples(images: ImageSource, split: str, workers: int) -> tuple[list[tuple[object, int]], list[str]]:
    """The split's samples whose image decodes; each one that does not is reported and counted."""
    samples = images.samples(split)
    if not samples:
        raise DataError(f"split {split!r} holds no images")
    if isinstance(images, CifarSource):  # arrays already in memory, their shape checked on load
        return samples, []
    jobs = [(images, item) for item, _ in samples]
    shown = dict(desc=f"check {split}", unit="img", total=len(jobs))
    if workers > 1:
        with mp.get_context("fork").Pool(workers) as pool:
            errors = list(progress(pool.imap(_try_read, jobs, chunksize=256), **shown))
    else:
        errors = [_try_read(job) for job in progress(jobs, **shown)]
    good, skipped = [], []
    for (item, label), error in zip(samples, errors, strict=True):
        if error is None:
            good.append((item, label))
        else:
            skipped.append(images.describe(item))
            warnings.warn(f"skipping corrupt image {skipped[-1]}: {error}", CorruptImageWarning, stacklevel=2)
    if not good:
        raise DataError(f"split {split!r}: none of its {len(samples)} images could be decoded")
    return good, skipped


def _hold_out(samples: list[tuple[object, int]], fraction: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The training samples split into ``train`` and a class-stratified, seeded ``holdout`` (with positions)."""
    labels = np.array([label for _, label in samples], dtype=np.int64)
    held = stratified_subset(labels, max(1, round(fraction * len(samples))), HOLDOUT_SEED)
    kept = np.setdiff1d(np.arange(len(samples)), held, assume_unique=True)
    if len(kept) == 0:
        raise DataError(f"--holdout {fraction} leaves no training image of {len(samples)}")
    parts = {name: ([samples[i] for i in idx], idx) for name, idx in (("train", kept), (HOLDOUT_SPLIT, held))}
    return parts, {"fraction": fraction, "seed": HOLDOUT_SEED, "from": "train", "count": len(held)}


def _save_npy(path: Path, array: np.ndarray) -> str:
    with atomic_path(path) as tmp:
        with tmp.open("wb") as fh:
            np.save(fh, array)
    return path.name


def _write_split(
    info: DatasetInfo,
    images: ImageSource,
    split: str,
    samples: list[tuple[object, int]],
    folder: Path,
    workers: int,
    max_resolution: int,
) -> dict[str, Any]:
    beton, labels_file = folder / f"{split}.beton", folder / f"{split}.labels.npy"
    labels = np.array([label for _, label in samples], dtype=np.int64)
    entry = {"beton": beton.name, "labels": _save_npy(labels_file, labels), "count": len(samples)}
    if ffcv_missing():  # the torch loader reads the source tree; a .beton is written once FFCV is there
        return entry
    from ffcv.fields import IntField, RGBImageField
    from ffcv.reader import Reader
    from ffcv.writer import DatasetWriter

    image_field = (
        RGBImageField(write_mode="raw")
        if info.store_raw
        else RGBImageField(write_mode="jpg", max_resolution=max_resolution, jpeg_quality=JPEG_QUALITY)
    )
    with atomic_path(beton) as tmp:
        writer = DatasetWriter(str(tmp), {"image": image_field, "label": IntField()}, num_workers=max(1, workers))
        writer.from_indexed_dataset(_Readable(images, samples))
        written = Reader(str(tmp)).num_samples
        if written != len(samples):
            raise DataError(f"{beton}: wrote {written} images of {len(samples)} readable ones in the source")
    return entry
