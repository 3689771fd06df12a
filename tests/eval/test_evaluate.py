import itertools

import torch

from nasiam_bench.config.spec import EvalSection
from nasiam_bench.eval.evaluate import collapse_metrics, knn_top1
from nasiam_bench.eval.features import Features
from nasiam_bench.eval.probe import linear_probe


def clustered(n_per_class=50, classes=4, dim=16, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 3
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + noise * torch.randn(len(labels), dim, generator=g), labels


def test_knn_on_known_clusters():
    train, train_y = clustered(seed=0)
    test, test_y = clustered(n_per_class=10, seed=0)
    test = test + 0.05 * torch.randn_like(test)
    assert knn_top1(Features(train, train_y, test, test_y, 4), k=20) == 100.0
    shuffled = train_y[torch.randperm(len(train_y), generator=torch.Generator().manual_seed(1))]
    assert knn_top1(Features(train, shuffled, test, test_y, 4), k=20) < 60.0  # labels unrelated to features


def test_knn_weights_votes_by_similarity():
    # One close neighbour of class 1 outweighs two far ones of class 0 at temperature 0.1.
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0])
    query = torch.tensor([[1.0, 0.1]])
    assert knn_top1(Features(bank, labels, query, torch.tensor([1]), 2), k=3, temperature=0.1) == 100.0


def test_linear_probe_separable_clusters():
    train, train_y = clustered(seed=0)
    test, test_y = clustered(n_per_class=10, seed=0)
    settings = EvalSection(linear_epochs=20, linear_lr=0.1, linear_batch_size=32)
    top1, top5 = linear_probe(Features(train, train_y, test, test_y, 4), settings, seed=0)
    assert top1 == 100.0 and top5 == 100.0


def test_collapse_metrics():
    spread = collapse_metrics(torch.randn(512, 64, generator=torch.Generator().manual_seed(0)))
    assert 0.9 < spread["std_ratio"] < 1.1 and spread["effective_rank"] > 50
    collapsed = collapse_metrics(torch.ones(512, 64) + 1e-4 * torch.randn(512, 64))
    assert collapsed["std_ratio"] < 0.01
    line = torch.randn(512, 1) * torch.randn(1, 64)  # every embedding on one line through the origin
    assert collapse_metrics(line)["effective_rank"] < 2.5


def test_probe_schedule_steps_down_at_its_milestones_else_a_cosine():
    from nasiam_bench.core.schedule import lr_at
    from nasiam_bench.eval.probe import _optimizer

    classifier = torch.nn.Linear(4, 2)
    # MoCo's main_lincls: x 0.1 from epoch 60 and from epoch 80 of 100; here 10 epochs of 3 steps.
    stepped = EvalSection(linear_epochs=10, linear_lr=1.0, linear_milestones=(0.6, 0.8))
    _, schedule = _optimizer(classifier, stepped, 3, 1.0)
    lrs = [lr_at(schedule, step) for step in range(30)]
    assert lrs[:18] == [1.0] * 18
    assert all(abs(lr - 0.1) < 1e-12 for lr in lrs[18:24]) and all(abs(lr - 0.01) < 1e-12 for lr in lrs[24:])
    _, schedule = _optimizer(classifier, EvalSection(linear_epochs=10, linear_lr=1.0), 3, 1.0)
    cosine = [lr_at(schedule, step) for step in range(30)]
    assert cosine[0] == 1.0 and all(a > b for a, b in itertools.pairwise(cosine))


def test_linear_probe_learns_with_milestones_too():
    train, train_y = clustered(seed=0)
    test, test_y = clustered(n_per_class=10, seed=0)
    settings = EvalSection(linear_epochs=20, linear_lr=0.1, linear_batch_size=32, linear_milestones=(0.6, 0.8))
    assert linear_probe(Features(train, train_y, test, test_y, 4), settings, seed=0)[0] == 100.0
