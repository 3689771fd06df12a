"""Shared fixtures: a fake installed plugin distribution, the real CIFAR-10 prepared once, a shared loader."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (``make test``), each worker and the processes it starts get its share of the cores: two
    workers each running torch on every core would slow each other several-fold."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()


def write_plugin(site: Path, dist: str, module_source: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """Write a minimal installed distribution (a module and its .dist-info with entry points) into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    module = dist.replace("-", "_")
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def run_cli(*args: str, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m nasiam_bench ARGS`` in a fresh interpreter (so entry points are read anew)."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "nasiam_bench", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )


SHARED_DATASETS = REPO.parent / "shared" / "datasets"
os.environ.setdefault("NASIAM_SOURCES", str(SHARED_DATASETS))  # where a bench finds an archive to prepare from
TEST_DATA_ROOT = REPO / ".cache" / "test-data"  # kept between runs: preparing is skipped when up to date


@pytest.fixture(scope="session")
def cifar10_data():
    """The real CIFAR-10 (JPEG copy in ../shared/datasets), prepared once per machine for the tests."""
    from nasiam_bench.data.prepare import prepare

    archive = SHARED_DATASETS / "cifar10.tar.gz"
    if not archive.is_file():
        if os.environ.get("CI"):  # a CI run that skipped every test on real data would pass having tested little
            pytest.fail(f"{archive} is not here, and CI is set: the tests on real data must run")
        pytest.skip(f"{archive} is not here")
    return prepare("cifar10", archive, root=TEST_DATA_ROOT, workers=min(8, os.cpu_count() or 2))


@pytest.fixture(scope="session")
def cifar10_subset(cifar10_data):
    """A seeded, stratified 1,024-image subset of CIFAR-10's training split."""
    from nasiam_bench.data.splits import stratified_subset

    return stratified_subset(cifar10_data.labels("train"), 1024, seed=0)


@pytest.fixture(scope="session")
def cifar10_ssl_loader(cifar10_data, cifar10_subset):
    """One FFCV two-view loader shared by the tests (FFCV compiles each new loader with numba)."""
    from nasiam_bench.data.loaders import LoaderConfig, ssl_loader

    return ssl_loader(
        cifar10_data, "train", LoaderConfig(batch_size=128, image_size=32, seed=0, workers=2), cifar10_subset
    )


SMOKE_BENCH = [
    "profile=smoke",
    f"data.root={TEST_DATA_ROOT}",
    "data.train_subset=128",
    "eval.test_subset=200",
    # The torch loader in this process: the processes that the executors under test start (--jobs, submitit's)
    # then never import FFCV, whose numba compilation takes 10-16 s a process here. The FFCV loader's runs are
    # tested in-process (test_resume, test_data, test_search, ...).
    "data.loader=torch",
    "data.workers=0",
    'experiment.bench_heads=["baseline","nasiam","paper"]',
]


@dataclass(frozen=True)
class SmokeBench:
    runs: Path
    results: Path
    records: list
    out: str  # what it printed
    began_ns: int


@pytest.fixture(scope="session")
def smoke_bench(cifar10_data, tmp_path_factory):
    """MoCo's smoke bench (``SMOKE_BENCH``: the floor, the baseline, darts' search and head, the paper's head; seed
    0) run once by today's bench, in order, its results in the default (scratch) folder: the end-to-end test reads
    it, and every other way to run a bench (lockstep, --jobs, submitit's executor) must record what it recorded."""
    import contextlib
    import io
    import time

    from nasiam_bench.bench.runner import bench

    runs, printed, began = tmp_path_factory.mktemp("smoke-bench") / "runs", io.StringIO(), time.time_ns()
    with contextlib.redirect_stdout(printed):
        records = bench("moco", SMOKE_BENCH, runs=runs, progress=False)
    return SmokeBench(runs, runs / "results-smoke", records, printed.getvalue(), began)


# Fixtures that read CIFAR-10 (prepared once from the shared archive): a test that uses one is slow.
ON_REAL_DATA = {"cifar10_data", "cifar10_subset", "cifar10_ssl_loader", "smoke_bench"}
# Calls that start a process (an interpreter, torchrun, a worker) or prepare a dataset: a test whose body makes
# one is slow too (a helper that does is marked by hand).
STARTS_PROCESSES = ("subprocess.", "run_cli(", "Popen(", "get_context(", "Process(", "prepare(", 'main(["pretrain')


def _starts_processes(item) -> bool:
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError, AttributeError):
        return False
    return any(call in source for call in STARTS_PROCESSES)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """The tests that read the shared smoke bench run in one pytest-xdist worker (it is run once per worker that
    needs it). A test on CIFAR-10 is marked ``slow`` (as are, by hand, those that start processes): ``make
    test-fast`` runs the rest. Tests marked ``cuda`` need a GPU: skipped here without one (``make test-gpu`` runs
    them on a CUDA machine)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "smoke_bench" in fixtures:
            item.add_marker(pytest.mark.xdist_group("smoke_bench"))
        if fixtures & ON_REAL_DATA or _starts_processes(item):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (make test-gpu on a CUDA machine)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    """pytest-xdist groups by a suffix on the node ids, which pytest 9.2 drops (pytest-xdist#1386): without it each
    worker runs the shared smoke bench and the torchrun pair again, minutes more. A warning in the summary says so."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        message = f"--dist loadgroup did not group {lost[0]} (pytest {pytest.__version__}, pytest-xdist#1386): "
        warning = pytest.PytestWarning(message + "the shared runs run in every worker; make install pins pytest")
        warnings.warn(warning, stacklevel=1)


def identical(a, b) -> bool:
    """Nested dicts, lists and tensors equal to the last bit (RNG states and optimiser moments included)."""
    try:
        assert_identical(a, b)
    except AssertionError:
        return False
    return True


def assert_identical(a, b, where="state"):
    """Assert ``identical``, naming the first part that differs."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    elif hasattr(a, "shape") and hasattr(a, "dtype"):  # NumPy's RNG state
        assert hasattr(b, "shape") and a.shape == b.shape and (a == b).all(), where
    else:
        assert a == b, where
