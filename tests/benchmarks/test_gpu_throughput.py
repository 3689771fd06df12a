"""GPU training-step throughput of every framework as users run it: full-width ResNet-18 (CIFAR stem), the whole
CIFAR-10 training split through FFCV onto the device with the augmentation there, batch 512, bf16 autocast,
channels_last; eager and with ``train.compile``. In the same run, two references: the same step on one batch already
in GPU memory (if it is more than 5% faster, the loader limits the step), and a plain hand-written PyTorch step of
the same framework and heads. The fastest public figure we know for SimCLR / ResNet-18 / CIFAR-10 at batch 512 is
11.9 s per epoch on an A100 (about 4,200 images/s, dkobak/simclr-cifar10); the target on an H100 is twice that.

Skipped without a GPU. ``NASIAM_GPU_REPORT=path`` appends each row to a Markdown file as well."""

import copy
import os
import time
from pathlib import Path

import pytest
import torch

from nasiam_bench.core.compile import compile_model
from nasiam_bench.core.distributed import device_name
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.engine.train import train_step
from nasiam_bench.models.backbones import build_backbone
from tests.benchmarks.test_train_step import plain_step_fn

pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("cifar10_data")]
BATCH = 512
STEPS = int(os.environ.get("NASIAM_GPU_STEPS", "40"))
PUBLIC_A100_SIMCLR = 50_000 / 11.9  # images/s: dkobak/simclr-cifar10, ResNet-18, batch 512, one A100
_LOADER = {}


def batches(data):
    """Endless two-view batches of the whole training split, on the GPU (one FFCV loader for the whole run)."""
    if "loader" not in _LOADER:
        config = LoaderConfig(batch_size=BATCH, image_size=32, seed=0, workers=os.cpu_count() or 8, device="cuda")
        _LOADER["loader"] = ssl_loader(data, "train", config)
    loader, epoch = _LOADER["loader"], 0
    while True:
        loader.set_epoch(epoch)
        yield from ((v1, v2) for v1, v2, _ in loader)
        epoch += 1


def images_per_s(step, steps: int = STEPS) -> float:
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - began)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name", FRAMEWORKS.list())
def test_gpu_training_step_throughput(name, compiled, cifar10_data, report):
    torch.manual_seed(0)
    model = FRAMEWORKS.get(name)(build_backbone("resnet18", cifar_stem=True, width=1.0))
    model = model.cuda().to(memory_format=torch.channels_last)
    plain = plain_step_fn(name, copy.deepcopy(model))
    if compiled:
        compile_model(model)
    optimizer = torch.optim.SGD(model.param_groups(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    data = batches(cifar10_data)
    fixed = tuple(v.clone() for v in next(data))

    def loaded():
        train_step(model, *next(data), optimizer, scheduler, 0.5, use_amp=True)

    def in_memory():
        train_step(model, *fixed, optimizer, scheduler, 0.5, use_amp=True)

    def plain_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            plain(*fixed)

    began = time.perf_counter()
    for step in (loaded, in_memory, plain_step) * 3:  # warm-up; compilation happens here
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - began
    rates = {"ffcv": images_per_s(loaded), "in GPU memory": images_per_s(in_memory), "plain": images_per_s(plain_step)}
    loader_cost = rates["in GPU memory"] / rates["ffcv"] - 1
    row = (
        f"| {name} | {'compiled' if compiled else 'eager'} | {rates['ffcv']:,.0f} | {50_000 / rates['ffcv']:.1f} "
        f"| {rates['in GPU memory']:,.0f} | {loader_cost:+.1%} | {rates['plain']:,.0f} "
        f"| {rates['ffcv'] / rates['plain']:.2f} | {rates['ffcv'] / PUBLIC_A100_SIMCLR:.2f} | {warmup_s:.0f} "
        f"| {torch.cuda.max_memory_allocated() / 2**30:.1f} | {device_name(torch.device('cuda'))} |"
    )
    report(row)
    if os.environ.get("NASIAM_GPU_REPORT"):
        with Path(os.environ["NASIAM_GPU_REPORT"]).open("a") as out:
            out.write(row + "\n")
    assert all(r > 0 for r in rates.values())
