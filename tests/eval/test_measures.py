"""Each label-free measure against a hand computation on a tiny network or matrix."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nasiam_bench.core.registry import ACTIVATIONS
from nasiam_bench.eval.label_free import activation_types
from nasiam_bench.eval.measures.grad_norm import grad_norm
from nasiam_bench.eval.measures.naswot import naswot
from nasiam_bench.eval.measures.rankme import EPSILON, rankme
from nasiam_bench.models.activations import build_activation


def test_rankme_of_a_diagonal_matrix_is_the_exponential_of_its_entropy():
    # singular values 3, 1 (0 for the third column): p = (0.75, 0.25, 0) + eps
    z = torch.tensor([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p = [0.75 + EPSILON, 0.25 + EPSILON, EPSILON]
    assert rankme(z) == pytest.approx(math.exp(-sum(x * math.log(x) for x in p)), rel=1e-9)


def test_rankme_spans_one_to_full_rank():
    assert rankme(torch.ones(8, 1) @ torch.randn(1, 4)) == pytest.approx(1.0, abs=1e-4)  # a line: rank 1
    assert rankme(torch.eye(4)) == pytest.approx(4.0, rel=1e-5)  # equal singular values: full rank


def test_grad_norm_sums_the_weight_gradient_norms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Linear(2, 1, bias=False))
    x = torch.randn(5, 3)
    w1, w2 = net[0].weight.detach(), net[1].weight.detach()
    # L = sum(W2 W1 x): dL/dW2 = sum_n (W1 x_n)^T, dL/dW1 = W2^T sum_n x_n^T
    g2 = (x @ w1.T).sum(dim=0, keepdim=True)
    g1 = w2.T @ x.sum(dim=0, keepdim=True)
    expected = g1.norm().item() + g2.norm().item()
    assert grad_norm(net, lambda m: m(x).sum()) == pytest.approx(expected, rel=1e-6)
    assert all(p.grad is None for p in net.parameters())  # cleared after


def test_synflow_of_a_two_layer_linear_network():
    from nasiam_bench.eval.measures.synflow import synflow

    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
    a, b = net[0].weight.abs().double(), net[1].weight.abs().double()
    # R = 1^T |W2| |W1| 1; |W1_ij| dR/d|W1_ij| = |W2_i| |W1_ij|; |W2_i| dR/d|W2_i| = |W2_i| sum_j |W1_ij|
    expected = (b.T * a).sum() + (b * a.sum(dim=1)).sum()
    assert synflow(net, (2,)) == pytest.approx(expected.item(), rel=1e-12)
    assert net[0].weight[0, 1].item() == -2.0  # the network scored is a copy


def test_naswot_counts_agreements_of_the_activations_inputs():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    # codes (x > 0): [1,1], [1,0], [0,0]; K[i, j] = units on which i and j agree
    kernel = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    assert naswot(net, x, (nn.ReLU,)) == pytest.approx(torch.linalg.slogdet(kernel)[1].item(), rel=1e-12)


@pytest.mark.parametrize("name", ACTIVATIONS.list())
def test_naswot_codes_every_registered_activation(name):
    """A head of non-ReLU ops is coded by the sign of its activations' input, not skipped."""
    assert type(build_activation(name)) in activation_types()
    net = nn.Sequential(nn.Linear(2, 2, bias=False), build_activation(name))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert math.isfinite(naswot(net, x, activation_types()))
    kernel = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]], dtype=torch.float64)
    assert naswot(net, x, activation_types()) == pytest.approx(torch.linalg.slogdet(kernel)[1].item())
