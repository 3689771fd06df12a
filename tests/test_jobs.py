"""``bench --jobs N`` (issue 21): N processes split a bench's runs through the claims and record what one process
records; a run that shared its device says so, and its device-hours are its share."""

import json
import os
import time

from nasiam_bench import occupancy
from nasiam_bench.loop import Epoch
from nasiam_bench.results import load_records
from nasiam_bench.runner import bench
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
