"""Heads of one seed pre-trained in lockstep: one loader, so one decode and one augmentation a step for every head,
each head with its own model, optimiser, schedule, random streams, checkpoint and run folder (its own identity),
so that each ends with the weights its separate run gives, and each resumes on its own.

Every head's steps and callbacks run with the global random generators set to that head's own state (a head drawing
from them draws what it would alone). A head's ``train_seconds`` is its share of the steps' wall time (1/N each), and
its checkpoint says how many heads shared them (``lockstep``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasiam_bench.config.spec import Spec, SpecError
from nasiam_bench.core import distributed
from nasiam_bench.core.rng import rng_state, seed_everything, set_rng_state
from nasiam_bench.engine.loop import Callback, Epoch, run_epochs
from nasiam_bench.engine.train import PretrainResult, PretrainRun
from nasiam_bench.store.claims import exclusive
from nasiam_bench.store.layout import RUN_CLAIM


@dataclass(frozen=True)
class Member:
    """One head of a lockstep: its spec, run folder and the ops of its searched heads (None: none)."""

    spec: Spec
    out_dir: Path
    genotype: dict[str, list[str]] | None = None


def pretrain_lockstep(
    members: list[Member],
    seed: int,
    *,
    device: str = "auto",
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> list[PretrainResult]:
    """Pre-train every member for its ``train.epochs`` on the same batches, resuming each from its checkpoint;
    ``stop_after``: end this call after that many epochs (the checkpoints stay resumable)."""
    _check_shared(members)
    ctx = distributed.setup(device)
    with contextlib.ExitStack() as claims:
        if ctx.is_main:
            for m in members:
                claims.enter_context(exclusive(m.out_dir / RUN_CLAIM, f"the run in {m.out_dir}"))
        lanes: list[_Lane] = []
        claims.callback(lambda: [lane.run.close() for lane in lanes])  # on a fall-back too
        _lanes(members, seed, ctx, resume, lanes)
        if len({lane.run.epochs_done for lane in lanes}) > 1:
            raise SpecError("lockstep: the heads' checkpoints are at different epochs; resume them one by one")
        first = lanes[0].run
        for lane in lanes:
            lane.run.lockstep = len(lanes)

        def step(epoch: int, i: int, batch) -> dict[str, Any]:
            outs = [lane.step(epoch, i, batch) for lane in lanes]
            # a sum is non-finite when any head's loss is: the loop's one check covers them all
            return {"loss": torch.stack([o["loss"].detach().float() for o in outs]).sum(), "lanes": outs}

        def diverged(epoch: int, i: int, value: str) -> str:
            lane = next(lane for lane in lanes if not torch.isfinite(lane.epoch.losses[i]))
            return lane.run.diverged(epoch, i, value)

        epochs = first.epochs_to_run(stop_after)
        desc = f"lockstep {len(lanes)} heads, epoch"
        show = progress and ctx.is_main
        run_epochs(first.loader, epochs, step, lanes, desc=desc, progress=show, diverged=diverged, device=ctx.device)
        return [lane.run.finish() for lane in lanes]


def _check_shared(members: list[Member]) -> None:
    """The heads must read the same batches for as many epochs: the same [data], train.batch_size, train.epochs."""
    if not members:
        raise SpecError("lockstep: no heads to train")

    def shared(spec: Spec) -> dict[str, Any]:
        return {"data": spec.data, "train.batch_size": spec.train.batch_size, "train.epochs": spec.train.epochs}

    first = shared(members[0].spec)
    for m in members[1:]:
        differs = [key for key, value in shared(m.spec).items() if value != first[key]]
        if differs:
            raise SpecError(f"lockstep: {m.out_dir} differs from {members[0].out_dir} in {', '.join(differs)}")


def _lanes(members: list[Member], seed: int, ctx, resume: bool, lanes: list[_Lane]) -> list[_Lane]:
    """Each member's run, built as its separate run builds it (seeded first), the first one's loader shared,
    appended to ``lanes`` as it is built (so that a failure closes those built)."""
    loader = None
    for index, m in enumerate(members):
        seed_everything(seed)
        run = PretrainRun(m.spec, seed, m.out_dir, m.genotype, ctx, loader=loader)
        loader = run.loader
        if resume:
            run.restore()
        run.track()
        lanes.append(_Lane(run, index, len(members)))
    return lanes


class _Lane(Callback):
    """One head in the lockstep: its run's callbacks, fed its own step outputs, under its own random streams."""

    def __init__(self, run: PretrainRun, index: int, heads: int) -> None:
        self.run, self.index, self.heads = run, index, heads
        self.rng = rng_state()
        self.callbacks = run.callbacks()
        self.epoch = Epoch(run.epochs_done)
        self.unread: list[tuple[int, torch.Tensor]] = []

    @contextlib.contextmanager
    def own_streams(self) -> Iterator[None]:
        set_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = rng_state()

    def step(self, epoch: int, i: int, batch) -> dict[str, Any]:
        with self.own_streams():
            return self.run.step(epoch, i, batch)

    @property
    def should_stop(self) -> bool:
        return any(c.should_stop for c in self.callbacks)

    def epoch_start(self, epoch: int) -> None:
        self.epoch = Epoch(epoch)
        with self.own_streams():
            for c in self.callbacks:
                c.epoch_start(epoch)

    def after_step(self, epoch: int, step: int, out: dict[str, Any]) -> None:
        mine = out["lanes"][self.index]
        self.epoch.losses.append(mine["loss"].detach())
        self.epoch.last = mine
        self.unread.append((step, mine["loss"].detach()))
        for c in self.callbacks:
            c.after_step(epoch, step, mine)

    def after_read(self, epoch: int, values: list[tuple[int, dict[str, float]]]) -> None:
        numbers = torch.stack([t.float() for _, t in self.unread]).tolist()  # its own losses, one transfer
        mine = [(s, {"loss": n}) for (s, _), n in zip(self.unread, numbers, strict=True)]
        self.unread = []
        for c in self.callbacks:
            c.after_read(epoch, mine)

    def epoch_end(self, epoch: Epoch) -> None:
        self.epoch.seconds = epoch.seconds / self.heads  # its share of the steps' wall time
        self.epoch.shared_by = epoch.shared_by
        with self.own_streams():
            for c in self.callbacks:
                c.epoch_end(self.epoch)
