"""``bench --jobs N`` (issue 21): N processes split a bench's runs through the claims and record what one process
records; a run that shared its device says so, and its device-hours are its share."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nasiam_bench.bench.runner import bench
from nasiam_bench.engine.loop import Epoch
from nasiam_bench.store import occupancy
from nasiam_bench.store.results import load_records
from tests.conftest import SMOKE_BENCH


def test_an_epoch_on_a_shared_device_counts_its_share_of_the_device_time(tmp_path, monkeypatch):
    monkeypatch.setattr(occupancy, "LEDGER", tmp_path)
    with occupancy.occupying("cpu") as mine:
        assert mine.count() == 1
        folder = tmp_path / occupancy.device_key("cpu")
        other = folder / "elsewhere.claim"
        other.write_text(json.dumps({"host": "another-host", "pid": 1, "started": "now"}))  # a live heartbeat
        assert mine.count() == 2
        old = time.time() - 3600
        os.utime(other, (old, old))  # its heartbeat stopped an hour ago: stale, not counted
        assert mine.count() == 1
    assert not list(folder.glob(f"*-{os.getpid()}-*.claim"))  # its own claim went with the block
    epoch = Epoch(0, seconds=10.0, shared_by=2.0)
    assert epoch.device_seconds == 5.0


def test_two_jobs_record_what_one_records(smoke_bench, tmp_path, capsys):
    alone = smoke_bench.records
    together = bench("moco", SMOKE_BENCH, runs=tmp_path / "r2", results=tmp_path / "s2", progress=False, jobs=2)
    key = lambda r: (r["head"], r["seed"])  # noqa: E731
    assert sorted(map(key, alone)) == sorted(map(key, together)) == sorted(map(key, load_records(tmp_path / "s2")))
    theirs = {key(r): r for r in together}
    for mine in alone:
        other = theirs[key(mine)]
        assert (mine["knn_top1"], mine.get("linear_top1")) == (other["knn_top1"], other.get("linear_top1"))
        assert mine["identity"] == other["identity"]
    assert all(r.get("device_shared_by", 1.0) >= 1.0 for r in together)


def _children(pid: int) -> set[int]:
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found |= {int(p) for p in fh.read().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_jobs_parent_ends_its_workers(tmp_path, signum):
    """``bench --jobs 2`` killed (not by a group Ctrl-C): its workers end with it, none runs on orphaned."""
    args = ["bench", "moco", *SMOKE_BENCH, "train.epochs=50", "--jobs", "2"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "nasiam_bench", *args, "--runs", str(tmp_path / "r"), "--results", str(tmp_path / "s")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        workers: set[int] = set()
        while len(workers) < 2 and time.time() < deadline:  # the two bench workers (spawn's tracker aside)
            time.sleep(0.5)
            workers = {p for p in _children(parent.pid) if "bench-worker" in _cmdline(p) or _is_spawned(p)}
        assert len(workers) >= 2, "the workers did not start"
        time.sleep(3)  # at work
        os.kill(parent.pid, signum)
        parent.wait(timeout=60)
        deadline = time.time() + 30
        while any(_alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(_alive(w) for w in workers)
    finally:
        parent.kill()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as fh:
            return fh.read().replace("\0", " ")
    except FileNotFoundError:
        return ""


def _is_spawned(pid: int) -> bool:
    return "multiprocessing.spawn" in _cmdline(pid) and "resource_tracker" not in _cmdline(pid)


def test_an_occupancy_integrates_its_share_of_the_device_over_time(tmp_path, monkeypatch):
    monkeypatch.setattr(occupancy, "LEDGER", tmp_path)
    monkeypatch.setattr(occupancy, "SAMPLE_S", 0.02)
    with occupancy.device_time("cpu") as spent:
        time.sleep(0.5)  # alone: all of it
        folder = tmp_path / occupancy.device_key("cpu")
        other = folder / "elsewhere.claim"
        other.write_text(json.dumps({"host": "another-host", "pid": 1, "started": "now"}))
        time.sleep(1.0)  # shared with one more run: half of it
        other.unlink()
    wall, device = spent
    assert wall == pytest.approx(1.5, abs=0.2)
    assert device == pytest.approx(0.5 + 1.0 / 2, abs=0.15)


@pytest.mark.usefixtures("cifar10_data")
def test_concurrent_records_claim_no_more_device_time_than_there_was(tmp_path):
    """``bench --jobs 2``: the device-seconds of every phase of every record (each job's, and each search's) sum
    to at most the wall time the bench took on its one device."""
    overrides = [*SMOKE_BENCH[:-1], "train.epochs=2", "experiment.bench_heads=['baseline','nasiam','random']"]
    began = time.perf_counter()
    records = bench("moco", overrides, runs=tmp_path / "r", results=tmp_path / "s", progress=False, jobs=2)
    wall = time.perf_counter() - began
    jobs = sum(r["job_device_hours"] for r in records) * 3600
    searches = sum(r["search_device_hours"] for r in records if r["head"] == "nasiam") * 3600
    assert 0 < jobs + searches <= wall
    shared = [r for r in records if r["head"] != "untrained"]
    assert any(r["device_shared_by"] > 1.0 for r in shared)  # two workers did share the CPU
