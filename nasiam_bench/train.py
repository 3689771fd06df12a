"""Pre-train a backbone with an SSL framework: one CPU, one GPU, or several processes under torchrun.

The trainer knows frameworks only through ``Framework``: it asks for the loss, the parameter groups and the
per-step hook. Each epoch ends with an atomic checkpoint; a run started again in the same folder resumes from it
and ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import csv
import io
import resource
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from nasiam_bench import distributed
from nasiam_bench.checkpoints import BEST_CHECKPOINT, CHECKPOINT_FORMAT, load_checkpoint
from nasiam_bench.compile import compile_model
from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.data.prepare import open_prepared
from nasiam_bench.data.splits import train_indices
from nasiam_bench.distributed import device_name
from nasiam_bench.evaluate import collapse_metrics, eval_data_for, knn_encoder, spec_knn
from nasiam_bench.frameworks.base import Framework
from nasiam_bench.heads.genotype import resolve_genotype
from nasiam_bench.io import atomic_write_text, save_torch
from nasiam_bench.models import build_model
from nasiam_bench.optim import build_optimizer, scaled_lr
from nasiam_bench.registry import NasiamBenchError
from nasiam_bench.rng import rng_state, seed_everything, set_rng_state
from nasiam_bench.schedule import lr_schedule
from nasiam_bench.spec import Spec, SpecError

COLLAPSE_STD_RATIO = 0.1  # std of normalised embeddings below 0.1/sqrt(d): the representation is collapsing


class TrainingDiverged(NasiamBenchError):
    """The loss became NaN or infinite."""


class CollapseWarning(UserWarning):
    """The embeddings are collapsing to a point."""


@dataclass
class PretrainResult:
    out_dir: Path
    epochs_done: int
    finished: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    images_per_second: float = 0.0
    peak_memory_mb: float = 0.0
    device: str = "cpu"
    world_size: int = 1

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    @property
    def backbone_path(self) -> Path:
        return self.out_dir / "backbone.pt"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _write_log(out_dir: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    buffer = io.StringIO()
    keys = list(dict.fromkeys(k for row in history for k in row))
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out_dir / "log.csv", buffer.getvalue())


def pretrain(
    spec: Spec,
    seed: int,
    out_dir: str | Path,
    *,
    genotype: dict[str, list[str]] | None = None,
    device: str = "auto",
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    runs: str | Path = "runs",
) -> PretrainResult:
    """Pre-train for ``spec.train.epochs`` epochs, resuming from ``out_dir/checkpoint.pt`` when there is one.

    The heads are those ``experiment.head`` names (resolved against ``runs`` for ``nasiam``), unless ``genotype``
    gives their ops. ``stop_after`` ends this call after that many epochs (the checkpoint stays resumable).
    """
    out_dir = Path(out_dir)
    ctx = distributed.setup(device)
    t = spec.train
    if t.batch_size % ctx.world_size:
        raise SpecError(f"train.batch_size = {t.batch_size} does not split over {ctx.world_size} processes")
    seed_everything(seed)
    genotype = genotype if genotype is not None else resolve_genotype(spec, seed, runs)
    model: Framework = build_model(spec, genotype).to(ctx.device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed:
        model = distributed.convert_sync_batchnorm(model, ctx.device)
    if t.compile:
        model = compile_model(model)

    data = open_prepared(spec.experiment.dataset, spec.data.root or None)
    indices = train_indices(data, spec.data.train_subset, seed)
    loader = ssl_loader(
        data,
        data.train_split,
        LoaderConfig.from_spec(spec, seed, t.batch_size // ctx.world_size, ctx.device, ctx.distributed),
        indices,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise SpecError(f"train.batch_size = {t.batch_size} exceeds the {len(indices)} training images")
    total_steps = steps_per_epoch * t.epochs

    lr = scaled_lr(t.lr, t.lr_scaling, t.batch_size)
    optimizer = build_optimizer(t.optimizer, model.param_groups(), lr, t.weight_decay, t.momentum)
    scheduler = lr_schedule(optimizer, total_steps, t.warmup_epochs * steps_per_epoch, t.schedule)

    history: list[dict[str, Any]] = []
    start_epoch, train_seconds, images_seen = 0, 0.0, 0
    checkpoint = out_dir / "checkpoint.pt"
    if resume and checkpoint.is_file():
        state = load_checkpoint(checkpoint)
        _check_resumable(state, spec, seed, checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start_epoch, history = state["epoch"], state["history"]
        train_seconds, images_seen = state["train_seconds"], state["images_seen"]

    use_amp = t.amp and ctx.device.type == "cuda"
    writer = _tensorboard(out_dir) if ctx.is_main else None
    # best-on-test keeps the epoch of best test kNN, so it must look at every epoch.
    select_best = spec.eval.checkpoint == "best-on-test"
    monitor_every = 1 if select_best else spec.eval.knn_every
    monitor = eval_data_for(spec, seed, ctx.device, monitor=True) if monitor_every and ctx.is_main else None

    end_epoch = t.epochs if stop_after is None else min(t.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch, end_epoch):
        model.train()
        loader.set_epoch(epoch)
        epoch_start, losses, embedding = time.perf_counter(), [], None
        bar = tqdm(
            loader,
            desc=f"{spec.experiment.framework} epoch {epoch + 1}/{t.epochs}",
            unit="batch",
            leave=False,
            disable=not (progress and ctx.is_main),
        )
        for step, (view1, view2, _) in enumerate(bar):
            progress_after = (epoch * steps_per_epoch + step + 1) / total_steps
            try:
                out = train_step(model, view1, view2, optimizer, scheduler, progress_after, use_amp)
            except FloatingPointError as exc:
                raise TrainingDiverged(
                    f"the {spec.experiment.framework} loss is {exc} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {scheduler.get_last_lr()[0]:.4g}); the checkpoint of epoch {epoch} in {out_dir} is "
                    f"intact: lower train.lr" + (" or set train.amp=false" if use_amp else "")
                ) from None
            loss = out["loss"]
            losses.append(loss.detach())
            embedding = out["embedding"]
            if writer is not None:
                writer.add_scalar("train/loss_step", loss.item(), epoch * steps_per_epoch + step)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        seconds = time.perf_counter() - epoch_start
        train_seconds += seconds
        images_seen += steps_per_epoch * t.batch_size
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": distributed.all_reduce_mean(torch.stack(losses).mean()).item(),
            "lr": scheduler.get_last_lr()[0],
            "seconds": round(seconds, 3),
            "images_per_s": round(steps_per_epoch * t.batch_size / seconds, 2),
            **collapse_metrics(embedding),
        }
        if row["std_ratio"] < COLLAPSE_STD_RATIO and ctx.is_main:
            message = (
                f"epoch {epoch + 1}: the embeddings are collapsing (std of normalised projector output "
                f"{row['std_ratio']:.3f}/sqrt(d), effective rank {row['effective_rank']:.1f})"
            )
            warnings.warn(message, CollapseWarning, stacklevel=2)
        if monitor is not None and (epoch + 1) % monitor_every == 0:
            row["knn_top1"] = spec_knn(monitor.features(knn_encoder(model, spec.eval.knn_features)), spec.eval)
            if select_best and row["knn_top1"] > max((r.get("knn_top1", -1.0) for r in history), default=-1.0):
                _save_best(out_dir / BEST_CHECKPOINT, model, epoch + 1, row["knn_top1"])
        history.append(row)
        if ctx.is_main:
            _save_checkpoint(
                checkpoint,
                spec,
                seed,
                epoch + 1,
                model,
                optimizer,
                scheduler,
                history,
                train_seconds,
                images_seen,
                genotype,
            )
            _write_log(out_dir, history)
            for key, value in row.items():
                if key != "epoch":
                    writer.add_scalar(f"epoch/{key}", value, epoch + 1)
        if ctx.distributed:
            torch.distributed.barrier()

    finished = (history[-1]["epoch"] if history else 0) >= t.epochs
    if finished and ctx.is_main:
        export_backbone(model.backbone, out_dir / "backbone.pt")
    if writer is not None:
        writer.close()
    return PretrainResult(
        out_dir,
        history[-1]["epoch"] if history else 0,
        finished,
        history,
        train_seconds,
        images_seen / train_seconds if train_seconds else 0.0,
        _peak_memory_mb(ctx.device),
        device_name(ctx.device),
        ctx.world_size,
    )


def train_step(
    model: Framework,
    view1: torch.Tensor,
    view2: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler,
    progress: float,
    use_amp: bool = False,
) -> dict[str, torch.Tensor]:
    """One optimisation step of any framework; raises FloatingPointError (with the value) on a non-finite loss."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        out = model(view1, view2)
    loss = out["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(str(loss.item()))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(model)
    optimizer.step()
    scheduler.step()
    model.after_step(progress)
    return out


def _check_resumable(state: dict[str, Any], spec: Spec, seed: int, path: Path) -> None:
    if state["framework"] != spec.experiment.framework:
        raise NasiamBenchError(
            f"{path} is a {state['framework']} checkpoint; this spec trains "
            f"{spec.experiment.framework}: use another output folder, or --no-resume"
        )
    if state["run_id"] != spec.run_id or state["seed"] != seed:
        raise NasiamBenchError(
            f"{path} belongs to run {state['run_id']} seed {state['seed']}, not {spec.run_id} "
            f"seed {seed}: use another output folder, or --no-resume"
        )


def _save_checkpoint(
    path: Path,
    spec: Spec,
    seed: int,
    epoch: int,
    model: Framework,
    optimizer,
    scheduler,
    history,
    train_seconds: float,
    images_seen: int,
    genotype: dict[str, list[str]] | None,
) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "genotype": genotype,
        "framework": spec.experiment.framework,
        "spec": spec.to_dict(),
        "run_id": spec.run_id,
        "seed": seed,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "history": history,
        "train_seconds": train_seconds,
        "images_seen": images_seen,
    }
    save_torch(path, state)


def _save_best(path: Path, model: Framework, epoch: int, knn: float) -> None:
    """The weights of the epoch with the best test kNN so far (``eval.checkpoint = "best-on-test"``)."""
    save_torch(path, {"format": CHECKPOINT_FORMAT, "epoch": epoch, "knn_top1": knn, "model": model.state_dict()})


def export_backbone(backbone: nn.Module, path: Path) -> None:
    """The backbone's ``state_dict`` with clean keys (no ``module.`` or ``backbone.`` prefixes), for timm."""
    save_torch(path, {k: v.detach().cpu() for k, v in backbone.state_dict().items()})


def _tensorboard(out_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))
