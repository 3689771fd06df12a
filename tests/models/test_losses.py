"""Each loss against a value computed by hand on a tiny example."""

import math

import pytest
import torch

from nasiam_bench.models.frameworks.losses import byol_loss, info_nce, nt_xent, simsiam_loss


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_simsiam_negative_cosine_with_stop_gradient():
    p1, p2 = t([1.0, 0.0]).requires_grad_(), t([0.0, 1.0]).requires_grad_()
    z1, z2 = t([0.0, -2.0]).requires_grad_(), t([3.0, 3.0]).requires_grad_()
    loss = simsiam_loss(p1, p2, z1, z2)
    # D(p1, z2) = -cos 45 deg, D(p2, z1) = -cos 180 deg; the loss is their mean.
    assert loss.item() == pytest.approx(0.5 * (-1 / math.sqrt(2) + 1))
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient on the targets
    assert p1.grad is not None


def test_byol_two_minus_two_cosine_both_directions():
    loss = byol_loss(t([1.0, 0.0]), t([1.0, 1.0]), t([2.0, 2.0]), t([0.0, 5.0]))
    # p1 vs t2: cos 90 deg -> 2; p2 vs t1: cos 0 -> 0.
    assert loss.item() == pytest.approx(2.0)


def test_info_nce_positive_against_queue():
    q, k = t([1.0, 0.0]), t([0.6, 0.8])
    queue = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # columns: keys (0, 1) and (-1, 0)
    loss = info_nce(q, k, queue, temperature=0.5)
    logits = [0.6 / 0.5, 0.0 / 0.5, -1.0 / 0.5]
    expected = -math.log(math.exp(logits[0]) / sum(math.exp(x) for x in logits))
    assert loss.item() == pytest.approx(expected)


def test_nt_xent_against_an_explicit_loop():
    z1 = t([1.0, 0.0], [0.0, 1.0])
    z2 = t([0.8, 0.6], [-0.6, 0.8])
    tau = 0.5
    views = [z1[0], z1[1], z2[0], z2[1]]
    partner = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i, v in enumerate(views):
        sims = {j: float(v @ w) / tau for j, w in enumerate(views) if j != i}
        total += -math.log(math.exp(sims[partner[i]]) / sum(math.exp(s) for s in sims.values()))
    assert nt_xent(z1, z2, tau).item() == pytest.approx(total / 4)
    assert nt_xent(3 * z1, 2 * z2, tau).item() == pytest.approx(total / 4)  # normalises its inputs
