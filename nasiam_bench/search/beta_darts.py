"""β-DARTS (Ye et al., CVPR 2022): first-order DARTS with β-decay regularisation of the architecture weights.

DARTS drifts towards parameter-free ops (every MoCo genotype NASiam published is pooling or identity). β-DARTS adds
to the architecture loss λ·mean over layers of logsumexp(alpha of the layer), whose gradient is softmax(alpha): it
pulls the largest weights down hardest, keeping the op weights (β) of a layer from running away. λ grows linearly
from 0 to ``search.beta_decay`` (unset: 25) over the search; the authors' code (github.com/Sunshine-Ye/Beta-DARTS,
optimizers/darts/architect.py) steps it per epoch, 0.5 x epoch, about 25 at the end of DARTS' 50-epoch search.
Everything else is ``darts``.
"""

from __future__ import annotations

import torch

from nasiam_bench.core.registry import SEARCH_STRATEGIES
from nasiam_bench.search.base import GradientStrategy

DEFAULT_BETA_DECAY = 25.0  # the authors' code: 0.5 x epoch, at the last of a 50-epoch search (49 x 0.5 = 24.5)


def beta_decay_loss(alphas: list[torch.Tensor]) -> torch.Tensor:
    """The mean over every searched layer (a row of alpha) of logsumexp of that row."""
    return torch.cat([torch.logsumexp(alpha, dim=-1) for alpha in alphas]).mean()


@SEARCH_STRATEGIES.register("beta_darts")
class BetaDARTS(GradientStrategy):
    name = "beta_darts"

    def attach(self, model, search, total_steps: int, batch_size: int, amp: bool = False) -> None:
        super().attach(model, search, total_steps, batch_size, amp)
        self.beta_decay = DEFAULT_BETA_DECAY if search.beta_decay is None else search.beta_decay

    def arch_penalty(self) -> torch.Tensor:
        weight = self.beta_decay * self.steps / self.total_steps  # linear from 0, per weight step done
        return weight * beta_decay_loss([h.alpha for h in self.heads.values()])
