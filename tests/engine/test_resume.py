"""One resume contract: a run killed in the middle of an epoch and started again ends exactly where an uninterrupted
run ends (weights, optimiser states, alpha, queue, RNG streams, the best-on-test weights), for every framework with
either loader (the torch one with a persistent worker) and the kNN monitor and best-on-test on, and for every search
strategy on every framework."""

import pytest
import torch

from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.data.loaders import SSLLoader
from nasiam_bench.engine.train import pretrain
from nasiam_bench.search.run import run_search
from nasiam_bench.store.checkpoints import BEST_CHECKPOINT, load_checkpoint, read_state
from tests.conftest import TEST_DATA_ROOT, assert_identical

pytestmark = pytest.mark.usefixtures("cifar10_data")


def smoke(framework, *overrides):
    return load_spec(f"{framework}_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", *overrides])


def kill_after(monkeypatch, batches: float) -> dict[str, int]:
    """Interrupt the run when its loaders have yielded ``batches`` batches (as Ctrl-C or a lost machine would);
    returns the count of batches yielded so far (``inf``: count without killing)."""
    real, seen = SSLLoader.__iter__, {"n": 0}

    def dying(self):
        for batch in real(self):
            seen["n"] += 1
            if seen["n"] > batches:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(SSLLoader, "__iter__", dying)
    return seen


LOADERS = ("ffcv", "torch")


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_pretraining_killed_mid_epoch_resumes_exactly(framework, loader, tmp_path, monkeypatch):
    monitored = ["eval.checkpoint=best-on-test", "eval.knn_every=1", "eval.monitor_subset=100"]
    data = [f"data.loader={loader}", "data.workers=1"]  # the torch loader keeps its worker across epochs
    spec = smoke(framework, "train.epochs=2", "data.train_subset=64", *monitored, *data)  # 2 steps an epoch
    whole = pretrain(spec, 0, tmp_path / "whole", progress=False)
    kill_after(monkeypatch, 3)  # in the second epoch: epoch 1's checkpoint is on disk, epoch 2 is lost
    with pytest.raises(KeyboardInterrupt):
        pretrain(spec, 0, tmp_path / "split", progress=False)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "split" / "backbone.pt").exists()  # exported only when finished
    monkeypatch.undo()
    # A fresh model and optimiser, as a new process would build them, load the checkpoint and finish the run.
    resumed = pretrain(spec, 0, tmp_path / "split", progress=False)
    assert resumed.finished and [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]
    assert [r["knn_top1"] for r in resumed.history] == [r["knn_top1"] for r in whole.history]
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    for part in ("model", "optimizer", "scheduler", "rng"):
        assert_identical(a[part], b[part], part)
    best_a, best_b = (torch.load(p / BEST_CHECKPOINT, weights_only=False) for p in (whole.out_dir, resumed.out_dir))
    assert best_a["epoch"] == best_b["epoch"]
    assert_identical(best_a["model"], best_b["model"], "best.model")
    backbone = torch.load(resumed.backbone_path)
    assert all(not k.startswith(("module.", "backbone.")) for k in backbone) and "conv1.weight" in backbone
    again = pretrain(spec, 0, tmp_path / "whole", progress=False)  # finished: nothing more to do
    assert again.finished and again.history == whole.history


@pytest.fixture
def without_alpha_plot():
    """The α heatmap, a drawing of the alpha these tests compare exactly, left out (its own monkeypatch: the tests
    undo theirs): 40 of them took a fifth of this module's time. test_search draws it and checks the file."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("nasiam_bench.search.run.plot_alpha", lambda *args, **kwargs: None)
        yield


@pytest.mark.usefixtures("without_alpha_plot")
@pytest.mark.parametrize("strategy", SEARCH_STRATEGIES.list())
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_search_killed_mid_epoch_resumes_exactly(framework, strategy, tmp_path, monkeypatch):
    # 2 epochs of one step of 16 images a half (weights, alpha): a kill in the second epoch
    spec = smoke(framework, f"strategy={strategy}", "search.epochs=2", "data.train_subset=64", "search.batch_size=16")
    counted = kill_after(monkeypatch, float("inf"))
    whole, _ = run_search(spec, 0, tmp_path / "whole", progress=False)
    monkeypatch.undo()
    # Three quarters of the way: gradient strategies in the second epoch, random in a later candidate.
    kill_after(monkeypatch, counted["n"] * 3 // 4)
    try:
        run_search(spec, 0, tmp_path / "split", progress=False)
        killed = False
    except KeyboardInterrupt:
        killed = True
    monkeypatch.undo()
    resumed, _ = run_search(spec, 0, tmp_path / "split", progress=False)
    assert killed == (strategy != "none")  # a strategy that trains nothing has nothing to kill
    assert resumed.genotype == whole.genotype and resumed.scores == whole.scores and resumed.steps == whole.steps
    assert_identical(resumed.alpha, whole.alpha, "alpha")
    a, b = (_search_state(tmp_path / run) for run in ("whole", "split"))
    assert (a is None) == (b is None)
    if a is not None:
        a.pop("seconds"), b.pop("seconds")
        assert_identical(a, b, "search_state")


def _search_state(folder):
    path = folder / "search_state.pt"
    return read_state(path, "search") if path.is_file() else None


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_optimiser_parameter_order_is_the_same_in_every_process(framework):
    from nasiam_bench.models.backbones import build_backbone

    def names_in_group_order():
        model = FRAMEWORKS.get(framework)(build_backbone("resnet18", cifar_stem=True, width=0.125))
        names = {id(p): n for n, p in model.named_parameters()}
        order = list(names.values())
        groups = [[names[id(p)] for p in g["params"]] for g in model.param_groups()]
        for group in groups:  # each group in the order of named_parameters
            assert group == sorted(group, key=order.index)
        return groups

    first, second = names_in_group_order(), names_in_group_order()  # new tensors, new addresses, same order
    assert first == second
    flat = [n for group in first for n in group]
    assert len(flat) == len(set(flat))
