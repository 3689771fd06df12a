"""The bench as a plan of jobs (issue 22): ``--plan`` and ``--status``, submitit's local executor running a plan
as a cluster would (2 jobs at a time, each searched head after its search), a job requeued on the preemption
signal that records what an uninterrupted run records, and the SLURM submission as a stand-in ``sbatch`` sees it."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit

from nasiam_bench.bench import executors, sweep
from nasiam_bench.bench.plan import BenchContext, Job, plan
from nasiam_bench.bench.runner import run_job
from nasiam_bench.cli import main
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.store.results import load_records
from tests.conftest import SMOKE_BENCH

SMOKE = [*SMOKE_BENCH, "seeds.values=[0]"]


def _key(record):
    return record["head"], record["seed"], record.get("strategy", "-")


def _same_results(mine, other):
    assert mine["identity"] == other["identity"]
    assert (mine["knn_top1"], mine.get("linear_top1"), mine.get("genotype")) == (
        other["knn_top1"],
        other.get("linear_top1"),
        other.get("genotype"),
    )


@pytest.fixture
def sequential(smoke_bench):
    """The smoke plan run by today's bench, in order: the records every executor must reproduce."""
    return smoke_bench.runs, smoke_bench.results, {_key(r): r for r in smoke_bench.records}


def _bench(root: Path, overrides=SMOKE) -> executors.Bench:
    return executors.Bench("moco", list(overrides), "cifar10", str(root / "runs"), str(root / "results"), "cpu")


def test_the_plan_names_each_job_its_state_and_cost(sequential, tmp_path):
    runs, results, _ = sequential
    fresh = _bench(tmp_path)
    spec = fresh.spec()
    table = sweep.plan_table(sweep.job_states(fresh.context()), costs_from=[results])
    assert list(table["job"]) == [
        "moco untrained seed 0",
        "moco baseline seed 0",
        "moco search seed 0 (darts)",
        "moco nasiam seed 0 (darts)",
        "moco paper seed 0",
    ]
    assert set(table["state"]) == {"to do"}
    assert table.loc[3, "after"] == "moco search seed 0 (darts)"
    assert table["device_hours"].notna().all() and (table["device_hours"] > 0).all()  # from the finished runs
    done = sweep.plan_table(sweep.job_states(BenchContext(spec, runs, results)))
    assert set(done["state"]) == {"done"}
    text = sweep.describe_plan(done)
    assert "5 done" in text and "0.000 left" in text


def test_a_job_holding_its_claim_is_running_and_a_failed_one_says_why(tmp_path, monkeypatch, capsys):
    b = _bench(tmp_path)
    spec = b.spec()
    job = Job("baseline", 0)
    folder = sweep.job_dir(spec, job, b.runs)

    def failing(*args, **kwargs):
        assert sweep.job_state(spec, job, b.runs, b.results) == "running"  # its status names this live process
        raise ValueError("the data root vanished")

    monkeypatch.setattr(executors, "run_job", failing)
    with pytest.raises(ValueError):
        executors.BenchJob(b, job, "submitit-local")()
    assert sweep.job_state(spec, job, b.runs, b.results) == "failed"
    row = sweep.status_table(sweep.job_states(b.context())).set_index("job").loc["moco baseline seed 0"]
    assert row["error"] == "ValueError: the data root vanished"
    assert row["folder"] == str(folder) and row["host"] == sweep.here()
    args = ["bench", "moco", *SMOKE, "--runs", b.runs, "--results", b.results, "--status"]
    assert main(args) == 0
    assert "ValueError: the data root vanished" in capsys.readouterr().out


def test_submitit_local_runs_the_plan_two_at_a_time_and_records_what_the_bench_records(sequential, tmp_path):
    _, _, expected = sequential
    b = _bench(tmp_path)
    executors.run_local(b, executors.Launcher(), at_once=2)
    records = {_key(r): r for r in load_records(b.results)}
    assert records.keys() == expected.keys()
    for key, record in expected.items():
        _same_results(records[key], record)
    spec = b.spec()
    assert {sweep.read_status(sweep.job_dir(spec, j, b.runs))["state"] for j in plan(spec)} == {"done"}
    assert (Path(b.results) / "cifar10.md").is_file()  # the tables, once the last job ended
    before = {p: p.stat().st_mtime_ns for p in Path(b.results, "records").rglob("*.json")}
    executors.run_local(b, executors.Launcher(), at_once=2)  # submitted again: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in Path(b.results, "records").rglob("*.json")} == before


