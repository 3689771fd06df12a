"""One DARTS search step (alpha step + weight step, supernet heads) against one plain training step of the same
framework with its baseline heads: same backbone (ResNet-18, CIFAR stem; width from $NASIAM_BENCH_WIDTH, default
1.0, the paper's comparison) and batch, in one run."""

import statistics
import time

import pytest
import torch

from nasiam_bench.activations import PAPER_CANDIDATES
from nasiam_bench.backbones import build_backbone
from nasiam_bench.heads.ops import search_space
from nasiam_bench.heads.supernet import SearchHead
from nasiam_bench.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.spec import load_spec
from nasiam_bench.train import train_step

BATCH = 64
WIDTH = float(__import__("os").environ.get("NASIAM_BENCH_WIDTH", "1.0"))
ROUNDS = 5


@pytest.mark.parametrize("name", ["simsiam", "moco"])
@pytest.mark.benchmark(group="search-step")
def test_darts_step_against_a_training_step(name, benchmark, report):
    framework = FRAMEWORKS.get(name)
    torch.manual_seed(0)
    plain = framework(build_backbone("resnet18", cifar_stem=True, width=WIDTH)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(plain.param_groups(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    torch.manual_seed(0)
    backbone = build_backbone("resnet18", cifar_stem=True, width=WIDTH)
    cells = framework.search_cells(backbone.num_features)
    ops = search_space(PAPER_CANDIDATES)
    supernet = framework(backbone, {h: SearchHead(ops, c) for h, c in cells.items()})
    supernet = supernet.to(memory_format=torch.channels_last)
    strategy = SEARCH_STRATEGIES.get("darts")()
    strategy.attach(supernet, load_spec(f"{name}_cifar10").search, total_steps=100, batch_size=BATCH)

    g = torch.Generator().manual_seed(1)

    def batch():
        return tuple(
            torch.randn(BATCH, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last) for _ in range(2)
        )

    train, val = batch(), batch()
    search_times, plain_times = [], []

    def one_round():
        start = time.perf_counter()
        strategy.step(train, val)
        search_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        train_step(plain, *train, optimizer, scheduler, 0.5)
        plain_times.append(time.perf_counter() - start)

    one_round()  # warm-up
    search_times.clear()
    plain_times.clear()
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    assert len(search_times) == len(plain_times) >= 1
    ratio = statistics.median(search_times) / statistics.median(plain_times)
    benchmark.extra_info.update(
        search_step_s=statistics.median(search_times), train_step_s=statistics.median(plain_times), ratio=ratio
    )
    report(
        f"darts step {name:8}: {statistics.median(search_times):.3f} s, baseline training step "
        f"{statistics.median(plain_times):.3f} s, ratio {ratio:.2f} (target <= 1.5; ResNet-18 width {WIDTH}, "
        f"batch {BATCH}, 7 ops per layer, CPU, median of {len(search_times)})"
    )
