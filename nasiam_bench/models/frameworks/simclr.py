"""SimCLR (Chen et al., 2020): NT-Xent over the two views of the whole (multi-process) batch."""

from __future__ import annotations

import torch
from torch import nn

from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.models.frameworks.losses import nt_xent
from nasiam_bench.models.heads.mlp import mlp
from nasiam_bench.models.heads.supernet import Cell

HIDDEN = 2048
OUT_DIM = 128
SEARCH_HIDDEN = 512


@FRAMEWORKS.register("simclr")
class SimCLR(Framework):
    OPTIONS = {"temperature": 0.5}  # the paper's CIFAR-10 value
    SEARCH_LAYERS = {"projector": 6}

    @classmethod
    def baseline_heads(cls, feature_dim: int, options: dict) -> dict[str, nn.Module]:
        # SimCLR's head: a 2-layer MLP with BN to 128-d.
        return {"projector": mlp([feature_dim, cls.dim(HIDDEN, options), cls.dim(OUT_DIM, options)])}

    @classmethod
    def _cells(cls, feature_dim: int, counts: dict[str, int], options: dict) -> dict[str, Cell]:
        # The paper: feature width -> 512 -> ... -> 512 -> 128, no tail.
        hidden, out = cls.dim(SEARCH_HIDDEN, options), cls.dim(OUT_DIM, options)
        return {"projector": Cell((feature_dim, *(hidden,) * (counts["projector"] - 1), out))}

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        z1, z2 = self.project_pair(view1, view2, features)
        return {"loss": nt_xent(z1, z2, float(self.options["temperature"])), "embedding": z1.detach()}
