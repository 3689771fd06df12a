"""Progress reads well in a log (issue 23): tqdm's bar on a terminal, plain lines without carriage returns in a
file or a pipe, one per epoch of pre-training."""

import sys

import pytest
from tqdm.auto import tqdm

from nasiam_bench.config.spec import load_spec
from nasiam_bench.core import progress as progress_module
from nasiam_bench.core.progress import progress
from nasiam_bench.engine.train import pretrain
from tests.conftest import TEST_DATA_ROOT


def test_in_a_log_one_line_when_done_and_no_carriage_returns(capsys):
    assert list(progress(range(3), "work", unit="step")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1 and err.startswith("work: 3/3 steps in ")


def test_in_a_log_long_work_says_how_far_it_is(capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", 0.0)
    list(progress(iter(range(3)), "long", unit="batch", end=False))
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" batchs")[0] for line in lines] == ["long: 1", "long: 2", "long: 3"]  # no total: an iterator


def test_inner_loops_say_nothing_when_short_and_nothing_when_disabled(capsys):
    list(progress(range(3), "features", end=False))
    list(progress(range(3), "off", enabled=False))
    assert capsys.readouterr().err == ""


def test_on_a_terminal_the_bar_is_tqdm(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(progress(range(3), "work"), tqdm)


@pytest.mark.usefixtures("cifar10_data")
def test_a_pretraining_log_has_one_line_per_epoch(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY_S", float("inf"))  # the lines of slow epochs aside
    spec = load_spec("moco_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "train.epochs=2"])
    pretrain(spec, 0, tmp_path / "run", progress=True)
    err = capfd.readouterr().err
    assert "\r" not in err
    epochs = [line for line in err.splitlines() if " epoch " in line and " steps in " in line]
    assert [line.split(":")[0].rsplit(" ", 1)[-1] for line in epochs] == ["1/2", "2/2"]
