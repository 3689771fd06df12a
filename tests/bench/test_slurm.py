"""The bench on a real single-node SLURM cluster (``make slurm-up``; CI starts one): a smoke plan submitted with
``--executor slurm`` runs to the records the in-process bench makes, and a pre-training task signalled as SLURM
signals one before its time limit is requeued by SLURM and ends with the record of an uninterrupted run. The tests
skip, saying why, where ``sinfo`` does not answer."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from nasiam_bench.bench import executors, sweep
from nasiam_bench.bench.plan import Job
from nasiam_bench.cli import main
from nasiam_bench.store.results import load_records
from tests.bench.test_sweep import REQUEUED, SMOKE, _bench, _key, _same_results

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("cifar10_data")]


def _cluster() -> str | None:
    """Why there is no cluster to test on, or None."""
    if shutil.which("sinfo") is None:
        return "no SLURM here (sinfo not found; make slurm-up starts a single-node cluster, as root)"
    found = subprocess.run(["sinfo", "--noheader", "--states=idle,mixed,allocated"], capture_output=True, text=True)
    if found.returncode != 0 or not found.stdout.strip():
        return f"sinfo does not answer with a usable node ({found.stderr.strip() or 'none idle'}): make slurm-up"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster():
    why = _cluster()
    if why:
        pytest.skip(why)


def _launcher(tmp_path: Path, **more) -> executors.Launcher:
    """What one CPU node gives a job: no GPU, one core."""
    return executors.Launcher(**{"gpus": 0, "cpus": 1, "mem_gb": 3, "time_min": 20, **more})


def _drained(ids: list[str], timeout: float = 600.0, seen=None) -> None:
    """Wait until SLURM lists none of ``ids``; ``seen()`` is called at each look (to read ``--status`` meanwhile).
    SLURM holds a requeued job about 2 minutes before it may start again (its BeginTime): the cluster's policy, not
    the bench's behaviour, so the hold is lifted here once the old start's processes have ended on the node (or
    after ``HELD_S``): lifted at once, a new start could die in the old step's clean-up."""
    end, held = time.monotonic() + timeout, {}
    while time.monotonic() < end:
        queued = subprocess.run(["squeue", "--noheader", "--format=%i %r", "--jobs", ",".join(ids)],
                                capture_output=True, text=True).stdout.splitlines()  # fmt: skip
        if not queued:
            return
        for job, reason in (line.split(maxsplit=1) for line in queued):
            if reason.strip() != "BeginTime":
                held.pop(job, None)
            elif _ended_on_node(job) or time.monotonic() - held.setdefault(job, time.monotonic()) >= HELD_S:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=False)
        if seen is not None:
            seen()
        time.sleep(2)
    pytest.fail(f"SLURM jobs {ids} still queued after {timeout:.0f} s")


HELD_S = 45  # SLURM's KillWait (30 s) and a margin: the old start's step has ended


def _ended_on_node(job: str) -> bool:
    """Whether no process of the job is left on this (the only) node: ``scontrol listpids`` of its job id."""
    shown = subprocess.run(["scontrol", "show", "job", "--oneliner", job], capture_output=True, text=True).stdout
    raw = re.search(r"\bJobId=(\d+)", shown)
    if raw is None:
        return False
    pids = subprocess.run(["scontrol", "listpids", raw.group(1)], capture_output=True, text=True).stdout
    return len(pids.strip().splitlines()) <= 1  # the header alone


