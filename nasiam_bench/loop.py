"""The one training loop: epochs of steps over a two-view loader, the work around them done by callbacks.

Pre-training, the gradient search strategies and the random strategy's candidates all run through ``run_epochs``.
A step function does one optimisation step and returns its losses; callbacks do everything an epoch needs around
the steps (the kNN monitor, best-on-test, the collapse warning, logging, checkpoints through
``checkpoints.save_state``). The loop stops a run whose loss turns non-finite with ``TrainingDiverged``, before any
callback saves or writes what it produced.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from nasiam_bench.registry import NasiamBenchError

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


class Callback:
    """Work around the steps; every method is optional. A callback that sets ``should_stop`` ends the run after
    the epoch (a search's stopping rule)."""

    should_stop = False

    def epoch_start(self, epoch: int) -> None:
        """Before the epoch's first step."""

    def after_step(self, epoch: int, step: int, out: dict[str, Any]) -> None:
        """After each step, with its outputs."""

    def epoch_end(self, epoch: Epoch) -> None:
        """After the epoch's last step, in the order the callbacks are given."""


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
) -> None:
    """Run ``step`` over every batch of ``loader`` for each epoch of ``epochs``. ``diverged(epoch, step, value)``
    words the error when a step's loss is not finite (the checkpoint of the epoch before is intact)."""
    for index in epochs:
        for callback in callbacks:
            callback.epoch_start(index)
        loader.set_epoch(index)
        epoch, began = Epoch(index), time.perf_counter()
        label = f"{desc} {index + 1}/{total or epochs.stop}"
        bar = tqdm(loader, desc=label, unit="step", leave=False, disable=not progress)
        for i, batch in enumerate(bar):
            out = step(index, i, batch)
            _check_finite(out, index, i, diverged)
            epoch.losses.append(torch.as_tensor(out["loss"]).detach())
            epoch.last = out
            for callback in callbacks:
                callback.after_step(index, i, out)
        epoch.seconds = time.perf_counter() - began
        for callback in callbacks:
            callback.epoch_end(epoch)
        if any(callback.should_stop for callback in callbacks):
            return


def _check_finite(out: dict[str, Any], epoch: int, step: int, diverged) -> None:
    for key in ("loss", "arch_loss"):
        value = out.get(key)
        if value is None:  # e.g. no architecture step on this batch
            continue
        number = value.item() if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(number):
            where = f"epoch {epoch + 1}, step {step + 1}"
            text = diverged(epoch, step, f"{key} {number}") if diverged else f"{key} is {number} at {where}"
            raise TrainingDiverged(text)


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
