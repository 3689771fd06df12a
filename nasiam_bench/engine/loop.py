"""The one training loop: epochs of steps over a two-view loader, the work around them done by callbacks.

Pre-training, the gradient search strategies and the random strategy's candidates all run through ``run_epochs``.
A step function does one optimisation step and returns its losses; callbacks do everything an epoch needs around
the steps (the kNN monitor, best-on-test, the collapse warning, logging, checkpoints through
``checkpoints.save_state``). The loop stops a run whose loss turns non-finite with ``TrainingDiverged``, before any
callback saves or writes what it produced.

Inside the steps the host never waits for the device: a step returns its losses as device tensors, the loop keeps
them there, and reads them back at *read points* only, every ``read_every`` steps and at the epoch's end, in one
transfer. There it checks that they are finite (naming the first step that was not) and hands the values to the
callbacks' ``after_read`` (per-step TensorBoard scalars, say).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nasiam_bench.core.progress import progress as progress_of
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.store.occupancy import occupying

READ_EVERY = 50  # steps between host reads of the losses: one sync per 50 steps, and a diverged run found soon
LOSS_KEYS = ("loss", "arch_loss")  # the step outputs the loop checks and hands to ``after_read``
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
StepFn = Callable[[int, int, Batch], dict[str, Any]]  # (epoch, step in the epoch, batch) -> {"loss": ..., ...}


class TrainingDiverged(NasiamBenchError):
    """A loss became NaN or infinite."""


@dataclass
class Epoch:
    """What one epoch's steps left for the callbacks: its index, its step outputs' losses, its wall time."""

    index: int
    losses: list[torch.Tensor] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)  # the last step's outputs (its embedding, say)
    seconds: float = 0.0
    row: dict[str, Any] = field(default_factory=dict)  # what callbacks add for the epoch's log row
    shared_by: float = 1.0  # wall over device time: the mean number of runs on its device in the epoch (occupancy.py)

    @property
    def device_seconds(self) -> float:
        """Its share of the device's time: wall seconds over the runs that shared the device."""
        return self.seconds / self.shared_by


class Callback:
    """Work around the steps; every method is optional. A callback that sets ``should_stop`` ends the run after
    the epoch (a search's stopping rule)."""

    should_stop = False

    def epoch_start(self, epoch: int) -> None:
        """Before the epoch's first step."""

    def after_step(self, epoch: int, step: int, out: dict[str, Any]) -> None:
        """After each step, with its outputs (device tensors: reading them here makes the host wait)."""

    def after_read(self, epoch: int, values: list[tuple[int, dict[str, float]]]) -> None:
        """At a read point: (step, {loss key: value}) of every step since the last one, all finite."""

    def epoch_end(self, epoch: Epoch) -> None:
        """After the epoch's last step, in the order the callbacks are given."""


STOP_REQUESTED = threading.Event()  # set by a cluster job's signal handler (executors.BenchJob)


class StopRequested(NasiamBenchError):
    """The loop stopped at an epoch's end, its checkpoint written, because ``STOP_REQUESTED`` was set."""


def run_epochs(
    loader,
    epochs: range,
    step: StepFn,
    callbacks: Sequence[Callback] = (),
    *,
    desc: str = "epoch",
    total: int | None = None,
    progress: bool = True,
    diverged: Callable[[int, int, str], str] | None = None,
    read_every: int | None = None,
    device: torch.device | str | None = None,
) -> None:
    """Run ``step`` over every batch of ``loader`` for each epoch of ``epochs``. ``diverged(epoch, step, value)``
    words the error when a step's loss is not finite (the checkpoint of the epoch before is intact).
    ``read_every``: steps between read points (default ``READ_EVERY``). ``device``: the device the steps run on,
    whose other runs are counted (each epoch's ``shared_by``)."""
    read_every = read_every or READ_EVERY
    with occupying(device) as occupancy:
        _epochs(loader, epochs, step, callbacks, desc, total, progress, diverged, read_every, occupancy)


