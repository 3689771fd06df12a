"""The optimisers a spec can name, built one way for pre-training, the search's weights and the linear probe."""

from __future__ import annotations

from collections.abc import Iterable

import torch

OPTIMIZERS = ("sgd", "adam", "lars")


def scaled_lr(lr: float, scaling: str, batch_size: int) -> float:
    """``lr`` for a batch: ``linear`` scales it by batch/256 (Goyal et al., 2017), ``none`` keeps it."""
    return lr * batch_size / 256 if scaling == "linear" else lr


def build_optimizer(
    kind: str, groups: Iterable, lr: float, weight_decay: float, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """SGD with momentum, Adam (betas 0.9, 0.999) or LARS (timm's, over SGD with momentum)."""
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
    if kind == "lars":
        from timm.optim import Lars

        return Lars(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer {kind!r}; valid: {', '.join(OPTIMIZERS)}")