def _started(task: str, timeout: float = 120.0) -> None:
    """Wait until SLURM says the task runs (its batch shell and step start; Python comes a moment later)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = subprocess.run(["squeue", "--noheader", "--format=%T", "--jobs", task], capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
        if state == "RUNNING":
            return
        time.sleep(0.05)
    pytest.fail(f"SLURM task {task} not running after {timeout:.0f} s")


def test_a_plan_submitted_to_slurm_records_what_the_bench_records(smoke_bench, tmp_path):
    b = _bench(tmp_path, SMOKE)
    ids = executors.submit_slurm(b, _launcher(tmp_path))
    assert ids
    states: set[str] = set()  # what --status says while the jobs run
    _drained(ids, seen=lambda: states.update(sweep.status_table(sweep.job_states(b.context()))["state"]))
    assert states & {"queued", "running"} and not states & {"failed", "to do"}
    alone = {_key(r): r for r in smoke_bench.records}
    made = {_key(r): r for r in load_records(b.results)}
    assert made.keys() == alone.keys()
    for key, record in made.items():
        _same_results(record, alone[key])
    assert (Path(b.results) / "cifar10.md").is_file()  # the last job wrote the tables
    states = sweep.status_table(sweep.job_states(b.context()))
    assert set(states["state"]) == {"done"} and set(states["executor"]) == {"slurm"}


def _restarts(job_id: str) -> int:
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    return int(shown.split("Restarts=")[1].split()[0]) if "Restarts=" in shown else 0


def test_a_task_signalled_before_its_time_limit_is_requeued_and_ends_with_the_same_record(tmp_path):
    from nasiam_bench.bench.runner import run_job
    from tests.bench.test_sweep import _folders

    uninterrupted = run_job(_bench(tmp_path / "alone", REQUEUED).spec(), Job("baseline", 0),
                            *_folders(tmp_path / "alone"))  # fmt: skip
    b = _bench(tmp_path / "cluster", [*REQUEUED, "experiment.bench_heads=['baseline']"])
    spec, job = b.spec(), Job("baseline", 0)
    folder = sweep.job_dir(spec, job, b.runs)
    ids = executors.submit_slurm(b, _launcher(tmp_path))
    log = folder / "log.csv"
    end = time.monotonic() + 300
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2) and time.monotonic() < end:
        time.sleep(0.2)  # the first epoch's checkpoint
    task = sweep.read_status(folder)["job_id"]
    subprocess.run(["scancel", "--signal=USR2", "--full", task], check=True)  # as SLURM signals before the limit
    _drained(ids)
    assert _restarts(task) >= 1 or sweep.read_status(folder).get("requeued", 0) >= 1
    status = sweep.read_status(folder)
    assert status["state"] == "done" and status["requeued"] >= 1
    (record,) = [r for r in load_records(b.results) if r["head"] == "baseline"]
    _same_results(record, uninterrupted)


def test_a_job_signalled_while_it_starts_is_requeued_not_lost(tmp_path):
    """The preemption signal sent while SLURM's task starts (Python still importing, before any handler): the job
    is requeued or runs on, and ends with its record, never dead with no record and no error."""
    b = _bench(tmp_path, [*SMOKE, "experiment.bench_heads=['baseline']"])
    spec, job = b.spec(), Job("baseline", 0)
    ids = executors.submit_slurm(b, _launcher(tmp_path))
    folder = sweep.job_dir(spec, job, b.runs)
    task = sweep.read_status(folder)["job_id"]
    _started(task)
    # while it starts: its interpreter is up (the first few milliseconds, before held_signal blocks the signal,
    # stay open: a signal there kills the task) and still importing torch and submitit, with no handler yet
    time.sleep(2.0)  # its step launched by then; importing takes longer
    subprocess.run(["scancel", "--signal=USR2", "--full", task], check=True)
    _drained(ids)
    status = sweep.read_status(folder)
    assert status["state"] == "done", status
    assert [r for r in load_records(b.results) if r["head"] == "baseline"]


def test_a_job_killed_while_it_starts_is_reported_failed_with_slurms_account(tmp_path, capsys):
    """Killed before it can hold any signal (as a signal in the first milliseconds of its interpreter, before
    held_signal blocks it, would kill it): no record and no error of its own, so ``--status`` reports it failed
    with SLURM's account of its end, and a plan submitted again submits it again."""
    overrides = [*SMOKE, "experiment.bench_heads=['baseline']"]
    b = _bench(tmp_path, overrides)
    spec, job = b.spec(), Job("baseline", 0)
    ids = executors.submit_slurm(b, _launcher(tmp_path))
    folder = sweep.job_dir(spec, job, b.runs)
    task = sweep.read_status(folder)["job_id"]
    _started(task)
    subprocess.run(["scancel", "--signal=KILL", "--full", task], check=True)
    _drained(ids)
    assert not [r for r in load_records(b.results) if r["head"] == "baseline"]
    cli = ["bench", "moco", *overrides, "--dataset", "cifar10", "--runs", b.runs, "--results", b.results]
    assert main([*cli, "--status"]) == 0
    shown = capsys.readouterr().out
    assert f"SLURM job {task} ended " in shown and "with no record and no error of its own" in shown, shown
    assert sweep.job_state(spec, job, b.runs, b.results) == "failed"
    assert [v.job for v in executors._to_submit(b)] == [job]  # the floor is done; the failed job is submitted again


def test_a_task_whose_time_runs_out_is_requeued_and_finishes(tmp_path):
    """SLURM signals a job ``signal_delay_s`` before its time limit, checking every 30 s: a start of 2 minutes is
    signalled 30 to 60 s in, so a pre-training longer than that stops at an epoch's end, is requeued (as often as
    it takes, within the launcher's ``requeues``), resumes where it stopped, and finishes."""
    # 16 steps an epoch: about 2 s here alone (100 s in all), 5 or more beside other work. A start is signalled 30
    # to 60 s in, so the first never finishes, and each start does its share: 2 to 4 starts, within ``requeues``.
    epochs = 50
    overrides = [*REQUEUED, f"train.epochs={epochs}", "data.train_subset=512", "experiment.bench_heads=['baseline']"]
    b = _bench(tmp_path, overrides)
    spec, job = b.spec(), Job("baseline", 0)
    ids = executors.submit_slurm(b, _launcher(tmp_path, time_min=2, signal_delay_s=60, requeues=10))
    _drained(ids, timeout=900)
    folder = sweep.job_dir(spec, job, b.runs)
    status = sweep.read_status(folder)
    assert status["state"] == "done" and status["requeued"] >= 1, status
    assert _restarts(status["job_id"]) >= 1
    logged = [line.split(",")[0] for line in (folder / "log.csv").read_text().splitlines()[1:]]
    assert logged == [str(e) for e in range(1, epochs + 1)]  # resumed at the epoch it stopped after, never again
    assert [r for r in load_records(b.results) if r["head"] == "baseline"]
