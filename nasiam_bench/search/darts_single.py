"""Single-level DARTS: alpha and the weights learn from the same training batch and the same backward pass.

The relaxation of DARTS (Liu et al., 2019) without its bilevel split. Liu et al. tried it (sec. 3.3, alpha and w
optimised jointly on the union of both halves) and found its cells worse than the bilevel ones; later work (Bi et
al., 2020, GOLD-NAS) argues one level suffices with the right regularisation. Here it costs one forward-backward
pass per step, close to a plain training step of the supernet, and reads the training half only (the held-out half
is not used), so that the weights see the same batches, in the same order, as under ``darts``. Alpha keeps its own
optimiser (the recipe's search.arch_*), the weights theirs.
"""

from __future__ import annotations

import torch

from nasiam_bench.core.registry import SEARCH_STRATEGIES
from nasiam_bench.search.base import GradientStrategy, LossFn, framework_loss


@SEARCH_STRATEGIES.register("darts_single")
class SingleLevelDARTS(GradientStrategy):
    name = "darts_single"
    held_out = False

    def step(
        self,
        train_batch: tuple[torch.Tensor, torch.Tensor],
        val_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
        loss_fn: LossFn = framework_loss,
    ) -> dict[str, torch.Tensor]:
        """One joint update of alpha and the weights; ``val_batch`` is ignored (there is no held-out half)."""
        self.begin_step()
        loss = self.weight_step(train_batch, loss_fn, alpha_too=True)
        return {"loss": loss, "arch_loss": loss}
