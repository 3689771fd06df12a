"""Executors of the bench's plan through submitit: its local executor (a plan run as a cluster would run it, N jobs
at a time, on this machine) and SLURM (one array of the jobs that wait for nothing, one of the searches, one of the
searched heads, each task after its own search, and a last job that writes the tables).

Every job is a ``BenchJob``: it runs one job of the plan (``runner.run_job``), keeps its status file in its folder,
and is checkpointable: on the preemption or time-out signal submitit requeues it, and the requeued job resumes from
the run's last checkpoint (the same checkpoints that make an interrupted bench resume exactly). Jobs claim their
run, so a plan submitted again skips what is finished or running."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
import torch

from nasiam_bench.bench.held_signal import preemption_signal, release
from nasiam_bench.bench.plan import BenchContext, Job, JobView, search_of
from nasiam_bench.bench.runner import run_job
from nasiam_bench.bench.sweep import here, job_states, read_status, write_status
from nasiam_bench.config.spec import Spec, bench_spec
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.engine.loop import STOP_REQUESTED, StopRequested
from nasiam_bench.report.tables import write_tables

# A SLURM task's interpreter: Python with the preemption signal held until the job's handlers are in place.
HELD = f"{sys.executable} -m nasiam_bench.bench.held_signal {sys.executable}"
LAUNCHER_OPTIONS = ("partition", "account", "qos", "gpus", "cpus", "mem_gb", "time_min", "array_parallelism", "signal")
SIGNALS = ("USR1", "USR2", "TERM")


@dataclasses.dataclass(frozen=True)
class Launcher:
    """What each job asks of the cluster: a ``[launcher]`` table (``--launcher FILE``), then the command line."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem_gb: float | None = None
    time_min: int = 240
    array_parallelism: int = 64
    signal: str = "USR2"  # sent signal_delay_s before the time limit (SLURM's --signal), and on preemption
    signal_delay_s: int = 120
    requeues: int = 3  # how often a job whose time runs out is requeued (submitit's max_num_timeout)
    setup: tuple[str, ...] = ()  # shell lines before each job (module load, activating the environment)

    @classmethod
    def load(cls, path: str | Path | None = None, **given: Any) -> Launcher:
        """The ``[launcher]`` table of the TOML file ``path``, then the ``given`` values that are not None."""
        values: dict[str, Any] = {}
        if path is not None:
            try:
                values = tomllib.loads(Path(path).read_text()).get("launcher", {})
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise NasiamBenchError(f"--launcher {path}: {exc}") from exc
        values.update({k: v for k, v in given.items() if v is not None})
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise NasiamBenchError(f"[launcher] {key}: not a launcher setting; give one of {', '.join(known)}")
        if "setup" in values:
            values["setup"] = tuple(values["setup"])
        launcher = cls(**values)
        launcher.check()
        return launcher

    def check(self) -> None:
        if self.mem_gb is not None and not (isinstance(self.mem_gb, int | float) and self.mem_gb > 0):
            raise NasiamBenchError(f"[launcher] mem_gb = {self.mem_gb!r}: give a number of GB above 0")
        if self.signal not in SIGNALS:
            raise NasiamBenchError(f"[launcher] signal = {self.signal!r}: give one of {', '.join(SIGNALS)}")
        for name in ("gpus", "cpus", "time_min", "array_parallelism", "signal_delay_s", "requeues"):
            value, least = getattr(self, name), 0 if name in ("gpus", "requeues") else 1
            if not isinstance(value, int) or value < least:
                raise NasiamBenchError(f"[launcher] {name} = {value!r}: give a whole number of {least} or more")

    def slurm_parameters(self) -> dict[str, Any]:
        """The settings as submitit's ``SlurmExecutor`` takes them (sbatch's flags; memory in GB)."""
        mem = None if self.mem_gb is None else f"{round(self.mem_gb * 1024)}M"  # sbatch reads a bare number as MB
        given = {"partition": self.partition, "account": self.account, "qos": self.qos, "mem": mem}
        return {
            **{k: v for k, v in given.items() if v is not None},
            "gpus_per_node": self.gpus,
            "cpus_per_task": self.cpus,
            "time": self.time_min,
            "array_parallelism": self.array_parallelism,
            "signal_delay_s": self.signal_delay_s,
            # The batch shell ignores the preemption signal (`scancel --full` signals it too, and a shell or srun
            # it kills while the task starts fails the job): the task handles it.
            "setup": [f"trap '' {self.signal}", f"export SUBMITIT_PREEMPT_SIGNAL={self.signal}", *self.setup],
            "additional_parameters": {"signal": f"{self.signal}@{self.signal_delay_s}"},
        }


