"""W&B tracking, offline (issue 33): the run logs its epochs into the run folder, and a killed and resumed run
continues the same W&B run; tracking is part of no identity."""

from __future__ import annotations

import pytest

from nasiam_bench.config.spec import load_spec
from nasiam_bench.engine.train import pretrain
from nasiam_bench.store.checkpoints import read_state
from nasiam_bench.store.identity import run_id
from tests.conftest import TEST_DATA_ROOT

wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'nasiam-bench[wandb]')")


@pytest.mark.usefixtures("cifar10_data")
def test_an_offline_wandb_run_is_continued_by_its_resumed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    common = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.loader=torch", "data.workers=0", "train.epochs=2"]
    spec = load_spec("moco_cifar10", [*common, "experiment.wandb=offline"])
    assert run_id(spec) == run_id(load_spec("moco_cifar10", common))  # part of no identity
    out = tmp_path / "run"
    first = pretrain(spec, 0, out, stop_after=1, progress=False)  # killed after epoch 1, as far as it knows
    kept = read_state(first.checkpoint, "pretrain")["wandb_id"]
    assert kept and first.wandb_id == kept
    done = pretrain(spec, 0, out, progress=False)
    assert done.finished and done.wandb_id == kept  # the resumed run continues the same W&B run
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(r.name.endswith(f"-{kept}") for r in runs)
    assert all(list(r.glob("*.wandb")) for r in runs)  # each start's logged history
