"""synflow (Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks without any data by iteratively conserving
synaptic flow", NeurIPS 2020), as a zero-cost proxy (Abdelfattah et al., ICLR 2021): with every parameter replaced
by its absolute value and BatchNorm removed (here: its initial running statistics, an identity up to epsilon), in
float64, R = 1^T f(1) for an all-ones input; the score is the sum over the conv and linear weights of |W * dR/dW|."""

from __future__ import annotations

import copy

import torch
from torch import nn

from nasiam_bench.eval.measures.grad_norm import WEIGHTED


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """The synflow score of ``model`` (left untouched: a float64 copy is scored) for one input of ``input_shape``
    (without the batch dimension)."""
    net = copy.deepcopy(model).double().eval()  # eval: BatchNorm by its running statistics, as if removed at init
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None
    device = next(net.parameters()).device
    net(torch.ones((1, *input_shape), dtype=torch.float64, device=device)).sum().backward()
    score = sum((m.weight * m.weight.grad).abs().sum().item() for m in net.modules() if isinstance(m, WEIGHTED))
    return float(score)
