"""Pre-train a backbone with an SSL framework: one CPU, one GPU, or several processes under torchrun.

The trainer knows frameworks only through ``Framework``: it asks for the loss, the parameter groups and the
per-step hook. Each epoch ends with an atomic checkpoint; a run started again in the same folder resumes from it
and ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import csv
import io
import resource
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasiam_bench.config.spec import Spec, SpecError
from nasiam_bench.core import distributed
from nasiam_bench.core.compile import compile_model
from nasiam_bench.core.distributed import device_name
from nasiam_bench.core.io import atomic_write_text, save_torch
from nasiam_bench.core.optim import build_optimizer, scaled_lr
from nasiam_bench.core.rng import rng_state, seed_everything, set_rng_state
from nasiam_bench.core.schedule import lr_at, lr_schedule
from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.data.prepare import open_prepared
from nasiam_bench.data.splits import train_indices
from nasiam_bench.engine import tracking
from nasiam_bench.engine.loop import (
    Callback,
    Epoch,
    TrainingDiverged,  # noqa: F401 (re-exported: the error pretrain raises)
    epoch_loss,
    run_epochs,
)
from nasiam_bench.eval.evaluate import collapse_metrics, eval_data_for, knn_encoder, spec_knn
from nasiam_bench.models.build import build_model
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.store.checkpoints import BEST_CHECKPOINT, load_state, save_state
from nasiam_bench.store.claims import exclusive
from nasiam_bench.store.identity import identity
from nasiam_bench.store.layout import CHECKPOINT, RUN_CLAIM, TRAIN_LOG
from nasiam_bench.store.resolve import resolve_genotype

COLLAPSE_STD_RATIO = 0.1  # std of normalised embeddings below 0.1/sqrt(d): the representation is collapsing


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
    lockstep: int = 1  # heads that shared its steps (train_seconds is its share)
    device_shared_by: float = 1.0  # runs on its device at once, on average over its epochs (occupancy.py)
    wandb_id: str | None = None  # its W&B run (experiment.wandb), None without one

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT

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
    atomic_write_text(out_dir / TRAIN_LOG, buffer.getvalue())


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
    """Pre-train for ``spec.train.epochs`` epochs, resuming from ``out_dir/checkpoint.pt`` when there is one (of
    this run's identity only: spec, seed, genotype, dataset).

    The heads are those ``experiment.head`` names (resolved against ``runs`` for ``nasiam``), unless ``genotype``
    gives their ops. ``stop_after`` ends this call after that many epochs (the checkpoint stays resumable).
    """
    out_dir, ctx, t = Path(out_dir), distributed.setup(device), spec.train
    if t.batch_size % ctx.world_size:
        raise SpecError(f"train.batch_size = {t.batch_size} does not split over {ctx.world_size} processes")
    seed_everything(seed)
    genotype = genotype if genotype is not None else resolve_genotype(spec, seed, runs)
    with exclusive(out_dir / RUN_CLAIM, f"the run in {out_dir}") if ctx.is_main else contextlib.nullcontext():
        return _pretrain(PretrainRun(spec, seed, out_dir, genotype, ctx), resume, stop_after, progress)


def _pretrain(run: PretrainRun, resume: bool, stop_after: int | None, progress: bool) -> PretrainResult:
    """The run's epochs through the one training loop, resumed from its checkpoint when ``resume``."""
    spec, ctx, t = run.spec, run.ctx, run.spec.train
    if resume:
        run.restore()
    if run.epochs_to_run(stop_after):
        run.track()
    desc = f"{spec.experiment.framework} epoch"
    show = progress and ctx.is_main
    run_epochs(
        run.loader,
        run.epochs_to_run(stop_after),
        run.step,
        run.callbacks(),
        desc=desc,
        total=t.epochs,
        progress=show,
        diverged=run.diverged,
        device=ctx.device,
    )
    return run.finish()


class PretrainRun:
    """A pre-training run's parts: the model, its loader and optimiser, and the progress a checkpoint keeps."""

    def __init__(self, spec: Spec, seed: int, out_dir: Path, genotype, ctx, loader=None) -> None:
        """``loader``: another run's training loader to share (lockstep heads: the same data, seed and batch)."""
        t = spec.train
        self.spec, self.seed, self.out_dir, self.genotype, self.ctx = spec, seed, out_dir, genotype, ctx
        self.identity = identity("state", spec, seed, genotype)
        self.model = _placed_model(build_model(spec, genotype).to(ctx.device), spec, ctx)
        self.loader = loader if loader is not None else _training_loader(spec, seed, ctx)
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * t.epochs
        lr = scaled_lr(t.lr, t.lr_scaling, t.batch_size)
        self.optimizer = build_optimizer(t.optimizer, self.model.param_groups(), lr, t.weight_decay, t.momentum)
        warmup = t.warmup_epochs * self.steps_per_epoch
        per = self.steps_per_epoch if t.lr_steps == "epoch" else 0
        self.scheduler = lr_schedule(self.optimizer, self.total_steps, warmup, t.schedule, steps_per_epoch=per)
        self.history: list[dict[str, Any]] = []
        self.epochs_done, self.train_seconds, self.images_seen = 0, 0.0, 0
        self.lockstep = 1  # how many heads shared its steps' device time (pretrain_lockstep)
        self.wall_seconds = 0.0  # train_seconds is the device's time: wall time over the runs sharing it
        self.writer = _tensorboard(out_dir) if ctx.is_main else None
        self.tracking, self.wandb_id = tracking.Tracking(), None  # W&B: started once the run is restored
        self.use_amp = t.amp and ctx.device.type == "cuda"

    def step(self, epoch: int, i: int, batch) -> dict[str, Any]:
        """One optimisation step on the batch ``i`` of ``epoch``."""
        progress = (epoch * self.steps_per_epoch + i + 1) / self.total_steps
        return train_step(self.model, batch[0], batch[1], self.optimizer, self.scheduler, progress, self.use_amp)

    def callbacks(self) -> list[Callback]:
        """The work around its steps: the log row, the kNN monitor (main process), the checkpoint."""
        return [_EpochRow(self), _Monitor(self), _Saver(self)] if self.ctx.is_main else [_EpochRow(self), _Saver(self)]

    def diverged(self, epoch: int, i: int, value: str) -> str:
        """The words of a non-finite loss at step ``i`` of ``epoch`` (``run_epochs``' ``diverged``)."""
        lr = lr_at(self.scheduler, epoch * self.steps_per_epoch + i)
        return (
            f"the {self.spec.experiment.framework} {value.replace('loss ', 'loss is ')} at epoch {epoch + 1}, step "
            f"{i + 1} (lr {lr:.4g}); the checkpoint of epoch {epoch} in {self.out_dir} is intact: lower train.lr"
            + (" or set train.amp=false" if self.use_amp else "")
        )

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT

    def epochs_to_run(self, stop_after: int | None = None) -> range:
        """The epochs left to train, or only the next ``stop_after`` of them (a pre-emptible run's slice)."""
        end = self.spec.train.epochs if stop_after is None else self.epochs_done + stop_after
        return range(self.epochs_done, min(end, self.spec.train.epochs))

    def restore(self) -> None:
        way_out = "use another output folder, or --no-resume to start afresh"
        state = load_state(self.checkpoint, "pretrain", self.identity, way_out)
        if state is None:
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.epochs_done, self.history = state["epoch"], state["history"]
        self.train_seconds, self.images_seen = state["train_seconds"], state["images_seen"]
        self.lockstep = state.get("lockstep", 1)
        self.wall_seconds = state.get("wall_seconds", self.train_seconds)
        self.wandb_id = state.get("wandb_id")

    def track(self) -> None:
        """Start (or continue, by the id its checkpoint keeps) its W&B run, when the spec asks for one."""
        if self.ctx.is_main and self.tracking.run is None:
            self.tracking = tracking.start(self.spec, self.seed, self.identity, self.out_dir, self.wandb_id)
            self.wandb_id = self.tracking.id or self.wandb_id

    def save(self) -> None:
        state = {
            "genotype": self.genotype,
            "framework": self.spec.experiment.framework,
            "spec": self.spec.to_dict(),
            "seed": self.seed,
            "epoch": self.epochs_done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "history": self.history,
            "train_seconds": self.train_seconds,
            "images_seen": self.images_seen,
            "lockstep": self.lockstep,
            "wall_seconds": self.wall_seconds,
            "wandb_id": self.wandb_id,
        }
        save_state(self.checkpoint, "pretrain", self.identity, state)

    def close(self) -> None:
        """Close its TensorBoard writer (once; a run that never trains, a lockstep that falls back, closes too)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.tracking.finish()

    def finish(self) -> PretrainResult:
        finished = self.epochs_done >= self.spec.train.epochs
        if finished and self.ctx.is_main:
            export_backbone(self.model.backbone, self.out_dir / "backbone.pt")
        self.close()
        return PretrainResult(
            self.out_dir,
            self.epochs_done,
            finished,
            self.history,
            self.train_seconds,
            self.images_seen / self.train_seconds if self.train_seconds else 0.0,
            _peak_memory_mb(self.ctx.device),
            device_name(self.ctx.device),
            self.ctx.world_size,
            self.lockstep,
            self.wall_seconds / self.train_seconds if self.train_seconds else 1.0,
            self.wandb_id,
        )


def _training_loader(spec: Spec, seed: int, ctx):
    data = open_prepared(spec.experiment.dataset, spec.data.root or None)
    indices = train_indices(data, spec.data.train_subset, seed)
    config = LoaderConfig.from_spec(spec, seed, spec.train.batch_size // ctx.world_size, ctx.device, ctx.distributed)
    loader = ssl_loader(data, data.train_split, config, indices)
    if len(loader) == 0:
        raise SpecError(f"train.batch_size = {spec.train.batch_size} exceeds the {len(indices)} training images")
    return loader


def _placed_model(model: Framework, spec: Spec, ctx) -> Framework:
    if spec.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed:
        model = distributed.convert_sync_batchnorm(model, ctx.device)
    return compile_model(model) if spec.train.compile else model


class _EpochRow(Callback):
    """The epoch's log row (loss, learning rate, time, collapse metrics) and the collapse warning; the per-step
    loss to TensorBoard (at the loop's read points: reading it at every step would make the host wait)."""

    def __init__(self, run: PretrainRun) -> None:
        self.run = run

    def epoch_start(self, epoch: int) -> None:
        self.run.model.train()

    def after_read(self, epoch: int, values: list[tuple[int, dict[str, float]]]) -> None:
        if self.run.writer is not None:
            for step, losses in values:
                self.run.writer.add_scalar("train/loss_step", losses["loss"], epoch * self.run.steps_per_epoch + step)

    def epoch_end(self, epoch: Epoch) -> None:
        run, images = self.run, self.run.steps_per_epoch * self.run.spec.train.batch_size
        run.train_seconds += epoch.device_seconds  # its share of the device, when it shared one
        run.wall_seconds += epoch.seconds
        run.images_seen += images
        epoch.row.update(
            {
                "epoch": epoch.index + 1,
                "loss": distributed.all_reduce_mean(epoch_loss(epoch)).item(),
                "lr": run.scheduler.get_last_lr()[0],
                "seconds": round(epoch.seconds, 3),
                "images_per_s": round(images / epoch.seconds, 2),
                "device_shared_by": round(epoch.shared_by, 2),
                **collapse_metrics(epoch.last["embedding"]),
            }
        )
        row = epoch.row
        if row["std_ratio"] < COLLAPSE_STD_RATIO and run.ctx.is_main:
            message = (
                f"epoch {epoch.index + 1}: the embeddings are collapsing (std of normalised projector output "
                f"{row['std_ratio']:.3f}/sqrt(d), effective rank {row['effective_rank']:.1f})"
            )
            warnings.warn(message, CollapseWarning, stacklevel=2)


class _Monitor(Callback):
    """The per-epoch kNN monitor (``eval.knn_every``), and best-on-test's weights (it looks at every epoch)."""

    def __init__(self, run: PretrainRun) -> None:
        self.run, spec = run, run.spec
        self.select_best = spec.eval.checkpoint == "best-on-test"
        self.every = 1 if self.select_best else spec.eval.knn_every
        self.data = eval_data_for(spec, run.seed, run.ctx.device, monitor=True) if self.every else None

    def epoch_end(self, epoch: Epoch) -> None:
        if self.data is None or (epoch.index + 1) % self.every:
            return
        run, e = self.run, self.run.spec.eval
        knn = spec_knn(self.data.features(knn_encoder(run.model, e.knn_features)), e)
        epoch.row["knn_top1"] = knn
        if self.select_best and knn > max((r.get("knn_top1", -1.0) for r in run.history), default=-1.0):
            best = {"epoch": epoch.index + 1, "knn_top1": knn, "model": run.model.state_dict()}
            save_state(run.out_dir / BEST_CHECKPOINT, "best", run.identity, best)


class _Saver(Callback):
    """The epoch into the history, the checkpoint, ``log.csv`` and TensorBoard (main process), then a barrier."""

    def __init__(self, run: PretrainRun) -> None:
        self.run = run

    def epoch_end(self, epoch: Epoch) -> None:
        run = self.run
        run.history.append(epoch.row)
        run.epochs_done = epoch.index + 1
        if run.ctx.is_main:
            run.tracking.log(epoch.row, step=epoch.index + 1)
            run.save()
            _write_log(run.out_dir, run.history)
            for key, value in epoch.row.items():
                if key != "epoch":
                    run.writer.add_scalar(f"epoch/{key}", value, epoch.index + 1)
        if run.ctx.distributed:
            torch.distributed.barrier()


def train_step(
    model: Framework,
    view1: torch.Tensor,
    view2: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler,
    progress: float,
    use_amp: bool = False,
) -> dict[str, torch.Tensor]:
    """One optimisation step of any framework (``loop.run_epochs`` stops a run whose loss is not finite)."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
        out = model(view1, view2)
    loss = out["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.average_gradients(model)
    optimizer.step()
    scheduler.step()
    model.after_step(progress)
    return out


def export_backbone(backbone: nn.Module, path: Path) -> None:
    """The backbone's ``state_dict`` with clean keys (no ``module.`` or ``backbone.`` prefixes), for timm."""
    save_torch(path, {k: v.detach().cpu() for k, v in backbone.state_dict().items()})


def _tensorboard(out_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"))
