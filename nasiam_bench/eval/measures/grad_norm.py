"""grad_norm (Abdelfattah, Mehrotra, Dudziak and Lane, "Zero-cost proxies for lightweight NAS", ICLR 2021, sec. 3):
at initialisation, the sum over the network's convolution and linear layers of the Euclidean norm of their weight
gradients, after one backward pass of the training loss over one batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

WEIGHTED = (nn.Conv2d, nn.Linear)  # the layers the paper's proxies sum over


def grad_norm(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor]) -> float:
    """Sum of ||dL/dW||_2 over the conv and linear layers of ``model``; ``loss(model)`` computes the loss of one
    batch. The gradients are cleared before and after."""
    model.zero_grad(set_to_none=True)
    loss(model).backward()
    total = sum(
        m.weight.grad.norm().item() for m in model.modules() if isinstance(m, WEIGHTED) and m.weight.grad is not None
    )
    model.zero_grad(set_to_none=True)
    return float(total)
