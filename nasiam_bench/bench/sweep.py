"""The bench as a plan of jobs: each job's folder, its state (done, running, queued, failed, to do), what it is
expected to cost, and the status file an executor's job keeps in its folder (where it ran, how long, how it ended).

The states come from what is on disk, so every executor (the local walk, ``--jobs``, submitit's local executor,
SLURM) and every later ``--plan`` or ``--status`` read them alike: a record or a finished search is ``done``, a live
claim is ``running``; the status file adds ``queued`` (submitted, not started, and still in SLURM's queue or in a
live local walk) and ``failed`` (with its last error line, or SLURM's account of a job that ended without one)."""

from __future__ import annotations

import datetime
import json
import signal
import socket
import statistics
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nasiam_bench.bench.plan import BenchContext, Job, JobView
from nasiam_bench.bench.runner import record_base
from nasiam_bench.config.heads import HeadKind
from nasiam_bench.config.spec import Spec
from nasiam_bench.core.io import atomic_write_json
from nasiam_bench.store.claims import alive, holder
from nasiam_bench.store.layout import JOB_STATUS
from nasiam_bench.store.results import load_records

STATES = ("done", "running", "queued", "failed", "to do")


def job_dir(spec: Spec, job: Job, runs: str | Path) -> Path:
    """The folder a job works in and keeps its logs and status file in (``JobView.folder``)."""
    return BenchContext(spec, runs, "").view(job).folder


def read_status(folder: Path) -> dict[str, Any]:
    """The status file of the job working in ``folder`` (empty when no executor job has touched it)."""
    try:
        return json.loads((folder / JOB_STATUS).read_text())
    except (OSError, ValueError):
        return {}


def write_status(folder: Path, **changes: Any) -> dict[str, Any]:
    """Update the job's status file with ``changes`` (atomically), stamped with the time."""
    status = {**read_status(folder), **changes, "updated": _now()}
    atomic_write_json(folder / JOB_STATUS, status)
    return status


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def here() -> str:
    return socket.gethostname()


def job_state(spec: Spec, job: Job, runs: str | Path, results: str | Path) -> str:
    """One of ``STATES``, read from disk (and, for a job submitted to SLURM, from SLURM)."""
    return state_of(BenchContext(spec, runs, results).view(job))


def state_of(view: JobView) -> str:
    """One of ``STATES`` for one job, read once from disk (and, for a job submitted to SLURM, from SLURM)."""
    if view.done():
        return "done"
    if any(holder(path) is not None for path in view.claims):
        return "running"
    status = read_status(view.folder)
    state = {"requeued": "queued"}.get(status.get("state"), status.get("state"))
    if status.get("executor") == "slurm" and state in ("queued", "running"):
        return _slurm_state(view.folder, status, state)
    if state == "running" and status.get("host") == here() and alive(status.get("pid", -1)):
        return "running"  # started, not yet at its claim (loading data)
    if state == "queued":
        return "queued" if still_queued(status) else "to do"  # lost with the walk that held it
    return "failed" if state == "failed" else "to do"


def job_states(bench: BenchContext) -> dict[JobView, str]:
    """Every job of the plan and its state, each read once (``--plan`` and ``--status`` share them)."""
    return {view: state_of(view) for view in bench.views()}


def still_queued(status: dict[str, Any]) -> bool:
    """Whether a job marked queued by submitit's local executor still waits: the walk that will start it (a process
    on this host) is alive."""
    submitter = status.get("submitted_by") or {}
    return submitter.get("host") == here() and alive(int(submitter.get("pid", -1)))


# SLURM's job states (``scontrol show job``) of a job still to start, and of one at work; any other has ended.
SLURM_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT", "SUSPENDED"}
SLURM_ACTIVE = {"RUNNING", "CONFIGURING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT"}


