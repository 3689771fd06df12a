"""The registries are the test matrix (as timm's): every framework with every head kind, and every gradient search
strategy on every framework, on random tensors and no dataset. Each entry builds, steps with finite losses and
gradients, round-trips its ``state_dict``, and resumes from it to the state an uninterrupted run reaches. An entry
registered later is tested by being registered."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nasiam_bench.config.heads import HeadKind
from nasiam_bench.config.spec import bench_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.models.build import build_model
from nasiam_bench.models.heads.genotype import load_genotype, paper_genotype_path, sample_genotype
from nasiam_bench.models.heads.ops import search_space
from nasiam_bench.search.base import GradientStrategy
from nasiam_bench.search.run import supernet_builder
from tests.conftest import assert_identical

GRADIENT = [s for s in SEARCH_STRATEGIES.list() if issubclass(SEARCH_STRATEGIES.get(s), GradientStrategy)]
HEADS = [HeadKind.BASELINE, HeadKind.RANDOM, HeadKind.PAPER]


def _spec(framework: str, *more: str):
    return bench_spec(framework, "cifar10", ["profile=smoke", *more])


def _batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 32, 32, generator=g), torch.randn(8, 3, 32, 32, generator=g)) for _ in range(n)]


def _genotype(spec, head: str):
    e = spec.experiment
    framework = FRAMEWORKS.get(e.framework)
    if head == HeadKind.BASELINE:
        return None
    if head == HeadKind.PAPER:
        path = paper_genotype_path(e.framework, e.dataset, e.backbone)
        if not path.is_file():
            pytest.skip(f"no paper genotype for {e.framework}")
        return load_genotype(path).heads
    layers = {name: n for name, n in framework.SEARCH_LAYERS.items()}
    return sample_genotype(search_space(e.activations), layers, np.random.default_rng(0))


def _step(model, optimizer, batch, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)  # what a step draws (a shuffle, a sample) the same on both paths
    loss = model(*batch)["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert torch.isfinite(loss) and grads and all(torch.isfinite(g).all() for g in grads)
    optimizer.step()
    model.after_step(0.5)
    return loss.detach()


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_every_framework_with_every_head_kind_builds_steps_round_trips_and_resumes(framework, head):
    spec = _spec(framework)
    genotype = _genotype(spec, head)
    torch.manual_seed(0)
    model = build_model(spec, genotype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first, second = _batches(2)
    _step(model, optimizer, first, seed=1)
    saved = copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    _step(model, optimizer, second, seed=2)  # uninterrupted

    resumed = build_model(spec, genotype)
    resumed.load_state_dict(saved["model"])
    assert_identical(resumed.state_dict(), saved["model"], where=f"{framework} {head} state_dict")
    again = torch.optim.SGD(resumed.parameters(), lr=0.05, momentum=0.9)
    again.load_state_dict(saved["optimizer"])
    _step(resumed, again, second, seed=2)
    assert_identical(resumed.state_dict(), model.state_dict(), where=f"{framework} {head} resumed")


@pytest.mark.parametrize("strategy", GRADIENT)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_every_gradient_strategy_on_every_framework_steps_round_trips_and_resumes(framework, strategy):
    spec = _spec(framework, f"strategy={strategy}")

    def attached():
        torch.manual_seed(0)
        searching = SEARCH_STRATEGIES.get(strategy)()
        searching.attach(supernet_builder(spec, torch.device("cpu"))(), spec.search, total_steps=4, batch_size=8)
        return searching

    def step(searching, k: int, batches) -> None:
        torch.manual_seed(10 + k)
        losses = searching.step(batches[2 * k], batches[2 * k + 1])
        assert all(v is None or torch.isfinite(v) for v in losses.values()), losses

    batches = _batches(4, seed=3)
    whole = attached()
    step(whole, 0, batches)
    saved = copy.deepcopy(whole.state_dict())
    step(whole, 1, batches)

    resumed = attached()
    resumed.load_state_dict(saved)
    assert_identical(resumed.state_dict()["model"], saved["model"], where=f"{strategy} on {framework} state_dict")
    step(resumed, 1, batches)
    assert_identical(resumed.state_dict()["model"], whole.state_dict()["model"], where=f"{strategy} {framework}")
    assert resumed.genotype() == whole.genotype()
