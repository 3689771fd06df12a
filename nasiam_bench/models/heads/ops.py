"""The NASiam search space: the candidate ops of one MLP layer, built as the paper's code builds them.

Per layer: ``linear_<act>`` for every activation candidate, ``identity``, ``avgpool_3x3`` and ``maxpool_3x3``.
- A ``linear_<act>`` that keeps or shrinks the width is Linear (no bias) -> BatchNorm1d -> activation; one that widens
  is a plain Linear with bias (no BN on an expanding output, as the paper).
- ``identity`` and the poolings on a layer that changes width are preceded by a Linear (Linear -> BN -> ReLU when
  shrinking, a plain Linear when widening); where the width stays, the op stands alone: a 1-D pooling over the
  feature dimension (kernel 3, stride 1, padding 1) followed by BatchNorm1d, or the identity.
"""

from __future__ import annotations

from torch import nn

from nasiam_bench.core.registry import ACTIVATIONS
from nasiam_bench.models.activations import PAPER_CANDIDATES, build_activation

LINEAR_PREFIX = "linear_"
PARAMETER_FREE_OPS = ("identity", "avgpool_3x3", "maxpool_3x3")


def search_space(activations: tuple[str, ...] | list[str] = PAPER_CANDIDATES) -> list[str]:
    """The op names of one layer: ``linear_<act>`` for each candidate (registry-checked), then the others."""
    for name in activations:
        ACTIVATIONS.get(name)  # an unknown activation fails here, with the close matches
    return [f"{LINEAR_PREFIX}{a}" for a in activations] + list(PARAMETER_FREE_OPS)


def every_op() -> list[str]:
    """Every op a genotype may name with the activations registered now."""
    return search_space(ACTIVATIONS.list())


def is_widening(in_dim: int, out_dim: int) -> bool:
    return out_dim > in_dim


def linear_op(activation: str, in_dim: int, out_dim: int) -> nn.Module:
    if is_widening(in_dim, out_dim):
        return nn.Linear(in_dim, out_dim, bias=True)
    return nn.Sequential(nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim), build_activation(activation))


class Pool1d(nn.Module):
    """Max or average pooling along the feature dimension of [batch, features] inputs, keeping the width."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.pool = (nn.AvgPool1d if kind == "avg" else nn.MaxPool1d)(3, stride=1, padding=1)

    def forward(self, x):
        return self.pool(x.unsqueeze(1)).squeeze(1)


def _reshape(in_dim: int, out_dim: int) -> list[nn.Module]:
    if in_dim == out_dim:
        return []
    if is_widening(in_dim, out_dim):
        return [nn.Linear(in_dim, out_dim, bias=True)]
    return [nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim), nn.ReLU()]


def build_op(name: str, in_dim: int, out_dim: int) -> nn.Module:
    """One op of the search space for a layer from ``in_dim`` to ``out_dim`` features."""
    if name.startswith(LINEAR_PREFIX):
        return linear_op(name[len(LINEAR_PREFIX) :], in_dim, out_dim)
    if name == "identity":
        layers = _reshape(in_dim, out_dim)
        return nn.Sequential(*layers) if layers else nn.Identity()
    if name in ("avgpool_3x3", "maxpool_3x3"):
        return nn.Sequential(*_reshape(in_dim, out_dim), Pool1d(name[:3]), nn.BatchNorm1d(out_dim))
    raise KeyError(name)