def _wait(condition, what: str, timeout: float = 180.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


REQUEUED = [*SMOKE, "train.epochs=3", "data.train_subset=256"]  # 8 steps an epoch: time to signal in the second


@pytest.fixture(scope="module")
def uninterrupted(cifar10_data, tmp_path_factory):
    """The baseline run of ``REQUEUED`` from start to end, in this process."""
    root = tmp_path_factory.mktemp("uninterrupted")
    return run_job(_bench(root, REQUEUED).spec(), Job("baseline", 0), *_folders(root))


@pytest.mark.xdist_group("requeue")  # one pytest-xdist worker: the uninterrupted run is made once
@pytest.mark.parametrize("signame", ["USR1", "TERM"])
def test_a_signalled_job_is_requeued_and_resumes_to_the_same_record(signame, uninterrupted, tmp_path, monkeypatch):
    b = _bench(tmp_path / "pre", REQUEUED)
    spec, job = b.spec(), Job("baseline", 0)
    folder = sweep.job_dir(spec, job, b.runs)
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", signame)  # what the job's submitit listens for
    executor = submitit.LocalExecutor(folder=folder / "submitit")
    executor.update_parameters(timeout_min=10, gpus_per_node=0)
    handle = executor.submit(executors.BenchJob(b, job, "submitit-local"))
    log = folder / "log.csv"
    _wait(lambda: log.is_file() and len(log.read_text().splitlines()) == 2, "the first epoch's checkpoint")
    os.kill(sweep.read_status(folder)["pid"], getattr(signal, f"SIG{signame}"))  # as SLURM signals a job
    handle.result()
    status = sweep.read_status(folder)
    assert status["state"] == "done" and status["requeued"] == 1
    assert "Requeued" in handle.stderr() or "Requeued" in handle.stdout()
    (record,) = load_records(b.results)
    _same_results(record, uninterrupted)


def _folders(root: Path) -> tuple[str, str]:
    return str(root / "runs"), str(root / "results")


STAND_IN = """#!{python}
import json, pathlib, sys
log = pathlib.Path({log!r})
calls = json.loads(log.read_text()) if log.exists() else []
script = pathlib.Path(sys.argv[-1]).read_text()
calls.append({{"args": sys.argv[1:], "script": script}})
log.write_text(json.dumps(calls))
print(f"Submitted batch job {{100 + len(calls)}}")
"""


SCONTROL = """#!{python}
import json, pathlib, sys
job = sys.argv[-1]
if job.startswith("9"):  # an id SLURM has forgotten
    sys.exit("slurm_load_jobs error: Invalid job id specified")
state, code, reason = json.loads(pathlib.Path({queue!r}).read_text()).get(job, ["CANCELLED", "0:15", "None"])
print(f"JobId={{job}} JobName=nasiam-bench JobState={{state}} Reason={{reason}} Dependency=(null) ExitCode={{code}}")
"""


def _stand_in(path: Path, script: str) -> None:
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_a_slurm_job_is_in_slurms_state_and_one_that_left_without_a_word_has_failed(tmp_path, monkeypatch):
    queue = tmp_path / "queue.json"
    _stand_in(tmp_path / "scontrol", SCONTROL.format(python=sys.executable, queue=str(queue)))
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    b = _bench(tmp_path)
    spec, job = b.spec(), Job("baseline", 0)
    folder = sweep.job_dir(spec, job, b.runs)
    log = str(tmp_path / "slurm" / "7_0")
    cases = [  # (what SLURM says, the status file's state) -> the job's state
        (["PENDING", "0:0", "BeginTime"], "queued", "queued"),  # requeued by SLURM itself: held a while
        (["RUNNING", "0:0", "None"], "queued", "running"),  # started on another node, not yet at its claim
        (["RUNNING", "0:0", "None"], "running", "running"),
        (["PENDING", "0:0", "Priority"], "requeued", "queued"),
    ]
    for slurm, marked, state in cases:
        queue.write_text(json.dumps({"7_0": slurm}))
        sweep.write_status(folder, state=marked, executor="slurm", job_id="7_0", log=log)
        assert sweep.job_state(spec, job, b.runs, b.results) == state, (slurm, marked)
    queue.write_text(json.dumps({"7_0": ["FAILED", "0:9", "JobLaunchFailure"]}))  # killed while it started
    assert sweep.job_state(spec, job, b.runs, b.results) == "failed"
    error = sweep.read_status(folder)["error"]
    assert error.startswith("SLURM job 7_0 ended FAILED (killed by signal SIGKILL, reason JobLaunchFailure)")
    assert error.endswith(f"its log: {log}")
    queue.write_text(json.dumps({}))  # kept, though SLURM forgets the job: the status file holds SLURM's account
    assert sweep.job_state(spec, job, b.runs, b.results) == "failed" and sweep.read_status(folder)["error"] == error
    sweep.write_status(folder, state="queued", executor="slurm", job_id="91_0", log=log)  # forgotten by SLURM
    assert sweep.job_state(spec, job, b.runs, b.results) == "failed"
    assert "SLURM no longer knows how" in sweep.read_status(folder)["error"]
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))  # no scontrol: SLURM cannot be asked, the file stands
    for marked in ("queued", "running"):
        sweep.write_status(folder, state=marked, executor="slurm", job_id="7_0", log=log)
        assert sweep.job_state(spec, job, b.runs, b.results) == marked
    table = sweep.status_table(sweep.job_states(b.context()))
    assert table.loc[table["job"] == b.context().view(job).name, "job_id"].item() == "7_0"


