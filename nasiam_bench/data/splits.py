"""Seeded, class-stratified subsets and the search split into two disjoint halves."""

from __future__ import annotations

import numpy as np

from nasiam_bench.data.datasets import DataError


def stratified_subset(labels: np.ndarray, size: int, seed: int, indices: np.ndarray | None = None) -> np.ndarray:
    """``size`` indices (of ``indices``, default all) with each class in proportion, sorted; 0 or more than
    there are: all of them."""
    if size < 0:
        raise DataError(f"subset size must be >= 0, got {size}")
    pool = np.arange(len(labels)) if indices is None else np.asarray(indices)
    if size == 0 or size >= len(pool):
        return np.sort(pool)
    rng = np.random.default_rng(seed)
    pool_labels = labels[pool]
    classes, counts = np.unique(pool_labels, return_counts=True)
    exact = counts * size / len(pool)
    quota = np.floor(exact).astype(int)
    # Largest remainders get the leftover places, ties broken by the seeded generator.
    order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
    quota[order[: size - quota.sum()]] += 1
    chosen = [rng.choice(pool[pool_labels == c], q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def search_halves(labels: np.ndarray, indices: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into two disjoint, class-stratified halves: weights train on the first, the
    architecture on the second (DARTS' train/validation split, as the paper)."""
    indices = np.asarray(indices)
    if len(indices) < 2:
        raise DataError(f"the search split needs at least 2 training images, got {len(indices)}")
    first = stratified_subset(labels, len(indices) // 2, seed, indices)
    second = np.setdiff1d(indices, first, assume_unique=True)
    return first, second


def train_indices(data, subset: int, seed: int) -> np.ndarray:
    """The training images of a run of a prepared dataset: a seeded, stratified ``subset`` (all when 0)."""
    return stratified_subset(data.labels(data.train_split), subset, seed)