def _epochs(loader, epochs, step, callbacks, desc, total, progress, diverged, read_every, occupancy) -> None:
    for index in epochs:
        for callback in callbacks:
            callback.epoch_start(index)
        loader.set_epoch(index)
        epoch, began, unread = Epoch(index), time.perf_counter(), _Unread(index, callbacks, diverged)
        share = occupancy.device_seconds()
        label = f"{desc} {index + 1}/{total or epochs.stop}"
        bar = progress_of(loader, label, unit="step", enabled=progress)
        for i, batch in enumerate(bar):
            out = step(index, i, batch)
            epoch.losses.append(torch.as_tensor(out["loss"]).detach())
            epoch.last = out
            unread.add(i, out)
            for callback in callbacks:
                callback.after_step(index, i, out)
            if (i + 1) % read_every == 0:
                unread.read()
        unread.read()
        epoch.seconds = time.perf_counter() - began
        device = occupancy.device_seconds() - share  # its share of the device, integrated over the epoch
        epoch.shared_by = epoch.seconds / device if device > 0 else 1.0
        for callback in callbacks:
            callback.epoch_end(epoch)
        if STOP_REQUESTED.is_set():  # its checkpoint is written: the run resumes from here
            raise StopRequested(f"{label}: stopped on request (a preemption or time-out signal)")
        if any(callback.should_stop for callback in callbacks):
            return


class _Unread:
    """The losses of the steps since the last read point, on the device until ``read``."""

    def __init__(self, epoch: int, callbacks: Sequence[Callback], diverged) -> None:
        self.epoch, self.callbacks, self.diverged = epoch, callbacks, diverged
        self.steps: list[int] = []
        self.losses: dict[str, list[tuple[int, torch.Tensor]]] = {key: [] for key in LOSS_KEYS}

    def add(self, step: int, out: dict[str, Any]) -> None:
        self.steps.append(step)
        for key in LOSS_KEYS:
            value = out.get(key)
            if value is not None:  # e.g. no architecture step on this batch
                self.losses[key].append((step, torch.as_tensor(value).detach().float().reshape(())))

    def read(self) -> None:
        """One transfer of every unread loss; the first non-finite one stops the run."""
        if not self.steps:
            return
        values: dict[int, dict[str, float]] = {s: {} for s in self.steps}
        for key, pairs in self.losses.items():
            if pairs:
                numbers = torch.stack([t for _, t in pairs]).tolist()
                for (s, _), number in zip(pairs, numbers, strict=True):
                    values[s][key] = number
        bad = [(s, key, v) for s in self.steps for key, v in values[s].items() if not math.isfinite(v)]
        if bad:
            s, key, number = bad[0]  # the first step that was not finite, whichever read point saw it
            where = f"epoch {self.epoch + 1}, step {s + 1}"
            raise TrainingDiverged(
                self.diverged(self.epoch, s, f"{key} {number}") if self.diverged else f"{key} is {number} at {where}"
            )
        for callback in self.callbacks:
            callback.after_read(self.epoch, [(s, values[s]) for s in self.steps])
        self.steps, self.losses = [], {key: [] for key in LOSS_KEYS}


def search_diverged(strategy: str) -> Callable[[int, int, str], str]:
    """The words of a search's divergence (``run_epochs``' ``diverged``)."""

    def words(epoch: int, step: int, value: str) -> str:
        name, _, number = value.partition(" ")
        return (
            f"search {strategy}: the {name.replace('_', ' ')} is {number} at epoch {epoch + 1}, step {step + 1}; no "
            "genotype is written (lower search.lr or search.arch_lr, or set train.amp=false)"
        )

    return words


def epoch_loss(epoch: Epoch) -> torch.Tensor:
    """The mean of an epoch's step losses."""
    return torch.stack(epoch.losses).mean()
