"""MoCo v2 (Chen et al., 2020): a momentum key encoder with its own copy of the projector, and a queue of keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasiam_bench.core.distributed import gather_no_grad
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.frameworks.base import Framework, MomentumEncoder
from nasiam_bench.models.frameworks.losses import info_nce
from nasiam_bench.models.heads.mlp import mlp
from nasiam_bench.models.heads.supernet import Cell

OUT_DIM = 128


@FRAMEWORKS.register("moco")
class MoCo(Framework):
    # CIFAR values, from MoCo's authors' CIFAR-10 demo (ImageNet: queue 65,536, momentum 0.999, temperature 0.2).
    # symmetric: both directions (view 1 against view 2's key and the reverse), both views' keys enqueued, as
    # NASiam's code and MoCo's CIFAR demo; MoCo v2's paper uses one direction.
    OPTIONS = {"temperature": 0.1, "queue_size": 4096, "momentum": 0.99, "symmetric": False}
    ONLINE_VIEWS = 1  # the second view goes through the key encoder only (both with the symmetric loss)

    def __init__(
        self,
        backbone: nn.Module,
        heads: dict[str, nn.Module] | None = None,
        options: dict[str, float | int] | None = None,
    ) -> None:
        super().__init__(backbone, heads, options)
        # The key encoder keeps its own momentum copy of the projector, searched or not (NASiam's code shares one).
        self.key_encoder = MomentumEncoder(self.backbone, self.heads["projector"])
        out_dim = self._projector_out_dim()
        self.register_buffer("queue", F.normalize(torch.randn(out_dim, int(self.options["queue_size"])), dim=0))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _projector_out_dim(self) -> int:
        with torch.no_grad():
            training = self.heads["projector"].training
            self.heads["projector"].eval()
            dim = self.heads["projector"](torch.zeros(2, self.feature_dim)).shape[1]
            self.heads["projector"].train(training)
        return dim

    @classmethod
    def baseline_heads(cls, feature_dim: int, options: dict) -> dict[str, nn.Module]:
        # MoCo v2's head: a 2-layer MLP (hidden = feature size, ReLU, no BN) to 128-d.
        return {"projector": mlp([feature_dim, feature_dim, cls.dim(OUT_DIM, options)], hidden_bn=False)}

    @classmethod
    def _cells(cls, feature_dim: int, counts: dict[str, int], options: dict) -> dict[str, Cell]:
        # The paper: the projector cell at the feature width, then the Linear to 128.
        out = cls.dim(OUT_DIM, options)
        return {"projector": Cell((feature_dim,) * (counts["projector"] + 1), lambda: nn.Linear(feature_dim, out))}

    @property
    def online_views(self) -> int:
        return 2 if self.options["symmetric"] else 1

    def forward(
        self, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
    ) -> dict[str, torch.Tensor]:
        online = self.online_features((view1, view2), features)
        queue = self.queue.clone()  # a copy: the queue is updated in place below, before the backward pass
        losses, keys, embedding = [], [], None
        for f, key_view in zip(online, (view2, view1), strict=False):
            z = self.heads["projector"](f)
            embedding = z if embedding is None else embedding
            with torch.no_grad():
                k = F.normalize(self.key_encoder(key_view), dim=1)
            losses.append(info_nce(F.normalize(z, dim=1), k, queue, float(self.options["temperature"])))
            keys.append(k)
        self._enqueue(torch.cat(keys[::-1]))  # view 1's keys first, as NASiam's code
        return {"loss": sum(losses), "embedding": embedding.detach()}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = gather_no_grad(keys)
        size = self.queue.shape[1]
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue[:, slots] = keys.T.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)

    def after_step(self, progress: float) -> None:
        self.key_encoder.update(self.backbone, self.heads["projector"], float(self.options["momentum"]))