def test_a_job_queued_by_a_local_walk_stands_while_the_walk_lives(tmp_path):
    b = _bench(tmp_path)
    spec, job = b.spec(), Job("baseline", 0)
    folder = sweep.job_dir(spec, job, b.runs)
    for pid, state in ((os.getpid(), "queued"), (_a_finished_pid(), "to do"), (-1, "to do")):  # -1: none recorded
        sweep.write_status(
            folder, state="queued", executor="submitit-local", submitted_by={"host": sweep.here(), "pid": pid}
        )
        assert sweep.job_state(spec, job, b.runs, b.results) == state


def _a_finished_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.mark.usefixtures("cifar10_data")
def test_slurm_submits_the_plan_as_arrays_with_their_resources_and_dependencies(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "sbatch.json"
    (bin_dir / "sbatch").write_text(STAND_IN.format(python=sys.executable, log=str(calls)))
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for srun to know it is on SLURM
    # an scontrol that cannot reach its controller (a real one may run here: make slurm-up)
    (bin_dir / "scontrol").write_text(
        "#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = tmp_path / "cluster.toml"
    launcher.write_text('[launcher]\npartition = "gpu"\naccount = "ssl"\nmem_gb = 32\nsetup = ["module load cuda"]\n')
    runs, results = tmp_path / "runs", tmp_path / "results"
    args = ["bench", "moco", *SMOKE, "seeds.values=[0,1]", "--runs", str(runs), "--results", str(results)]
    assert (
        main([*args, "--executor", "slurm", "--launcher", str(launcher), "--time-min", "90", "--signal", "USR1"]) == 0
    )
    assert "submitted SLURM jobs 101, 102, 103, 104" in capsys.readouterr().out
    scripts = [call["script"] for call in json.loads(calls.read_text())]
    free, searches, heads, tables = scripts
    for script in (free, searches, heads):
        assert "#SBATCH --partition=gpu" in script and "#SBATCH --account=ssl" in script
        assert "#SBATCH --time=90" in script and "#SBATCH --gpus-per-node=1" in script
        assert "#SBATCH --signal=USR1@120" in script and "export SUBMITIT_PREEMPT_SIGNAL=USR1" in script
        assert "#SBATCH --mem=32768M" in script and "module load cuda" in script
    assert "#SBATCH --array=0-5%6" in free  # floor, baseline and paper of 2 seeds
    assert "#SBATCH --array=0-1%2" in searches and "#SBATCH --array=0-1%2" in heads
    assert "#SBATCH --dependency=aftercorr:102" in heads  # task k after search task k
    assert "#SBATCH --dependency=afterany:101:102:103" in tables
    spec = _bench(tmp_path, [*SMOKE, "seeds.values=[0,1]"]).spec()
    search = sweep.job_dir(spec, Job("search", 1, "darts"), runs)
    assert sweep.read_status(search)["job_id"] == "102_1"
    assert (search / "slurm").is_symlink()  # the log folder, from the run's own folder
    assert sweep.job_state(spec, Job("search", 1, "darts"), runs, results) == "queued"  # SLURM cannot answer: standing

    # Submitted again while SLURM still lists every job: nothing is submitted twice.
    queue = tmp_path / "queue.json"
    waiting = ["PENDING", "0:0", "Priority"]
    queue.write_text(
        json.dumps(
            {f"{array}_{t}": waiting for array, tasks in (("101", 6), ("102", 2), ("103", 2)) for t in range(tasks)}
        )
    )
    _stand_in(bin_dir / "scontrol", SCONTROL.format(python=sys.executable, queue=str(queue)))
    assert main([*args, "--executor", "slurm", "--launcher", str(launcher)]) == 0
    assert "submitted SLURM jobs (none: every job is done, running or queued)" in capsys.readouterr().out
    assert len(json.loads(calls.read_text())) == 4
    # One cancelled (gone from the queue): that one alone is submitted again, then the tables.
    queue.write_text(json.dumps({i: v for i, v in json.loads(queue.read_text()).items() if i != "101_5"}))
    assert main([*args, "--executor", "slurm", "--launcher", str(launcher)]) == 0
    assert "submitted SLURM jobs 105, 106" in capsys.readouterr().out
    assert sweep.read_status(sweep.job_dir(spec, Job("paper", 1), runs))["job_id"].startswith("105")


def test_launcher_settings_are_checked_before_anything_is_submitted(tmp_path):
    bad = tmp_path / "cluster.toml"
    bad.write_text('[launcher]\npartitoin = "gpu"\n')
    with pytest.raises(NasiamBenchError, match="partitoin: not a launcher setting; give one of partition"):
        executors.Launcher.load(bad)
    with pytest.raises(NasiamBenchError, match="signal = 'HUP': give one of USR1, USR2, TERM"):
        executors.Launcher.load(signal="HUP")
    with pytest.raises(NasiamBenchError, match="time_min = 0"):
        executors.Launcher.load(time_min=0)


STARTING = """
import signal, sys, time
time.sleep(1.5)  # importing torch and submitit: no handler yet
got = []
signal.signal(signal.SIGUSR2, lambda *_: got.append(True))  # the job's handler, in place at last
from nasiam_bench.bench.held_signal import release
release()
print("held, then handled" if got else "never came")
"""


@pytest.mark.parametrize("held", [True, False], ids=["held", "plain"])
def test_a_preemption_signal_during_start_up_is_held_until_the_handler_is_in_place(held):
    """SLURM's time-out signal may come while a job still imports: through ``held_signal`` (every SLURM task's
    interpreter) it waits for the job's handler; a plain interpreter dies of it."""
    import signal
    import subprocess
    import sys
    import time

    from nasiam_bench.bench.executors import HELD

    command = [*(HELD.split() if held else [sys.executable]), "-c", STARTING]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "SUBMITIT_PREEMPT_SIGNAL": "USR2"}
    )
    time.sleep(0.7)
    child.send_signal(signal.SIGUSR2)
    out, _ = child.communicate(timeout=60)
    if held:
        assert child.returncode == 0 and out.strip() == "held, then handled"
    else:
        assert child.returncode == -signal.SIGUSR2
