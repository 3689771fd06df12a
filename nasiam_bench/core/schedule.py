"""The learning-rate schedule of every optimiser over weights: linear warm-up, then a cosine to zero, per step
(or a constant learning rate, as NASiam's SimCLR code trains; or steps of x 0.1 at milestones, as MoCo's probe).

A parameter group marked ``fixed_lr`` (SimSiam's predictor, as its paper) keeps its learning rate, in pre-training
and in the search alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("cosine", "constant")


def _factor(total: int, warmup: int, fixed: bool, milestones: tuple[int, ...], per: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if per:
            step -= step % per  # once an epoch: the rate of the epoch's first step
        if fixed:
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        if milestones:
            return 0.1 ** sum(step >= m for m in milestones)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    kind: str = "cosine",
    milestones: tuple[int, ...] = (),
    steps_per_epoch: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step schedule for each of ``optimizer``'s groups; groups with ``fixed_lr`` (and every group of a
    ``constant`` schedule) stay constant. ``milestones``: the rate is multiplied by 0.1 from each of these steps
    on, in place of the cosine. ``steps_per_epoch``: the rate changes once an epoch of that many steps, to the
    rate of its first step (NASiam's code's ``adjust_learning_rate``); 0: every step."""
    factors = [
        _factor(
            max(1, total_steps),
            warmup_steps,
            kind == "constant" or bool(g.get("fixed_lr")),
            milestones,
            steps_per_epoch,
        )
        for g in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def lr_at(scheduler: torch.optim.lr_scheduler.LambdaLR, step: int) -> float:
    """The first group's learning rate of the 0-based ``step`` (what it was, after the schedule has moved on)."""
    return scheduler.base_lrs[0] * scheduler.lr_lambdas[0](step)
