"""``nasiam-bench doctor``: a short end-to-end self-check of this installation on one device.

Every registered framework takes training steps with its baseline heads on real prepared images, one DARTS and
one GDAS search step run on supernet heads, both loaders deliver batches, and a kNN evaluation runs; on CUDA the
steps run under bf16 autocast, as pre-training does. Each check reports images/s and peak memory; any failure
makes the exit status non-zero. On the CPU it uses the `smoke` profile, on CUDA the `gpu` profile's model and batch.
"""

from __future__ import annotations

import dataclasses
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch

from nasiam_bench.config.spec import Spec, load_spec
from nasiam_bench.core import distributed
from nasiam_bench.core.compile import compile_model
from nasiam_bench.core.distributed import device_name
from nasiam_bench.core.optim import build_optimizer, scaled_lr
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.core.schedule import lr_schedule
from nasiam_bench.data.datasets import DataError
from nasiam_bench.data.ffcv_support import ffcv_missing
from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.data.prepare import open_prepared
from nasiam_bench.data.splits import stratified_subset
from nasiam_bench.engine.train import train_step
from nasiam_bench.eval.evaluate import eval_data_for, knn_encoder, spec_knn
from nasiam_bench.models.build import build_model

OK, FAILED, SKIPPED = "ok", "FAILED", "skipped"
PROFILE = {"cpu": "smoke", "cuda": "gpu"}
IMAGES = {"cpu": 512, "cuda": 4096}  # the training images a check draws from


@dataclass
class Check:
    name: str
    status: str
    images_per_s: float | None = None
    peak_memory_mb: float | None = None
    detail: str = ""


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's, since it started


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, steps: int, step: Callable[[int], int]) -> float:
    """Images/s of ``step(i)`` (which returns the images it processed) over ``steps`` calls after one warm-up."""
    step(-1)
    _sync(device)
    began, images = time.perf_counter(), 0
    for i in range(steps):
        images += step(i)
    _sync(device)
    return images / (time.perf_counter() - began)


def _loader(spec: Spec, device: torch.device, kind: str, batch_size: int):
    """The two-view loader of the spec's dataset, one per (kind, batch, device): FFCV compiles each new loader."""
    key = (spec.experiment.dataset, spec.data.root, kind, batch_size, str(device))
    if key not in _LOADERS:
        data = open_prepared(spec.experiment.dataset, spec.data.root or None)
        labels = data.labels(data.train_split)
        indices = stratified_subset(labels, min(len(labels), IMAGES[device.type]), 0)
        config = LoaderConfig.from_spec(spec, 0, batch_size, device)
        _LOADERS[key] = ssl_loader(data, data.train_split, dataclasses.replace(config, kind=kind), indices)
    return _LOADERS[key]


def _batches(spec: Spec, device: torch.device, kind: str, batch_size: int):
    """Endless two-view batches of the spec's dataset."""
    loader = _loader(spec, device, kind, batch_size)
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from ((v1, v2) for v1, v2, _ in loader)
        epoch += 1


_LOADERS: dict[tuple, object] = {}


def _spec(framework: str, device: torch.device, overrides: list[str]) -> Spec:
    base = [f"profile={PROFILE[device.type]}", f"experiment.framework={framework}", *overrides]
    return load_spec("moco_cifar10", base)


def check_loader(kind: str, device: torch.device, overrides: list[str], steps: int) -> Check:
    """Images/s of a whole epoch once the loader runs (FFCV compiles its pipeline in its first epoch: that time is
    shown apart, so that both loaders' rates compare alike)."""
    if kind == "ffcv" and ffcv_missing():
        return Check(f"loader {kind}", SKIPPED, detail=ffcv_missing())
    spec = _spec("moco", device, overrides)
    loader = _loader(spec, device, kind, spec.train.batch_size)
    first = _epoch_seconds(loader, 0, device)[0]
    seconds, images = _epoch_seconds(loader, 1, device)
    detail = f"two views, batch {spec.train.batch_size}, {images} images; first epoch {first:.1f} s"
    return Check(f"loader {kind}", OK, images / seconds, _peak_mb(device), detail + _first_epoch_note(kind))


def _first_epoch_note(kind: str) -> str:
    return " (it compiles the pipeline)" if kind == "ffcv" else " (it starts its workers)"


def _epoch_seconds(loader, epoch: int, device: torch.device) -> tuple[float, int]:
    loader.set_epoch(epoch)
    began, images = time.perf_counter(), 0
    for v1, _, _ in loader:
        images += len(v1)
    _sync(device)
    return time.perf_counter() - began, images


