"""GDAS (Dong & Yang, 2019): one op per layer, sampled with the Gumbel-softmax (hard, straight-through), the
temperature annealed linearly from ``search.tau_max`` to ``search.tau_min``. Only the sampled op is computed.

One sample per step, drawn before the step's first forward pass: both views, the predictor's two passes, the
momentum copies of the head and the step's weight update all use the same ops, so the siamese loss compares two
views through one network. The gradient reaches alpha through the straight-through estimator of that sample.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from nasiam_bench.core.registry import SEARCH_STRATEGIES
from nasiam_bench.models.heads.supernet import OpWeights
from nasiam_bench.search.base import GradientStrategy


def straight_through(
    alpha: torch.Tensor, gumbel: torch.Tensor, index: torch.Tensor, chosen: tuple[int, ...], tau: float
) -> OpWeights:
    """The one-hot ``index`` (``chosen`` on the host) in the forward pass; the gradient of
    softmax((alpha + gumbel) / tau) backwards."""
    soft = torch.softmax((alpha + gumbel) / tau, dim=-1)
    hard = F.one_hot(index, alpha.shape[-1]).to(soft.dtype)
    return OpWeights(hard - soft.detach() + soft, chosen)


@SEARCH_STRATEGIES.register("gdas")
class GDAS(GradientStrategy):
    name = "gdas"

    def __init__(self) -> None:
        super().__init__()
        self.tau = 10.0
        self.tau_range = (10.0, 0.1)

    def attach(self, model, search, total_steps: int, batch_size: int, amp: bool = False) -> None:
        super().attach(model, search, total_steps, batch_size, amp)
        self.tau_range = (search.tau_max, search.tau_min)

    reads_per_step = 1  # the sampled ops, read once a step: computing only those is GDAS's saving

    def begin_step(self) -> None:
        samples = {}
        for name, head in self.heads.items():
            alpha = head.alpha.detach()
            # Gumbel(0, 1) noise from torch's global generator, whose state the search checkpoints.
            gumbel = -torch.empty_like(alpha).exponential_().log()
            samples[name] = (gumbel, ((alpha + gumbel) / self.tau).argmax(dim=-1))
        chosen = torch.cat([index for _, index in samples.values()]).tolist()  # one host read for every head
        for name, (gumbel, index) in samples.items():
            mine, chosen = tuple(chosen[: len(index)]), chosen[len(index) :]
            self.heads[name].sampler = functools.partial(
                straight_through, gumbel=gumbel, index=index, chosen=mine, tau=self.tau
            )

    def on_epoch(self, epoch: int, epochs: int) -> None:
        high, low = self.tau_range
        self.tau = high - (high - low) * epoch / max(1, epochs - 1)
