"""Activation candidates of the search space, each a factory returning a fresh ``nn.Module``.

The paper searches over ``relu, silu, hardswish, elu``; the others are here so that a study can widen the space.
Registering a new factory here, or through the ``nasiam_bench.activations`` entry point group, adds a
``linear_<name>`` op to the search space.
"""

from __future__ import annotations

from torch import nn

from nasiam_bench.core.registry import ACTIVATIONS

PAPER_CANDIDATES: tuple[str, ...] = ("relu", "silu", "hardswish", "elu")


@ACTIVATIONS.register()
def relu() -> nn.Module:
    return nn.ReLU()


@ACTIVATIONS.register()
def silu() -> nn.Module:
    return nn.SiLU()


@ACTIVATIONS.register()
def hardswish() -> nn.Module:
    return nn.Hardswish()


@ACTIVATIONS.register()
def elu() -> nn.Module:
    return nn.ELU()


@ACTIVATIONS.register()
def gelu() -> nn.Module:
    return nn.GELU()


@ACTIVATIONS.register()
def mish() -> nn.Module:
    return nn.Mish()


@ACTIVATIONS.register()
def leaky_relu() -> nn.Module:
    return nn.LeakyReLU(0.01)


@ACTIVATIONS.register()
def selu() -> nn.Module:
    return nn.SELU()


@ACTIVATIONS.register()
def celu() -> nn.Module:
    return nn.CELU()


@ACTIVATIONS.register()
def softplus() -> nn.Module:
    return nn.Softplus()


@ACTIVATIONS.register()
def tanh() -> nn.Module:
    return nn.Tanh()


@ACTIVATIONS.register()
def identity() -> nn.Module:
    return nn.Identity()


def build_activation(name: str) -> nn.Module:
    """A new activation module by its registered name."""
    return ACTIVATIONS.get(name)()
