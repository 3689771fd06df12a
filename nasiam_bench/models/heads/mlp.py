"""Small composable MLP heads, as the frameworks' papers define them."""

from __future__ import annotations

import itertools

from torch import nn


def mlp(
    dims: list[int],
    *,
    hidden_bn: bool = True,
    last_bn: bool = False,
    last_bn_affine: bool = True,
    last_bias: bool = True,
) -> nn.Sequential:
    """Linear layers through ``dims``; each hidden layer is Linear (no bias when BN follows) -> BN -> ReLU.

    ``last_bn`` adds a BatchNorm after the output layer (SimSiam's projector, without affine parameters).
    """
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        last = i == len(dims) - 2
        if not last:
            layers += [nn.Linear(d_in, d_out, bias=not hidden_bn)]
            layers += [nn.BatchNorm1d(d_out)] if hidden_bn else []
            layers += [nn.ReLU(inplace=True)]
        else:
            layers += [nn.Linear(d_in, d_out, bias=last_bias and not last_bn)]
            layers += [nn.BatchNorm1d(d_out, affine=last_bn_affine)] if last_bn else []
    return nn.Sequential(*layers)