@dataclasses.dataclass
class Bench:
    """What every job of one plan shares: the bench's command (framework, overrides, dataset) and its folders."""

    framework: str
    overrides: list[str]
    dataset: str | None
    runs: str
    results: str
    device: str = "auto"

    def spec(self) -> Spec:
        return bench_spec(self.framework, self.dataset, self.overrides)

    def context(self) -> BenchContext:
        """The plan's shared facts, for its jobs' views."""
        return BenchContext(self.spec(), self.runs, self.results, self.device)


class BenchJob(submitit.helpers.Checkpointable):
    """One job of the plan as a submitit job; requeued as it is (its progress is in its checkpoints)."""

    def __init__(self, bench: Bench, job: Job, executor: str) -> None:
        self.bench, self.job, self.executor = bench, job, executor

    def __call__(self) -> str:
        b = self.bench
        view = b.context().view(self.job)
        spec, folder = view.bench.spec, view.folder
        before = read_status(folder)
        requeued = before.get("requeued", 0) + (before.get("state") == "requeued")
        began = time.perf_counter()
        write_status(
            folder, state="running", host=here(), pid=os.getpid(), executor=self.executor, job_id=_job_id(),
            requeued=requeued, error="",
        )  # fmt: skip
        requeue = _stop_at_epoch_end()
        release()  # a preemption signal held since the job started is delivered now, to the handler above
        try:
            if STOP_REQUESTED.is_set():  # signalled while it started: requeued before it begins
                raise StopRequested("stopped on request while starting (a preemption or time-out signal)")
            found = run_job(spec, self.job, b.runs, b.results, b.device, progress=True)  # lines in its log
        except StopRequested:  # at an epoch's end, its checkpoint written: requeued through submitit
            write_status(folder, state="requeued", seconds=_spent(before, began))
            requeue()
            raise
        except BaseException as exc:
            error = traceback.format_exception_only(exc)[-1].strip()
            write_status(folder, state="failed", seconds=_spent(before, began), error=error)
            raise
        state = "done" if found is not None else "skipped"  # skipped: another live process holds it
        write_status(folder, state=state, seconds=_spent(before, began))
        return f"{view.name}: {state}"


def _stop_at_epoch_end() -> Callable[[], None]:
    """On the preemption signal, let the running loop stop at its epoch's end (unwinding from anywhere else could
    leave the loader's threads behind) and return the call that then requeues the job: submitit's own handler."""
    number = preemption_signal()
    submitits = signal.getsignal(number)
    if not callable(submitits):  # not in a submitit job
        return lambda: None
    signal.signal(number, lambda *_: STOP_REQUESTED.set())
    return lambda: submitits(number, None)


def _spent(before: dict[str, Any], began: float) -> float:
    """Seconds of this job over all its starts (a requeued job adds to what its earlier starts spent)."""
    earlier = before.get("seconds", 0.0) if before.get("state") == "requeued" else 0.0
    return round(earlier + time.perf_counter() - began, 1)


def _job_id() -> str:
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job
        return ""


class TablesJob:
    """The last job: the tables and plots from every record in the results folder."""

    def __init__(self, results: str) -> None:
        self.results = results

    def __call__(self) -> list[str]:
        return [str(p) for p in write_tables(self.results)]


def _to_submit(bench: Bench) -> list[JobView]:
    """The plan's jobs that are not done, running or still queued (a plan submitted again skips those)."""
    standing = ("done", "running", "queued")
    return [view for view, state in job_states(bench.context()).items() if state not in standing]


