"""Run records: one JSON file per run (a head, a seed), written atomically, so that concurrent benches lose nothing
and a re-run finds what is already done."""

from __future__ import annotations

import datetime
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from nasiam_bench.io import atomic_write_json

RECORD_FORMAT = "nasiam-bench/record/1"
DATASET_NOTES = {
    "cifar10": "the JPEG copy of CIFAR-10 (quality 75) in shared/datasets when prepared from it",
}


@functools.cache
def git_commit() -> str:
    """The commit of the code that produced a record ('+dirty' when the package or the registry has changes).

    Read once per process: a bench that runs for an hour records the code it started with, not what the checkout
    holds when a record is written."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "nasiam_bench", "registry"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def record_path(results: str | Path, record: dict[str, Any]) -> Path:
    name = f"{record['head']}-{record['run_id']}-seed{record['seed']}.json"
    return Path(results) / "records" / record["dataset"] / record["framework"] / name


def write_record(results: str | Path, record: dict[str, Any]) -> Path:
    record = {
        "format": RECORD_FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        **record,
    }
    path = record_path(results, record)
    atomic_write_json(path, record)
    return path


def find_record(path: str | Path, state_identity: str) -> dict[str, Any] | None:
    """The record at ``path`` if it is of ``state_identity`` (``identity("state", ...)``: the run, its seed, the
    ops of its heads, the dataset); None when there is none, or when it records another state (a re-searched
    genotype, say), which the run then replaces."""
    path = Path(path)
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("identity") != state_identity:
        print(f"{path}: records state {record.get('identity')}, not {state_identity}: run again", flush=True)
        return None
    return record


def load_records(results: str | Path) -> list[dict[str, Any]]:
    """Every record under ``results/records``; files that are not records are skipped."""
    records = []
    for path in sorted((Path(results) / "records").rglob("*.json")):
        data = json.loads(path.read_text())
        if data.get("format") == RECORD_FORMAT:
            records.append(data)
    return records


def device_hours(seconds: float, devices: int) -> float:
    """Wall time times the number of devices, in hours."""
    return seconds * devices / 3600
