"""Supernet heads for the search: each layer a MixedOp over the search space, weighted by a row of alpha.

The ``linear_<act>`` ops of a layer share their input, so they run as one matrix multiply over their concatenated
weights (and one BatchNorm over the concatenated outputs: BatchNorm is per feature, so this equals one BN per op);
only the activations differ per op. On a widening layer the linear ops and the identity are plain Linears (no BN, no
activation), so their weighted sum is one Linear whose weight is the weighted sum of theirs: one matrix multiply of
the batch in place of one per op (the same function; float rounding differs). The strategy decides how a row of
alpha becomes op weights (softmax for DARTS, a hard Gumbel sample for GDAS); a one-hot weight vector computes only the
chosen op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nasiam_bench.models.activations import build_activation
from nasiam_bench.models.heads.ops import LINEAR_PREFIX, build_op, is_widening


@dataclass(frozen=True)
class Cell:
    """A searched head: the feature sizes through its layers (``dims[i] -> dims[i+1]`` for layer i) and the fixed
    module after it (SimSiam's final Linear + BN, MoCo's Linear to 128), if any."""

    dims: tuple[int, ...]
    tail: Callable[[], nn.Module] | None = None

    @property
    def layers(self) -> int:
        return len(self.dims) - 1


class MixedLayer(nn.Module):
    """One searched layer. ``bn_eps``: the epsilon of the linear ops' BatchNorm (NASiam's MoCo code passes the
    output width there by mistake: ``BatchNorm1d(in_dim, out_dim)``; ``search.paper_bn_eps_quirk`` reproduces it)."""

    def __init__(self, ops: list[str], in_dim: int, out_dim: int, bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.op_names = list(ops)
        self.linear_acts = [op[len(LINEAR_PREFIX) :] for op in ops if op.startswith(LINEAR_PREFIX)]
        self.n_linear, self.out_dim = len(self.linear_acts), out_dim
        self.widening = is_widening(in_dim, out_dim)
        if self.n_linear:
            self.fused = nn.Linear(in_dim, self.n_linear * out_dim, bias=self.widening)
            self.fused_bn = None if self.widening else nn.BatchNorm1d(self.n_linear * out_dim, eps=bn_eps)
            self.acts = nn.ModuleList(build_activation(a) for a in self.linear_acts)
        self.others = nn.ModuleList(build_op(op, in_dim, out_dim) for op in ops if not op.startswith(LINEAR_PREFIX))
        # ops whose weighted sum is one Linear: every op of a widening layer but the poolings (BN follows those)
        self.plain_linears = (
            [i for i, op in enumerate(ops) if op.startswith(LINEAR_PREFIX) or op == "identity"] if self.widening else []
        )
        self.computed: list[int] = []  # op indices of the last forward (for tests and accounting)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, only: int | None = None) -> torch.Tensor:
        """The weighted sum of the ops; ``only``: that op alone (GDAS's sample, its index known on the host)."""
        chosen = [only] if only is not None else list(range(len(self.op_names)))
        self.computed = chosen
        out = 0
        summed = [] if only is not None else self.plain_linears
        if summed:
            out = out + self._summed_linear(x, weights)
        rest = [i for i in chosen if i not in summed]
        linear_chosen = [i for i in rest if i < self.n_linear]
        if linear_chosen:
            out = out + self._linear(x, weights, linear_chosen)
        for i in rest:
            if i >= self.n_linear:
                out = out + weights[i] * self.others[i - self.n_linear](x)
        return out

    def _summed_linear(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted sum of a widening layer's plain Linears (its linear ops, its identity) as one Linear."""
        n, d = self.n_linear, self.out_dim
        weight_terms, bias_terms = [], []
        if n:  # a matrix-vector product over the fused weights: no [n, out, in] temporary
            weight_terms.append((weights[:n] @ self.fused.weight.view(n, -1)).view(d, -1))
            bias_terms.append(weights[:n] @ self.fused.bias.view(n, d))
        for i in self.plain_linears[n:]:
            linear = self.others[i - n][0]
            weight_terms.append(weights[i] * linear.weight)
            bias_terms.append(weights[i] * linear.bias)
        return nn.functional.linear(x, sum(weight_terms[1:], weight_terms[0]), sum(bias_terms[1:], bias_terms[0]))

    def _linear(self, x: torch.Tensor, weights: torch.Tensor, chosen: list[int]) -> torch.Tensor:
        d = self.out_dim
        if len(chosen) == self.n_linear:  # all of them: one matmul, one BN over the concatenation
            y = self.fused(x)
            if self.fused_bn is not None:
                y = self.fused_bn(y)
            parts = y.view(len(x), self.n_linear, d).unbind(1)
        else:  # one sampled op: its slice of the fused weights (and of the BN) only
            (i,) = chosen
            sl = slice(i * d, (i + 1) * d)
            y = nn.functional.linear(x, self.fused.weight[sl], self.fused.bias[sl] if self.widening else None)
            if self.fused_bn is not None:
                y = _bn_slice(self.fused_bn, y, sl)
            parts = {i: y}
        out = 0
        for i in chosen:
            part = parts[i]
            out = out + weights[i] * (part if self.widening else self.acts[i](part))
        return out


def _bn_slice(bn: nn.BatchNorm1d, y: torch.Tensor, sl: slice) -> torch.Tensor:
    """BatchNorm of the features ``sl`` of ``bn``, updating only their running statistics."""
    if bn.training:
        running_mean, running_var = bn.running_mean[sl], bn.running_var[sl]  # views: updated in place
        bn.num_batches_tracked.add_(1)
        return nn.functional.batch_norm(
            y, running_mean, running_var, bn.weight[sl], bn.bias[sl], True, bn.momentum, bn.eps
        )
    return nn.functional.batch_norm(
        y, bn.running_mean[sl], bn.running_var[sl], bn.weight[sl], bn.bias[sl], False, 0.0, bn.eps
    )


@dataclass(frozen=True)
class OpWeights:
    """How a head's layers weight their ops in one forward pass: a row per layer; ``chosen``: a one-hot sample's
    op per layer, on the host (read once per step), so each layer computes that op only."""

    weights: torch.Tensor
    chosen: tuple[int, ...] | None = None


ALPHA_INIT_STD = 1e-3  # DARTS' alpha initialisation; search.alpha_init_std rescales it before the search


def softmax_weights(alpha: torch.Tensor) -> OpWeights:
    """DARTS: every op, weighted by the softmax of its layer's row of alpha."""
    return OpWeights(torch.softmax(alpha, dim=-1))


class SearchHead(nn.Module):
    """A head of MixedLayers with its architecture weights ``alpha`` [layers, ops], and the cell's fixed tail.

    The strategy decides how alpha becomes op weights (``sampler``): a softmax for DARTS, or one Gumbel sample per
    step for GDAS, drawn by the strategy so that every call of the head in that step (both views, the predictor's
    two passes) computes the same ops. A momentum copy of the head (MoCo's key encoder, BYOL's target) follows its
    online head's architecture: it uses the online head's op weights, not alpha of its own.
    """

    def __init__(self, ops: list[str], cell: Cell, bn_eps_quirk: bool = False) -> None:
        super().__init__()
        self.op_names = list(ops)
        self.layers = nn.ModuleList(
            MixedLayer(ops, i, o, bn_eps=float(o) if bn_eps_quirk else 1e-5)
            for i, o in zip(cell.dims[:-1], cell.dims[1:], strict=True)
        )
        self.tail = cell.tail() if cell.tail else nn.Identity()
        self.alpha = nn.Parameter(ALPHA_INIT_STD * torch.randn(cell.layers, len(ops)))
        self.sampler: Callable[[torch.Tensor], OpWeights] = softmax_weights
        self._leader: list[SearchHead] = []  # a list: the online head must not become a submodule of its copy

    def follow(self, online: SearchHead) -> None:
        """Make this head (a momentum copy) use ``online``'s op weights in every forward pass."""
        self._leader = [online]

    def op_weights(self) -> OpWeights:
        if self._leader:
            chosen = self._leader[0].op_weights()
            return OpWeights(chosen.weights.detach(), chosen.chosen)
        return self.sampler(self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.op_weights()
        only = w.chosen or (None,) * len(self.layers)
        for layer, weights, op in zip(self.layers, w.weights, only, strict=True):
            x = layer(x, weights, op)
        return self.tail(x)

    def derive(self) -> list[str]:
        """The paper's genotype: the op with the largest alpha in each layer."""
        return [self.op_names[i] for i in self.alpha.detach().argmax(dim=1).tolist()]


def follow_architecture(copy: nn.Module, online: nn.Module) -> None:
    """Link each searched head inside ``copy`` (a deep copy of ``online``) to its original."""
    for mine, theirs in zip(copy.modules(), online.modules(), strict=True):
        if isinstance(mine, SearchHead):
            mine.follow(theirs)
