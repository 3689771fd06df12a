"""GDAS (Dong & Yang, 2019): one op per layer per step, sampled with the Gumbel-softmax (hard, straight-through),
the temperature annealed linearly from ``search.tau_max`` to ``search.tau_min``. Only the sampled op is computed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasiam_bench.registry import SEARCH_STRATEGIES
from nasiam_bench.search.base import GradientStrategy


@SEARCH_STRATEGIES.register("gdas")
class GDAS(GradientStrategy):
    name = "gdas"

    def __init__(self) -> None:
        super().__init__()
        self.tau = 10.0
        self.tau_range = (10.0, 0.1)

    def attach(self, model, search, total_steps: int, batch_size: int) -> None:
        super().attach(model, search, total_steps, batch_size)
        self.tau_range = (search.tau_max, search.tau_min)
        for head in self.heads.values():
            head.weighting = self.sample
            head.hard = True

    def sample(self, alpha: torch.Tensor) -> torch.Tensor:
        return F.gumbel_softmax(alpha, tau=self.tau, hard=True, dim=-1)

    def on_epoch(self, epoch: int, epochs: int) -> None:
        high, low = self.tau_range
        self.tau = high - (high - low) * epoch / max(1, epochs - 1)
