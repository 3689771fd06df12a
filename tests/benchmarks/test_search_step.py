"""One search step of every gradient strategy against one plain training step of the same framework with its
baseline heads: same backbone (ResNet-18, CIFAR stem; width from $NASIAM_BENCH_WIDTH, default 1.0, the paper's
comparison; eighth width, heads narrowed alike, batch 8 in `make test`) and batch, timed alternately in one run.

Printed beside each ratio: the floor of the strategy's step, measured in the same run. A bilevel step (darts,
beta_darts, gdas) must run a training step and, for alpha, every forward pass of the framework once more without
autograd on the backbone (SimSiam's two views; MoCo's query and its key encoder), so its floor is (training step +
a no-grad forward of the whole framework) / training step: about 1.33 for SimSiam and 1.5 for MoCo when a backward
pass costs two forward passes. A single-level step's floor is the training step itself, 1.0. Both floors count
the baseline heads, so the supernet's wider heads (every op of a layer computed) show up as distance to the floor.
To tell the two apart, the same floor is printed for the supernet itself: its own training step (``weight_step``,
alpha fixed) plus, for a bilevel step, its no-grad forward pass; what a search step costs above that is the
architecture pass's backward through the heads to alpha, and the strategy's own overhead.
"""

import os
import statistics
import time

import pytest
import torch

from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.engine.train import train_step
from nasiam_bench.models.activations import PAPER_CANDIDATES
from nasiam_bench.models.backbones import build_backbone
from nasiam_bench.models.heads.ops import search_space
from nasiam_bench.models.heads.supernet import SearchHead
from nasiam_bench.search.base import GradientStrategy

BATCH = 64
WIDTH = float(os.environ.get("NASIAM_BENCH_WIDTH", "1.0"))
ROUNDS = 5
GRADIENT_STRATEGIES = [s for s in SEARCH_STRATEGIES.list() if issubclass(SEARCH_STRATEGIES.get(s), GradientStrategy)]


def _plain(framework, width: float, heads: dict):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=width)
    model = framework(backbone, options=heads).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.param_groups(), lr=0.01, momentum=0.9)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)


def _searcher(name, framework, strategy, width: float, heads: dict, batch: int):
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=width)
    cells = framework.search_cells(backbone.num_features, options=heads)
    ops = search_space(PAPER_CANDIDATES)
    supernet = framework(backbone, {h: SearchHead(ops, c) for h, c in cells.items()}, heads)
    searcher = SEARCH_STRATEGIES.get(strategy)()
    spec = load_spec(f"{name}_cifar10")
    searcher.attach(supernet.to(memory_format=torch.channels_last), spec.search, total_steps=100, batch_size=batch)
    searcher.on_epoch(0, 2)
    return searcher


def _timed(fn, into: list[float]) -> None:
    start = time.perf_counter()
    fn()
    into.append(time.perf_counter() - start)


@pytest.mark.parametrize("strategy", GRADIENT_STRATEGIES)
@pytest.mark.parametrize("name", FRAMEWORKS.list())
@pytest.mark.benchmark(group="search-step")
def test_search_step_against_a_training_step(name, strategy, benchmark, report, size):
    framework = FRAMEWORKS.get(name)
    width, size_of_batch = size.pick(WIDTH, 0.125), size.pick(BATCH, 8)
    heads = {"head_width": size.pick(1.0, 0.125)}  # the paper's head sizes when measured; narrowed as in smoke
    plain, optimizer, scheduler = _plain(framework, width, heads)
    searcher = _searcher(name, framework, strategy, width, heads, size_of_batch)
    g = torch.Generator().manual_seed(1)

    def batch():
        return tuple(
            torch.randn(size_of_batch, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
            for _ in range(2)
        )

    train, val = batch(), batch()
    times: dict[str, list[float]] = {"search": [], "train": [], "forward": [], "supernet": [], "supernet_forward": []}

    def no_grad_forward(model):
        with torch.inference_mode():
            model(*train)

    def one_round():
        _timed(lambda: searcher.step(train, val), times["search"])
        _timed(lambda: train_step(plain, *train, optimizer, scheduler, 0.5), times["train"])
        _timed(lambda: no_grad_forward(plain), times["forward"])
        _timed(lambda: searcher.weight_step(train), times["supernet"])
        _timed(lambda: no_grad_forward(searcher.model), times["supernet_forward"])

    one_round()  # warm-up
    for series in times.values():
        series.clear()
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["search"] / median["train"]
    held_out = searcher.held_out  # a bilevel step also runs every forward pass once more
    floor = (median["train"] + held_out * median["forward"]) / median["train"]
    supernet_floor = (median["supernet"] + held_out * median["supernet_forward"]) / median["train"]
    assert all(len(v) == len(times["search"]) >= 1 for v in times.values())
    benchmark.extra_info.update(median, ratio=ratio, floor=floor, supernet_floor=supernet_floor)
    report(
        f"{strategy:12} {name:8}: search step / training step {ratio:.2f}, floor {floor:.2f} "
        f"(ratio / floor {ratio / floor:.2f}); with the supernet's heads: floor {supernet_floor:.2f} "
        f"(ratio / floor {ratio / supernet_floor:.2f}); training step {median['train']:.3f} s "
        f"(ResNet-18 width {width}, head width {heads['head_width']}, batch {size_of_batch}, CPU, "
        f"median of {len(times['search'])})"
    )
