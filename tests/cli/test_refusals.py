"""Bad input is refused before any work (issue 23): the command exits 2 with one line that names the bad value and
what would be valid, and leaves nothing behind. One case per class of input: folders, devices, seeds, data files,
the network, worker counts and spec ranges."""

import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision.datasets

from nasiam_bench.bench import runner
from nasiam_bench.cli import main
from tests.conftest import TEST_DATA_ROOT

SMOKE = ["profile=smoke", f"data.root={TEST_DATA_ROOT}"]
CORES = os.cpu_count() or 1


def _offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def _cases(tmp):
    """(class, arguments, what the one line must say); ``tmp`` holds a file where a folder should be and a data
    root whose meta.json is damaged."""
    a_file = tmp / "a-file"
    damaged = tmp / "damaged"
    bench = ["bench", "moco", *SMOKE, "--runs", str(tmp / "runs")]
    pretrain = ["pretrain", "moco_cifar10", *SMOKE, "--runs", str(tmp / "runs")]
    return {
        "runs folder is a file": (
            ["bench", "moco", *SMOKE, "--runs", str(a_file)],
            f"{a_file} is a file, not a folder",
        ),
        "results folder under a file": ([*bench, "--results", str(a_file / "x")], "is a file, not a folder"),
        "out folder under a file": ([*pretrain, "--out", str(a_file / "x"), "--seed", "0"], "is a file, not a folder"),
        "device that is not one": ([*bench, "--device", "gpu"], "--device gpu: not a device; give auto, cpu"),
        "negative seed": ([*pretrain, "--seed", "-1"], "argument --seed: -1: give 0 or more"),
        "no seeds": ([*bench, "--seeds", "0"], "argument --seeds: 0: give 1 or more"),
        "a seed twice": ([*bench, "seeds.values=[1,1]"], "seeds.values = [1, 1] names [1] twice"),
        "unsorted milestones": ([*bench, "eval.linear_milestones=[0.8,0.6]"], "in increasing order ([0.6, 0.8])"),
        "milestones of a constant schedule": (
            [*bench, "eval.linear_milestones=[0.6]", "eval.linear_schedule=constant"],
            "the milestones step a schedule",
        ),
        "temperatures reversed": ([*bench, "search.tau_min=5", "search.tau_max=1"], "GDAS anneals down"),
        "warm-up past the end": ([*bench, "train.warmup_epochs=5", "train.epochs=2"], "would outlast the run"),
        "lockstep under an executor": (
            [*bench, "--lockstep", "--executor", "submitit-local"],
            "--lockstep trains a seed's heads together in one process; --executor submitit-local runs each job",
        ),
        "a genotype file of another layer count": (
            [*pretrain, f"experiment.head=genotype:{tmp / 'short.toml'}", "--seed", "0"],
            "moco searches projector=<4 ops>",
        ),
        "results folder that cannot be made": (
            [*bench, "--results", "/proc/nb-results"],
            "/proc/nb-results: cannot write",
        ),
        "an activation twice": (
            [*bench, 'experiment.activations=["relu","relu","silu"]'],
            "experiment.activations = ['relu', 'relu', 'silu'] names ['relu'] twice; give each once",
        ),
        "a head twice": ([*bench, 'experiment.bench_heads=["baseline","baseline"]'], "names ['baseline'] twice"),
        "a strategy twice": ([*bench, 'experiment.bench_strategies=["darts","darts"]'], "names ['darts'] twice"),
        "an ops head with an unknown op": (
            [*bench, 'experiment.bench_heads=["ops:projector=linear_relu,linear_foo,identity,identity"]'],
            "unknown op 'linear_foo'; valid: ",
        ),
        "negative stop-after": ([*pretrain, "--stop-after", "-1"], "argument --stop-after: -1: give 1 or more"),
        "damaged meta.json": (
            ["pretrain", "moco_cifar10", "profile=smoke", f"data.root={damaged}", "--runs", str(tmp / "runs")],
            f"{damaged / 'cifar10' / 'meta.json'}: not a meta.json this suite wrote",
        ),
        "download offline": (
            ["data", "prepare", "cifar10", "--download", "--root", str(tmp / "data")],
            "--download: could not download cifar10 through torchvision ([Errno -3] Temporary failure",
        ),
        "unprepared dataset offline": (
            ["bench", "moco", "profile=smoke", f"data.root={tmp / 'data'}", "--runs", str(tmp / "runs")],
            "offline? give --source PATH",
        ),
        "more loader workers than cores": ([*bench, f"data.workers={CORES + 1}"], f"this machine has {CORES} CPU"),
        "more writers than cores": (
            ["data", "prepare", "cifar10", "--source", str(a_file), "--workers", str(CORES + 1)],
            f"--workers = {CORES + 1}: this machine has {CORES} CPU cores",
        ),
        "lr not a number": ([*bench, "train.lr=nan"], "train.lr = nan: expected a finite number"),
        "lr infinite": ([*bench, "train.lr=inf"], "train.lr = inf: expected a finite number"),
        "no search epochs": ([*bench, "search.epochs=0"], "search.epochs = 0 is out of range; expected >= 1"),
        "reversed crop scale": ([*bench, "data.crop_scale=[1.0,0.2]"], "data.crop_scale = [1.0, 0.2]: the smaller"),
        "subset larger than the split": (
            [*bench, "data.train_subset=60000"],
            "data.train_subset = 60000: cifar10's train split has 50,000 images",
        ),
    }


CASES = list(_cases(Path("/any")))  # the names; each test builds its own in its tmp_path


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line_before_any_work(case, cifar10_data, tmp_path, monkeypatch, capsys):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "short.toml").write_text('framework = "moco"\n[heads]\nprojector = ["identity"]\n')
    (tmp_path / "damaged" / "cifar10").mkdir(parents=True)
    (tmp_path / "damaged" / "cifar10" / "meta.json").write_text('{"classes": ')
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", _offline)
    monkeypatch.setenv(runner.SOURCES, str(tmp_path / "no-archives"))
    args, message = _cases(tmp_path)[case]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nasiam-bench: error: "), err
    assert message in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing left behind


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused(tmp_path, capsys):
    assert main(["bench", "moco", *SMOKE, "--runs", str(tmp_path / "runs"), "--device", "cuda"]) == 2
    assert "--device cuda: this machine has no CUDA GPU that torch can see; give cpu or auto" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
