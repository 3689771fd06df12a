"""Run records: one JSON file per run (a head, a seed), written atomically, so that concurrent benches lose nothing
and a re-run finds what is already done."""

from __future__ import annotations

import copy
import datetime
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

from nasiam_bench.config.spec import Spec, changes_results
from nasiam_bench.core.io import atomic_write_json
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.store.identity import record_identities, search_id

RECORD_FORMAT = "nasiam-bench/record/2"
SEARCH_RECORD_FORMAT = "nasiam-bench/search-record/1"
OLD_RECORD_FORMATS = ("nasiam-bench/record/1",)  # read through ``upgrade``
DATASET_NOTES = {
    "cifar10": "the JPEG copy of CIFAR-10 (quality 75) in shared/datasets when prepared from it",
}


@functools.cache
def git_commit() -> str:
    """The commit of the code that produced a record ('+dirty' when the package, its catalogue included, has changes).

    Read once per process: a bench that runs for an hour records the code it started with, not what the checkout
    holds when a record is written."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            # the package's folder from the repository's top (":/"), wherever this module sits in it
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/nasiam_bench"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def record_path(results: str | Path, record: dict[str, Any]) -> Path:
    """``records/<dataset>/<framework>/<head>-<run id>-seed<n>.json``; a head written as a genotype (``ops:...``,
    ``genotype:FILE``) by its kind, its run id telling the genotypes apart."""
    head = record["head"].partition(":")[0]
    name = f"{head}-{record['run_id']}-seed{record['seed']}.json"
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


def search_record_path(results: str | Path, spec: Spec, seed: int) -> Path:
    """``searches/<dataset>/<framework>/<strategy>-<search id>-seed<n>.json``: a search's record."""
    e = spec.experiment
    return Path(results) / "searches" / e.dataset / e.framework / f"{e.strategy}-{search_id(spec)}-seed{seed}.json"


def write_search_record(results: str | Path, spec: Spec, seed: int, summary: dict[str, Any]) -> Path:
    """Keep a finished search's summary (its genotype, final softmax(alpha), decision, machine) beside the run
    records, with its spec and search id: the search folder lives under runs/, which is not kept."""
    e = spec.experiment
    record = {
        "format": SEARCH_RECORD_FORMAT,
        "git_commit": git_commit(),
        **summary,
        "dataset": e.dataset,
        "framework": e.framework,
        "profile": e.profile,
        "search_id": search_id(spec),
        "spec": spec.to_dict(),
    }
    path = search_record_path(results, spec, seed)
    atomic_write_json(path, record)
    return path


def load_search_records(results: str | Path) -> list[dict[str, Any]]:
    """Every search record under ``results/searches``."""
    found = sorted((Path(results) / "searches").rglob("*.json"))
    return [r for r in (json.loads(p.read_text()) for p in found) if r.get("format") == SEARCH_RECORD_FORMAT]


def find_record(path: str | Path, state_identity: str) -> dict[str, Any] | None:
    """The record at ``path`` if it is of ``state_identity`` (``identity("state", ...)``: the run, its seed, the
    ops of its heads, the dataset); None when there is none, or when it records another state (a re-searched
    genotype, say), which the run then replaces."""
    path = Path(path)
    if not path.is_file():
        return None
    record = upgrade(json.loads(path.read_text()))
    if record.get("identity") != state_identity:
        print(f"{path}: records state {record.get('identity')}, not {state_identity}: run again", flush=True)
        return None
    return record


def load_records(results: str | Path) -> list[dict[str, Any]]:
    """Every record under ``results/records``; files that are not records are skipped."""
    records = []
    for path in sorted((Path(results) / "records").rglob("*.json")):
        data = json.loads(path.read_text())
        if data.get("format") in (RECORD_FORMAT, *OLD_RECORD_FORMATS):
            records.append(upgrade(data))
    return records


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A record of an older format read as this one says what it did: before ``search.random_rank`` existed the
    random strategy ranked its candidates by kNN (labels), so a record without it says so."""
    if record.get("format") in OLD_RECORD_FORMATS:
        spec = record.get("spec")
        if isinstance(spec, dict):
            spec.setdefault("search", {}).setdefault("random_rank", "knn")
        record["format"] = RECORD_FORMAT
    return record


def strategy_label(record: dict[str, Any]) -> str:
    """The strategy as the tables name it: random search that ranked by kNN says that it used labels."""
    strategy = record.get("strategy", "-")
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
    if strategy == "random" and spec.get("search", {}).get("random_rank") == "knn":
        return "random (kNN: uses labels)"
    return strategy


def device_hours(seconds: float, devices: int) -> float:
    """Wall time times the number of devices, in hours."""
    return seconds * devices / 3600


def rekey(results: str | Path, digests: dict[str, str] | None = None) -> list[tuple[Path, Path]]:
    """File every record of ``results`` under the identities its own contents give now (``record_identities``):
    after the identity rules changed, or for records written before they held their dataset's digest (given per
    dataset in ``digests``). Returns (old path, new path) of each record that moved or changed; the rest stay."""
    changed = []
    for path in sorted((Path(results) / "records").rglob("*.json")):
        stored = json.loads(path.read_text())
        if stored.get("format") not in (RECORD_FORMAT, *OLD_RECORD_FORMATS):
            continue
        record = upgrade(copy.deepcopy(stored))
        if "dataset_digest" not in record:
            if record["dataset"] not in (digests or {}):
                raise NasiamBenchError(
                    f"{path}: the record holds no dataset digest; give --source {record['dataset']}=ARCHIVE, the "
                    f"source it was prepared from"
                )
            record["dataset_digest"] = digests[record["dataset"]]
        updated = {**record, **record_identities(record)}
        if updated == stored:
            continue
        target = record_path(results, updated)
        atomic_write_json(target, updated)
        if target != path:
            path.unlink()
        changed.append((path, target))
    return changed


def flat_spec(spec: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """A record's spec as ``section.key`` -> value."""
    return {f"{section}.{key}": value for section, table in (spec or {}).items() for key, value in table.items()}


def spec_differences(specs: list[dict[str, dict[str, Any]] | None]) -> list[str]:
    """For each spec, ``key=value`` of every key on which the specs disagree (``seeds`` aside) and that can change
    a result of its strategy (not a bench option, nor another strategy's setting)."""
    flat = [flat_spec(s) for s in specs]
    strategies = {f.get("experiment.strategy", "") for f in flat}
    keys = sorted(
        {
            k
            for f in flat
            for k in f
            if not k.startswith("seeds.") and any(changes_results(k, strategy) for strategy in strategies)
        }
    )
    differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    return [", ".join(f"{k}={f.get(k, '–')}" for k in differing) for f in flat]
