"""SimSiam (Chen & He, 2021): a predictor on one branch, a stop-gradient on the other, no negatives."""

from __future__ import annotations

import torch
from torch import nn

from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.models.frameworks.losses import simsiam_loss
from nasiam_bench.models.heads.mlp import mlp
from nasiam_bench.models.heads.supernet import Cell

PROJ_DIM = 2048
PRED_HIDDEN = 512


@FRAMEWORKS.register("simsiam")
class SimSiam(Framework):
    HEADS = ("projector", "predictor")
    SEARCH_LAYERS = {"projector": 6, "predictor": 4}
    FIXED_LR_HEADS = ("predictor",)  # the paper keeps the predictor's learning rate fixed
    # The projector's hidden width: 2048 in the SimSiam paper; NASiam's code uses the feature size (0).
    OPTIONS = {"projector_hidden": PROJ_DIM}

    @classmethod
    def baseline_heads(cls, feature_dim: int, options: dict) -> dict[str, nn.Module]:
        # Projector: 3 layers with BN, the output BN without affine; predictor: 2048 -> 512 -> 2048 bottleneck.
        hidden = int(options["projector_hidden"])
        hidden = cls.dim(hidden, options) if hidden else feature_dim
        proj, pred = cls.dim(PROJ_DIM, options), cls.dim(PRED_HIDDEN, options)
        return {
            "projector": mlp([feature_dim, hidden, hidden, proj], last_bn=True, last_bn_affine=False),
            "predictor": mlp([proj, pred, proj]),
        }

    @classmethod
    def _cells(cls, feature_dim: int, counts: dict[str, int], options: dict) -> dict[str, Cell]:
        # The paper: the projector cell at the feature width before the final Linear to 2048 and a BN without
        # affine; the predictor cell 2048 -> 512 -> ... -> 512 -> 2048.
        proj, pred = cls.dim(PROJ_DIM, options), cls.dim(PRED_HIDDEN, options)

        def tail() -> nn.Module:
            return nn.Sequential(nn.Linear(feature_dim, proj), nn.BatchNorm1d(proj, affine=False))

        return {
            "projector": Cell((feature_dim,) * (counts["projector"] + 1), tail),
            "predictor": Cell((proj, *(pred,) * (counts["predictor"] - 1), proj)),
        }

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        z1, z2 = self.project_pair(view1, view2, features)
        p1, p2 = self.heads["predictor"](z1), self.heads["predictor"](z2)
        return {"loss": simsiam_loss(p1, p2, z1, z2), "embedding": z1.detach()}
