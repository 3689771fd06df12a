"""NASWOT (Mellor, Turner, Storkey and Crowley, "Neural architecture search without training", ICML 2021): for a
batch of N inputs, each unit that feeds an activation gives every input a binary code (is its pre-activation
positive?); K[i, j] counts the units on which inputs i and j agree; the score is log|det K|.

The paper codes ReLU units. Here the code is the sign of each activation's *input*, for every activation module
(ReLU, SiLU, Hardswish, ELU, ...), so that heads built of non-ReLU ops are scored alike."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def naswot(model: nn.Module, inputs: torch.Tensor, activations: tuple[type[nn.Module], ...]) -> float:
    """log|det K| of ``model`` on ``inputs`` [N, ...], coding the input of every module of the ``activations``
    types."""
    n = len(inputs)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def code(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        c = (args[0].detach().reshape(n, -1) > 0).double().cpu()  # before an in-place activation changes it
        kernel.add_(c @ c.T + (1 - c) @ (1 - c).T)

    hooks = [m.register_forward_pre_hook(code) for m in model.modules() if isinstance(m, activations)]
    try:
        model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])
