"""Without FFCV (a source package that needs OpenCV), the suite imports, prepares and trains on the torch loader,
and says once why FFCV is not used."""

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tests.data_fixtures import make_tree

pytestmark = pytest.mark.slow  # each test starts an interpreter without FFCV

HIDE_FFCV = "import sys; sys.modules['ffcv'] = None  # `import ffcv` now raises ImportError, as where it is missing\n"


def run_without_ffcv(script: str) -> subprocess.CompletedProcess:
    code = HIDE_FFCV + textwrap.dedent(script)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_the_suite_prepares_trains_and_evaluates_on_the_torch_loader_without_ffcv(tmp_path):
    tree = make_tree(tmp_path / "tree", per_split={"train": 16, "val": 6})
    root, run = tmp_path / "data", tmp_path / "run"
    spec = ["moco_cifar10", "profile=smoke", "experiment.dataset=imagefolder", f"data.root={root}",
            "data.train_subset=0", "train.batch_size=16", "eval.knn_k=5", "eval.test_subset=0"]  # fmt: skip
    result = run_without_ffcv(f"""
        from nasiam_bench.cli import main
        assert main(["data", "prepare", "imagefolder", "--source", {str(tree)!r}, "--root", {str(root)!r}]) == 0
        assert main(["pretrain", *{spec!r}, "--out", {str(run)!r}]) == 0
        assert main(["eval", {str(run / "checkpoint.pt")!r}]) == 0
        import ffcv
    """)
    assert "ModuleNotFoundError" in result.stderr.splitlines()[-1]  # the script ran to its end: ffcv was hidden
    assert result.stderr.count("FFCV cannot be imported") == 1, result.stderr  # said once, in each process
    assert 'reading data with the torch loader instead (data.loader = "torch"' in result.stderr
    assert not list(root.rglob("*.beton"))
    assert (run / "checkpoint.pt").is_file() and (run / "eval.json").is_file()


def test_doctor_skips_the_ffcv_loader_check_and_says_why():
    result = run_without_ffcv("""
        from nasiam_bench.bench.doctor import check_loader
        import torch
        check = check_loader("ffcv", torch.device("cpu"), [], 1)
        print(check.status, "|", check.detail)
    """)
    assert result.stdout.startswith("skipped | FFCV cannot be imported"), result.stderr
