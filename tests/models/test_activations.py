import pytest
import torch
from torch import nn

from nasiam_bench.core.registry import ACTIVATIONS
from nasiam_bench.models.activations import PAPER_CANDIDATES, build_activation

EXPECTED = {
    "relu",
    "silu",
    "hardswish",
    "elu",
    "gelu",
    "mish",
    "leaky_relu",
    "selu",
    "celu",
    "softplus",
    "tanh",
    "identity",
}


def test_registry_holds_the_paper_candidates_and_the_extras():
    assert set(PAPER_CANDIDATES) == {"relu", "silu", "hardswish", "elu"}
    assert set(ACTIVATIONS.list()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_factory_returns_fresh_module_preserving_shape_with_gradient(name):
    first, second = build_activation(name), build_activation(name)
    assert isinstance(first, nn.Module) and first is not second
    x = torch.linspace(-3, 3, 64, dtype=torch.float64).reshape(4, 16).requires_grad_()
    y = first(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0  # every candidate passes gradient somewhere on [-3, 3]
    # Out of place: the input is untouched (in-place activations would corrupt a MixedOp's shared input).
    assert torch.equal(x.detach(), torch.linspace(-3, 3, 64, dtype=torch.float64).reshape(4, 16))


def test_activations_differ_where_they_should():
    x = torch.tensor([-1.0, 0.5])
    assert torch.equal(build_activation("relu")(x), torch.tensor([0.0, 0.5]))
    assert torch.equal(build_activation("identity")(x), x)
    assert build_activation("elu")(x)[0] == pytest.approx(torch.expm1(torch.tensor(-1.0)).item())
