"""The step loop makes the host wait for the device only at its read points (issue 21): a step's losses stay on the
device, the loop reads them every ``READ_EVERY`` steps and at the epoch's end, and a non-finite loss is still named
by the step it happened at. On the CPU no read waits for anything, so these tests count the suite's own reads of
tensor values instead; on CUDA (``make test-gpu``) any synchronisation inside a step is an error."""

import contextlib
import sys
from pathlib import Path

import pytest
import torch

import nasiam_bench
from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.engine import loop
from nasiam_bench.engine.train import TrainingDiverged, pretrain
from nasiam_bench.search.run import run_search
from tests.conftest import TEST_DATA_ROOT

pytestmark = pytest.mark.usefixtures("cifar10_data")

# What makes the host wait for a CUDA tensor's value.
SUITE = str(Path(nasiam_bench.__file__).parent)  # reads made by code in nasiam_bench/
READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")
SEARCHING = [s for s in SEARCH_STRATEGIES.list() if s != "none"]


class _Reads:
    """Counts host reads of tensors made inside the loop's steps and their ``after_step`` callbacks."""

    def __init__(self, monkeypatch, guard=contextlib.nullcontext) -> None:
        self.inside, self.count, self.steps, self.guard = False, 0, 0, guard
        for name in READS:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counted(real))
        real_loop = loop.run_epochs
        for name, module in sys.modules.copy().items():  # every module of the suite that imports run_epochs
            if name.startswith("nasiam_bench") and getattr(module, "run_epochs", None) is real_loop:
                monkeypatch.setattr(module, "run_epochs", self._watched(real_loop))

    def _counted(self, real):
        def read(tensor, *args, **kwargs):
            # the suite's own reads: torch's CPU-side counters (Adam's step) and FFCV's host buffers are no sync
            if self.inside and SUITE in sys._getframe(1).f_code.co_filename:
                self.count += 1
            return real(tensor, *args, **kwargs)

        return read

    @contextlib.contextmanager
    def _counting(self):
        self.inside = True
        try:
            with self.guard():
                yield
        finally:
            self.inside = False

    def _watched(self, real_loop):
        def run_epochs(loader, epochs, step, callbacks=(), **kwargs):
            def counted_step(epoch, i, batch):
                self.steps += 1
                with self._counting():
                    return step(epoch, i, batch)

            class Counted(loop.Callback):
                def after_step(_, epoch, i, out):
                    with self._counting():
                        for callback in callbacks:
                            callback.after_step(epoch, i, out)

            wrapped = [_Delegate(c) for c in callbacks]
            return real_loop(loader, epochs, counted_step, [Counted(), *wrapped], **kwargs)

        return run_epochs


class _Delegate(loop.Callback):
    """A callback whose ``after_step`` the counting wrapper calls instead (the rest passes through)."""

    def __init__(self, inner: loop.Callback) -> None:
        self.inner = inner

    def epoch_start(self, epoch):
        self.inner.epoch_start(epoch)

    def after_read(self, epoch, values):
        self.inner.after_read(epoch, values)

    def epoch_end(self, epoch):
        self.inner.epoch_end(epoch)

    @property
    def should_stop(self):
        return self.inner.should_stop


def smoke(framework, *overrides):
    base = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=96", "train.batch_size=16"]
    return load_spec(f"{framework}_cifar10", [*base, *overrides])


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_pre_training_steps_make_no_host_read(framework, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch)
    pretrain(smoke(framework, "train.epochs=2", "eval.knn_every=0"), 0, tmp_path / "run", progress=False)
    assert reads.steps >= 10 and reads.count == 0


@pytest.mark.parametrize("strategy", SEARCHING)
def test_search_steps_make_only_the_host_reads_their_strategy_declares(strategy, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch)
    spec = smoke(
        "simsiam", f"strategy={strategy}", "search.batch_size=16", "search.epochs=2", "search.random_samples=2"
    )
    run_search(spec, 0, tmp_path / "search", progress=False)
    assert reads.steps >= 5
    assert reads.count == SEARCH_STRATEGIES.get(strategy).reads_per_step * reads.steps


def test_a_loss_read_later_is_named_by_the_step_it_turned_non_finite_at(tmp_path, monkeypatch):
    from nasiam_bench.models.frameworks.simsiam import SimSiam

    real, calls = SimSiam.forward, []

    def poisoned_from_step_3(self, view1, view2):
        out = real(self, view1, view2)
        calls.append(1)
        return {**out, "loss": out["loss"] * float("nan")} if len(calls) >= 3 else out

    monkeypatch.setattr(SimSiam, "forward", poisoned_from_step_3)
    monkeypatch.setattr(loop, "READ_EVERY", 4)
    with pytest.raises(TrainingDiverged, match=r"the simsiam loss is nan at epoch 1, step 3 \(lr [0-9.e-]+\)"):
        pretrain(smoke("simsiam", "eval.knn_every=0"), 0, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # no epoch ended: nothing was saved


@contextlib.contextmanager
def _sync_is_an_error():
    """CUDA raises on any host-device synchronisation inside the block."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.cuda
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_pre_training_steps_never_synchronise_on_cuda(framework, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch, guard=_sync_is_an_error)
    spec = smoke(framework, "train.epochs=2", "eval.knn_every=0")
    pretrain(spec, 0, tmp_path / "run", device="cuda", progress=False)
    assert reads.steps >= 10


@pytest.mark.cuda
@pytest.mark.parametrize("strategy", [s for s in SEARCHING if SEARCH_STRATEGIES.get(s).reads_per_step == 0])
def test_search_steps_never_synchronise_on_cuda(strategy, tmp_path, monkeypatch):
    reads = _Reads(monkeypatch, guard=_sync_is_an_error)
    spec = smoke(
        "simsiam", f"strategy={strategy}", "search.batch_size=16", "search.epochs=2", "search.random_samples=2"
    )
    run_search(spec, 0, tmp_path / "search", device="cuda", progress=False)
    assert reads.steps >= 5