def run_local(bench: Bench, launcher: Launcher, at_once: int = 2, poll_s: float = 0.5) -> list[str]:
    """Run the plan through submitit's local executor, ``at_once`` jobs at a time, each searched head once its
    search has finished, then the tables; a failed job is reported and its searched head not started."""
    waiting, running, failed = _to_submit(bench), {}, []
    os.environ["SUBMITIT_PREEMPT_SIGNAL"] = launcher.signal  # the jobs' processes inherit it
    gpus = torch.cuda.device_count() if bench.device != "cpu" else 0
    while waiting or running:
        for view, handle in list(running.items()):
            if handle.done():
                del running[view]
                if handle.state != "FINISHED" or _failed(handle):
                    failed.append(view.job)
                    print(f"{view.name}: failed: {_error_of(view)}", flush=True)
        blocked = [v for v in waiting if search_of(v.job) in failed]
        for view in blocked:
            print(f"{view.name}: not started, its search failed", flush=True)
        waiting = [v for v in waiting if v not in blocked]
        pending = {v.job for v in (*waiting, *running)}
        for view in [v for v in waiting if search_of(v.job) not in pending][: at_once - len(running)]:
            waiting.remove(view)
            running[view] = _submit_local(bench, view, launcher, len(running) % gpus if gpus else None)
            print(f"{view.name}: started (job {running[view].job_id})", flush=True)
        time.sleep(poll_s)
    if failed:
        names = ", ".join(bench.context().view(job).name for job in failed)
        raise NasiamBenchError(f"{len(failed)} jobs failed: {names}")
    return TablesJob(bench.results)()


def _submit_local(bench: Bench, view: JobView, launcher: Launcher, gpu: int | None):
    folder = view.folder
    executor = submitit.LocalExecutor(folder=folder / "submitit", max_num_timeout=launcher.requeues)
    gpu_parameters = {"gpus_per_node": 1, "visible_gpus": [gpu]} if gpu is not None else {"gpus_per_node": 0}
    executor.update_parameters(timeout_min=launcher.time_min, signal_delay_s=launcher.signal_delay_s, **gpu_parameters)
    walk = {"host": here(), "pid": os.getpid()}  # the process that will start it: queued while it lives
    write_status(folder, state="queued", executor="submitit-local", log=str(folder / "submitit"), submitted_by=walk)
    return executor.submit(BenchJob(bench, view.job, "submitit-local"))


def _failed(handle) -> bool:
    try:
        handle.result()
    except Exception:  # the job's own error is in its status file and its log
        return True
    return False


def _error_of(view: JobView) -> str:
    return read_status(view.folder).get("error") or "(no error line: see its log)"


def submit_slurm(bench: Bench, launcher: Launcher, executor_for: Callable[[Path], Any] | None = None) -> list[str]:
    """Submit the plan to SLURM: the jobs that wait for nothing as one array, the searches as another, the searched
    heads as a third whose task k starts after task k of the searches has succeeded (``aftercorr``), and a job
    that writes the tables once all have ended. Returns the submitted SLURM job ids."""
    views = _to_submit(bench)
    searches = [v for v in views if v.is_search]
    heads = [v for v in views if search_of(v.job) in {s.job for s in searches}]
    free = [v for v in views if v not in searches and v not in heads]
    logs = Path(bench.runs) / "slurm"
    make = executor_for or (
        lambda folder: submitit.SlurmExecutor(folder=folder, max_num_timeout=launcher.requeues, python=HELD)
    )
    ids = []
    after_searches = None
    for group, dependency in ((free, None), (searches, None), (heads, "aftercorr")):
        if not group:
            continue
        executor = _slurm_executor(make, logs, launcher)
        if dependency:
            executor.update_parameters(dependency=f"{dependency}:{after_searches}")
        with executor.batch():
            handles = [executor.submit(BenchJob(bench, view.job, "slurm")) for view in group]
        array = handles[0].job_id.split("_")[0]
        ids.append(array)
        after_searches = array if group is searches else after_searches
        for view, handle in zip(group, handles, strict=True):
            _mark_queued(view, handle.job_id, logs / handle.job_id)
    if ids:
        executor = _slurm_executor(make, logs, launcher)
        executor.update_parameters(dependency="afterany:" + ":".join(ids), gpus_per_node=0, cpus_per_task=1)
        ids.append(executor.submit(TablesJob(bench.results)).job_id)
    return ids


def _slurm_executor(make: Callable[[Path], Any], logs: Path, launcher: Launcher):
    executor = make(logs / "%j")
    executor.update_parameters(job_name="nasiam-bench", **launcher.slurm_parameters())
    return executor


def _mark_queued(view: JobView, job_id: str, log: Path) -> None:
    """The job's status file says it is queued, and its folder links to its log folder (``slurm``)."""
    folder = view.folder
    write_status(folder, state="queued", executor="slurm", job_id=job_id, log=str(log))
    link = folder / "slurm"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(os.path.relpath(log.absolute(), folder.absolute()), target_is_directory=True)
