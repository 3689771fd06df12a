"""BYOL (Grill et al., 2020): an online network with a predictor regresses a momentum target network."""

from __future__ import annotations

import math

import torch
from torch import nn

from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.frameworks.base import Framework, MomentumEncoder
from nasiam_bench.models.frameworks.losses import byol_loss
from nasiam_bench.models.heads.mlp import mlp
from nasiam_bench.models.heads.supernet import Cell

HIDDEN = 4096
OUT_DIM = 256


@FRAMEWORKS.register("byol")
class BYOL(Framework):
    HEADS = ("projector", "predictor")
    SEARCH_LAYERS = {"projector": 4, "predictor": 2}  # not in the paper: laid out as SimSiam's and MoCo's cells
    OPTIONS = {"momentum": 0.996}  # the target's momentum at the start; it rises to 1 on a cosine

    def __init__(
        self,
        backbone: nn.Module,
        heads: dict[str, nn.Module] | None = None,
        options: dict[str, float | int] | None = None,
    ) -> None:
        super().__init__(backbone, heads, options)
        self.target = MomentumEncoder(self.backbone, self.heads["projector"])

    @classmethod
    def baseline_heads(cls, feature_dim: int, options: dict) -> dict[str, nn.Module]:
        hidden, out = cls.dim(HIDDEN, options), cls.dim(OUT_DIM, options)
        return {"projector": mlp([feature_dim, hidden, out]), "predictor": mlp([out, hidden, out])}

    @classmethod
    def _cells(cls, feature_dim: int, counts: dict[str, int], options: dict) -> dict[str, Cell]:
        hidden, out = cls.dim(HIDDEN, options), cls.dim(OUT_DIM, options)
        return {
            "projector": Cell((feature_dim,) * (counts["projector"] + 1), lambda: nn.Linear(feature_dim, out)),
            "predictor": Cell((out, *(hidden,) * (counts["predictor"] - 1), out)),
        }

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        z1, z2 = self.project_pair(view1, view2, features)
        p1, p2 = self.heads["predictor"](z1), self.heads["predictor"](z2)
        t1, t2 = self.target(view1), self.target(view2)
        return {"loss": byol_loss(p1, p2, t1, t2), "embedding": z1.detach()}

    def after_step(self, progress: float) -> None:
        base = float(self.options["momentum"])
        momentum = 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2
        self.target.update(self.backbone, self.heads["projector"], momentum)
