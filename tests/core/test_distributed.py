"""torchrun with 2 CPU processes (gloo) gives the loss and gradients of 1 process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch

from nasiam_bench.core.registry import FRAMEWORKS
from tests.conftest import REPO

SCRIPT = REPO / "tests" / "core" / "distributed_check.py"
pytestmark = [pytest.mark.xdist_group("distributed"), pytest.mark.slow]  # one worker runs the torchrun pair once


def _run(args, out):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *args, str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="session")  # kept by the worker, whatever runs between its tests
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    single = _run([str(SCRIPT)], folder / "single.pt")
    pair = _run(
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(SCRIPT)],  # a free port
        folder / "pair.pt",
    )
    return single, pair


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_two_processes_match_one(runs, framework):
    single, pair = runs[0][framework], runs[1][framework]
    assert pair["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-6)
    assert single["grads"].keys() == pair["grads"].keys() and len(single["grads"]) > 10
    for name, grad in single["grads"].items():
        torch.testing.assert_close(pair["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=f"{framework} {name}")
    # BatchNorm running statistics over the global batch, and MoCo's queue of gathered keys, agree too.
    for name, buffer in single["buffers"].items():
        torch.testing.assert_close(pair["buffers"][name], buffer, rtol=1e-4, atol=1e-6, msg=f"{framework} {name}")


@pytest.mark.usefixtures("cifar10_data")
def test_pretrain_under_torchrun_with_two_cpu_processes(tmp_path):
    from tests.conftest import TEST_DATA_ROOT

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # rendezvous on a free local port
            "--nproc_per_node",
            "2",
            "-m",
            "nasiam_bench",
            "pretrain",
            "moco_cifar10",
            "profile=smoke",
            f"data.root={TEST_DATA_ROOT}",
            "data.train_subset=128",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished") == 1  # one process reports
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and (tmp_path / "backbone.pt").is_file()
    assert "FutureWarning" not in result.stderr
