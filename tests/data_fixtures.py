"""Tiny datasets the tests write themselves: ImageFolder trees, archives and CIFAR pickles."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def make_tree(
    root: Path, classes=("ant", "bee", "cat"), per_split=None, sizes=((20, 24), (24, 20), (22, 22)), fmt="png", seed=0
) -> Path:
    """``root/<split>/<class>/<i>.<fmt>`` with random images of varied sizes; returns ``root``."""
    per_split = per_split or {"train": 6, "val": 2}
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = sizes[i % len(sizes)]
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:03d}.{fmt}")
    return root


def make_archive(tree_parent: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for child in tree_parent.iterdir():
            tar.add(child, arcname=child.name)
    return archive


def write_cifar100(root: Path, n_train=30, n_test=10, seed=0) -> tuple[Path, dict]:
    """torchvision's exact CIFAR-100 layout: ``root/cifar-100-python/{train,test,meta}``, pickled dicts with
    'data' (N x 3072 uint8, planes R, G, B) and 'fine_labels'. Returns the folder and the arrays written."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    arrays = {}
    for name, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        batch = {
            "filenames": [f"img_{i}.png" for i in range(n)],
            "batch_label": f"{name} batch",
            "fine_labels": fine,
            "coarse_labels": [f // 5 for f in fine],
            "data": data,
        }
        with (folder / name).open("wb") as fh:
            pickle.dump(batch, fh, protocol=2)
        arrays[name] = (data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), np.array(fine))
    with (folder / "meta").open("wb") as fh:
        pickle.dump(
            {
                "fine_label_names": [f"class{i:02d}" for i in range(100)],
                "coarse_label_names": [f"super{i:02d}" for i in range(20)],
            },
            fh,
            protocol=2,
        )
    return folder, arrays