def slurm_job(job_id: str) -> dict[str, str] | None:
    """SLURM's fields of a job (``scontrol show job``, which knows pending, running and recently ended jobs alike;
    there is no ``sacct`` without an accounting database): ``{}`` where SLURM has forgotten it, None where SLURM
    cannot be asked (not here, or its controller does not answer)."""
    try:
        found = subprocess.run(
            ["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if found.returncode != 0:  # a job SLURM has forgotten is an "invalid job id"; any other failure tells nothing
        return {} if "invalid job id" in found.stderr.lower() else None
    first = found.stdout.splitlines()[0] if found.stdout.strip() else ""
    return dict(field.split("=", 1) for field in first.split() if "=" in field)


def _slurm_state(folder: Path, status: dict[str, Any], state: str) -> str:
    """The state of a job submitted to SLURM, marked queued or running by its status file: SLURM's word while it
    knows the job at work or waiting. A job that left SLURM with no record and no error of its own (killed while it
    started, before its handlers were in place, or cancelled) has failed: SLURM's account of its end is kept in
    its status file, since SLURM forgets an ended job within minutes. Where SLURM cannot be asked, the status
    file's word stands (submitting the job again could run it twice)."""
    job_id = str(status.get("job_id", ""))
    fields = slurm_job(job_id)
    if fields is None:
        return state
    if fields.get("JobState") in SLURM_WAITING:
        return "queued"
    if fields.get("JobState") in SLURM_ACTIVE:
        return "running"
    write_status(folder, state="failed", error=slurm_end(job_id, fields, status.get("log", "")))
    return "failed"


def slurm_end(job_id: str, fields: dict[str, str], log: str) -> str:
    """How a SLURM job ended without a record or an error of its own, in words."""
    where = f"; its log: {log}" if log else ""
    if not fields:
        return f"SLURM job {job_id} left the queue with no record and no error, and SLURM no longer knows how{where}"
    code, _, number = fields.get("ExitCode", "0:0").partition(":")
    killed = f"killed by signal {_signal_name(number)}" if number not in ("", "0") else f"exit code {code}"
    return (
        f"SLURM job {job_id} ended {fields.get('JobState', '?')} ({killed}, reason {fields.get('Reason', '?')})"
        f" with no record and no error of its own: killed while it started, or cancelled{where}"
    )


def _signal_name(number: str) -> str:
    try:
        return signal.Signals(int(number)).name
    except ValueError:
        return number


@dataclass(frozen=True)
class Costs:
    """Device-hours of finished records of the same shape (framework, dataset, profile, recipe, width, schedule),
    by head and strategy: what a job of the plan is expected to cost."""

    hours: dict[tuple[str, str], float]
    search_hours: dict[str, float]

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], spec: Spec) -> Costs:
        shape, search = _shape(spec), spec.to_dict()["search"]
        runs: dict[tuple[str, str], list[float]] = {}
        searches: dict[str, list[float]] = {}
        for r in records:
            if {k: r.get(k) for k in shape} != shape:
                continue
            if r["head"] == "nasiam" and r.get("spec", {}).get("search") != search:
                continue  # searched under other settings
            key = (cost_kind(r["head"]), r.get("strategy", "-") if r["head"] == "nasiam" else "-")
            runs.setdefault(key, []).append(r.get("pretrain_device_hours", 0.0) + r.get("eval_device_hours", 0.0))
            if r["head"] == "nasiam" and r.get("search_device_hours"):
                searches.setdefault(key[1], []).append(r["search_device_hours"])
        return cls(
            {k: statistics.median(v) for k, v in runs.items()},
            {k: statistics.median(v) for k, v in searches.items()},
        )

    def of(self, view: JobView) -> float | None:
        job = view.job
        if view.is_search:
            hours = self.search_hours.get(job.strategy)
            return None if hours is None else hours * (1 if view.twin_folder is None else 2)  # the twin as much
        return self.hours.get((cost_kind(job.kind), job.strategy or "-"))


def cost_kind(head: str) -> str:
    """The heads that cost alike: every head given by its genotype (random, paper, ``ops:``, ``genotype:``) trains
    an MLP of the same space; baseline and searched heads stand apart."""
    return head if head in ("baseline", "nasiam", HeadKind.FLOOR) else "genotype"


def _shape(spec: Spec) -> dict[str, Any]:
    """A record's fields that say what kind of run it was (its shape), all but the seed."""
    return {k: v for k, v in record_base(spec, 0).items() if k != "seed"}


def plan_table(states: dict[JobView, str], costs_from: Iterable[str | Path] = ()) -> pd.DataFrame:
    """One row per job of the bench: its state, what it waits for and its expected device-hours (from the finished
    records in the bench's results and ``costs_from``; empty where no run of its shape has finished)."""
    bench = next(iter(states)).bench
    records = [r for folder in {Path(bench.results), *map(Path, costs_from)} for r in _records(folder)]
    costs = Costs.from_records(records, bench.spec)
    rows = [
        {
            "job": view.name,
            "state": state,
            "after": view.waits_for.name if view.waits_for is not None else "",
            "device_hours": costs.of(view),
        }
        for view, state in states.items()
    ]
    return pd.DataFrame(rows, columns=["job", "state", "after", "device_hours"])


def _records(folder: Path) -> list[dict[str, Any]]:
    return load_records(folder) if (folder / "records").is_dir() else []


def status_table(states: dict[JobView, str]) -> pd.DataFrame:
    """One row per job: its state, where it ran (host, executor and job id), how long it took, and the last error
    line of a failed job (read after its state: reading a state may write what SLURM says of a job gone)."""
    rows = []
    for view, state in states.items():
        status = read_status(view.folder)
        rows.append(
            {
                "job": view.name,
                "state": state,
                "host": status.get("host", ""),
                "executor": status.get("executor", ""),
                "job_id": status.get("job_id", ""),
                "seconds": status.get("seconds"),
                "requeued": status.get("requeued", 0),
                "error": status.get("error", "") if status.get("state") == "failed" else "",
                "folder": str(view.folder),
            }
        )
    return pd.DataFrame(rows)


def describe_plan(table: pd.DataFrame) -> str:
    """The plan as text: the jobs, then how many in each state and the expected device-hours left and in all."""
    shown = table.assign(device_hours=table["device_hours"].map(lambda h: "" if pd.isna(h) else f"{h:.4f}"))
    lines = [shown.to_string(index=False)]
    counts = table["state"].value_counts()
    lines.append(", ".join(f"{counts[s]} {s}" for s in STATES if s in counts))
    left = table[table["state"] != "done"]
    unknown = int(left["device_hours"].isna().sum())
    if unknown and unknown == len(left):  # no estimate at all is not an estimate of 0
        lines.append(
            f"expected device-hours: unknown ({unknown} jobs left have no finished run of their shape to go by)"
        )
        return "\n".join(lines)
    floor = "at least " if unknown else ""
    lines.append(
        f"expected device-hours: {floor}{left['device_hours'].sum():.3f} left, {floor}"
        f"{table['device_hours'].sum():.3f} in all"
        + (f" ({unknown} jobs left have no finished run of their shape to go by)" if unknown else "")
    )
    return "\n".join(lines)