def check_training(framework: str, device: torch.device, overrides: list[str], steps: int) -> Check:
    spec = _spec(framework, device, overrides)
    t = spec.train
    model = build_model(spec).to(device).to(memory_format=torch.channels_last)
    model = compile_model(model) if t.compile else model
    optimizer = build_optimizer(t.optimizer, model.param_groups(), scaled_lr(t.lr, t.lr_scaling, t.batch_size),
                                t.weight_decay, t.momentum)  # fmt: skip
    scheduler = lr_schedule(optimizer, steps + 1, 0, t.schedule)
    batches = _batches(spec, device, spec.data.loader, t.batch_size)
    amp = t.amp and device.type == "cuda"

    def step(i: int) -> int:
        v1, v2 = next(batches)
        train_step(model, v1, v2, optimizer, scheduler, max(i, 0) / steps, amp)
        return len(v1)

    rate = _timed(device, steps, step)
    detail = f"baseline heads, batch {t.batch_size}, width {spec.experiment.width:g}" + (", bf16" if amp else "")
    return Check(f"train {framework}", OK, rate, _peak_mb(device), detail + (", compiled" if t.compile else ""))


def check_search(strategy_name: str, device: torch.device, overrides: list[str], steps: int) -> Check:
    from nasiam_bench.search.run import supernet_builder

    spec = _spec("moco", device, overrides)
    s = spec.search
    model = supernet_builder(spec, device)()
    strategy = SEARCH_STRATEGIES.get(strategy_name)()
    amp = spec.train.amp and device.type == "cuda"
    strategy.attach(model, s, total_steps=steps + 1, batch_size=s.batch_size, amp=amp)
    batches = _batches(spec, device, spec.data.loader, s.batch_size)

    def step(_: int) -> int:
        strategy.step(next(batches), next(batches))
        return s.batch_size

    rate = _timed(device, steps, step)
    return Check(
        f"search {strategy_name} (moco)",
        OK,
        rate,
        _peak_mb(device),
        f"one alpha + one weight step, batch {s.batch_size}" + (", bf16" if amp else ""),
    )


def check_evaluation(device: torch.device, overrides: list[str]) -> Check:
    spec = _spec("moco", device, [*overrides, "data.train_subset=1024", "eval.test_subset=1000"])
    model = build_model(spec).to(device).to(memory_format=torch.channels_last).eval()
    began = time.perf_counter()
    knn = spec_knn(eval_data_for(spec, 0, device).features(knn_encoder(model, spec.eval.knn_features)), spec.eval)
    rate = 2024 / (time.perf_counter() - began)
    return Check("evaluate kNN", OK, rate, _peak_mb(device), f"1,024-image bank, 1,000 queries: {knn:.1f}% (untrained)")


def run_checks(device: str = "auto", overrides: list[str] | None = None, steps: int = 5) -> list[Check]:
    """Every check, each isolated: a failure is recorded with its error and the next check runs."""
    from nasiam_bench.bench.runner import ensure_data

    dev = distributed.setup(device).device
    overrides = list(overrides or [])
    print(f"doctor on {device_name(dev)}: device {dev}, torch {torch.__version__}", flush=True)
    spec = _spec("moco", dev, overrides)
    say_if_unprepared(spec)
    ensure_data(spec)  # from the offline archive where there is one
    plan: list[tuple[str, Callable[[], Check]]] = [
        ("loader ffcv", lambda: check_loader("ffcv", dev, overrides, steps)),
        ("loader torch", lambda: check_loader("torch", dev, overrides, steps)),
        *[(f"train {fw}", lambda fw=fw: check_training(fw, dev, overrides, steps)) for fw in FRAMEWORKS.list()],
        *[(f"search {s} (moco)", lambda s=s: check_search(s, dev, overrides, steps)) for s in ("darts", "gdas")],
        ("evaluate kNN", lambda: check_evaluation(dev, overrides)),
    ]
    checks = []
    for name, run in plan:
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        try:
            checks.append(run())
        except Exception as exc:  # a self-check reports every failure instead of stopping at the first
            where = traceback.extract_tb(exc.__traceback__)[-1]
            checks.append(Check(name, FAILED, detail=f"{type(exc).__name__}: {exc} ({where.filename}:{where.lineno})"))
    return checks


def say_if_unprepared(spec: Spec) -> bool:
    """Say so when the doctor has to prepare the dataset before its checks (the longest part of a first run)."""
    try:
        open_prepared(spec.experiment.dataset, spec.data.root or None)
        return False
    except DataError:
        print(
            f"{spec.experiment.dataset} is not prepared yet: preparing it first, once (about 3 minutes on 2 CPU "
            f"cores), then the checks",
            flush=True,
        )
        return True


def report(checks: list[Check]) -> str:
    from nasiam_bench.report.tables import markdown

    frame = pd.DataFrame(
        {
            "check": [c.name for c in checks],
            "status": [c.status for c in checks],
            "images/s": ["–" if c.images_per_s is None else f"{c.images_per_s:,.0f}" for c in checks],
            "peak memory MiB": ["–" if c.peak_memory_mb is None else f"{c.peak_memory_mb:,.0f}" for c in checks],
            "detail": [c.detail for c in checks],
        }
    )
    return markdown(frame)
