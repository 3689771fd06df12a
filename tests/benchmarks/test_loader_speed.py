"""Two-view CIFAR-10 training loader: FFCV + batched augmentation against the torch reference loader."""

import statistics

import pytest

from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.data.splits import stratified_subset
from tests.benchmarks.conftest import measure

IMAGES = 4096
BATCH = 256
ROUNDS = 3


def _epoch(loader) -> int:
    return sum(len(labels) for _, _, labels in loader)


@pytest.mark.benchmark(group="loader")
def test_two_view_loader_ffcv_vs_torch(benchmark, cifar10_data, report, size):
    images = size.pick(IMAGES, 4 * BATCH)
    subset = stratified_subset(cifar10_data.labels("train"), images, seed=0)
    loaders = {
        kind: ssl_loader(cifar10_data, "train", LoaderConfig(BATCH, 32, seed=0, workers=2, kind=kind), subset)
        for kind in ("ffcv", "torch")
    }
    for loader in loaders.values():
        _epoch(loader)  # warm up: numba compilation, worker start-up

    runs: dict[str, list[tuple[float, float, int]]] = {"ffcv": [], "torch": []}

    def ffcv_epoch() -> int:
        result = measure(lambda: _epoch(loaders["ffcv"]))
        runs["ffcv"].append(result)
        return result[2]

    pairs = benchmark.pedantic(ffcv_epoch, rounds=ROUNDS, iterations=1)
    for _ in range(len(runs["ffcv"])):
        runs["torch"].append(measure(lambda: _epoch(loaders["torch"])))

    assert pairs == images // BATCH * BATCH
    assert all(count == pairs for kind in runs for _, _, count in runs[kind])
    figures = {}
    for kind, results in runs.items():
        wall = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[1] for r in results)
        figures[kind] = (pairs / wall, cpu / pairs * 1000)
    ratio_cpu = figures["ffcv"][1] / figures["torch"][1]
    benchmark.extra_info.update({f"{k}_pairs_per_s": v[0] for k, v in figures.items()})
    benchmark.extra_info.update({f"{k}_cpu_s_per_1000_pairs": v[1] for k, v in figures.items()})
    benchmark.extra_info["cpu_ratio_ffcv_over_torch"] = ratio_cpu
    for kind, (rate, cpu) in figures.items():
        report(
            f"two-view loader {kind:5}: {rate:7.0f} pairs/s, {cpu:6.3f} CPU-s per 1,000 pairs "
            f"(CIFAR-10 JPEG copy, {images} images, batch {BATCH}, 2 workers, median of {len(runs[kind])})"
        )
    report(f"two-view loader CPU per pair, ffcv / torch: {ratio_cpu:.3f} (target <= 0.5)")
