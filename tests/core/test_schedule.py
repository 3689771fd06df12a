"""Learning-rate schedules: every step, or once an epoch as NASiam's code (``adjust_learning_rate``), for the
pre-training, the search's weights and the probe alike."""

import math

import pytest
import torch

from nasiam_bench.config.spec import EvalSection, load_spec
from nasiam_bench.core.schedule import lr_at, lr_schedule
from nasiam_bench.eval.probe import _optimizer
from nasiam_bench.search.base import weight_optimizer
from tests.conftest import TEST_DATA_ROOT

EPOCHS, PER_EPOCH = 4, 3


def _lrs(scheduler, steps=EPOCHS * PER_EPOCH):
    return [lr_at(scheduler, step) for step in range(steps)]


def _paper_cosine(base=1.0):
    """NASiam's code: lr = base x 0.5 (1 + cos(pi epoch / epochs)), set before each epoch."""
    return [base * 0.5 * (1 + math.cos(math.pi * (step // PER_EPOCH) / EPOCHS)) for step in range(EPOCHS * PER_EPOCH)]


def _sgd():
    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)


def test_a_schedule_stepped_once_an_epoch_is_the_papers_cosine():
    per_epoch = _lrs(lr_schedule(_sgd(), EPOCHS * PER_EPOCH, steps_per_epoch=PER_EPOCH))
    assert per_epoch == pytest.approx(_paper_cosine(), abs=1e-12)
    per_step = _lrs(lr_schedule(_sgd(), EPOCHS * PER_EPOCH))
    assert per_step[::PER_EPOCH] == pytest.approx(per_epoch[::PER_EPOCH]) and per_step[1] < per_epoch[1]


def test_the_search_weights_and_the_probe_step_once_an_epoch_when_told():
    search = load_spec("moco_cifar10", ["profile=smoke", f"search.epochs={EPOCHS}", "search.lr_steps=epoch"]).search
    groups = [{"params": list(torch.nn.Linear(2, 2).parameters())}]
    _, scheduler = weight_optimizer(groups, search, 256, EPOCHS * PER_EPOCH)
    base = scheduler.base_lrs[0]
    assert _lrs(scheduler) == pytest.approx(_paper_cosine(base), abs=1e-12)
    _, scheduler = _optimizer(torch.nn.Linear(2, 2), EvalSection(linear_epochs=EPOCHS, linear_lr_steps="epoch"), 3, 1.0)
    assert _lrs(scheduler) == pytest.approx(_paper_cosine(), abs=1e-12)
    _, scheduler = _optimizer(
        torch.nn.Linear(2, 2), EvalSection(linear_epochs=EPOCHS, linear_schedule="constant"), 3, 1.0
    )
    assert _lrs(scheduler) == [1.0] * EPOCHS * PER_EPOCH  # NASiam's SimCLR probe: Adam at a constant rate


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("lr_steps", ["epoch", "step"])
def test_pretraining_steps_once_an_epoch_when_told(lr_steps, tmp_path, monkeypatch):
    import nasiam_bench.engine.train as train

    seen = []

    def schedule(optimizer, total, *args, **kwargs):
        seen.append((total, kwargs.get("steps_per_epoch", 0)))
        return lr_schedule(optimizer, total, *args, **kwargs)

    monkeypatch.setattr(train, "lr_schedule", schedule)
    spec = load_spec("moco_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", f"train.lr_steps={lr_steps}"])
    train.pretrain(spec, 0, tmp_path / "run", progress=False)
    ((total, per),) = seen
    assert total > 1 and per == (total // spec.train.epochs if lr_steps == "epoch" else 0)
