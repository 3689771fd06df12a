"""Experiment tracking with Weights & Biases, optional (``pip install 'nasiam-bench[wandb]'``): with
``experiment.wandb = "offline"`` (files under the run folder's ``wandb/``, ``wandb sync`` later: what a cluster
node without the internet wants) or ``"online"``, a pre-training run is a W&B run named by its state identity and
seed, its config the resolved spec; it logs each epoch's loss and kNN monitor, and its record when it is written.
The W&B run id is kept in the checkpoint, so a resumed or requeued run continues the same W&B run. Tracking is part
of no identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nasiam_bench.config.spec import Spec
from nasiam_bench.core.registry import NasiamBenchError

PROJECT = "nasiam-bench"


class Tracking:
    """A run's W&B run, or nothing (``experiment.wandb = "off"``): log and finish are then no-ops."""

    def __init__(self, run: Any = None) -> None:
        self.run = run

    @property
    def id(self) -> str | None:
        return None if self.run is None else self.run.id

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in values.items() if isinstance(v, int | float)}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _wandb(spec: Spec):
    try:
        import wandb
    except ImportError:
        raise NasiamBenchError(
            f"experiment.wandb = {spec.experiment.wandb!r}: W&B is not installed; pip install 'nasiam-bench[wandb]' "
            f"(or experiment.wandb = 'off')"
        ) from None
    return wandb


def start(spec: Spec, seed: int, state_identity: str, out_dir: Path, run_id: str | None) -> Tracking:
    """The run's W&B run: a new one, or the one ``run_id`` (kept in the checkpoint) continued."""
    mode = spec.experiment.wandb
    if mode == "off":
        return Tracking()
    wandb = _wandb(spec)
    e = spec.experiment
    out_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=PROJECT,
        id=run_id,  # None: W&B makes one, which the checkpoint then keeps
        resume="allow",
        name=f"{e.framework}-{e.head.partition(':')[0]}-{state_identity}-seed{seed}",
        group=e.framework,
        mode=mode,
        dir=str(out_dir),
        config={**spec.to_dict(), "seed": seed, "identity": state_identity},
        reinit="create_new",
    )
    return Tracking(run)


def log_record(spec: Spec, out_dir: Path, run_id: str | None, record: dict[str, Any]) -> None:
    """The record's numbers as the summary of the run's W&B run (``run_id``: the one its checkpoint keeps)."""
    if spec.experiment.wandb == "off" or run_id is None:
        return
    tracking = start(spec, record["seed"], record["identity"], out_dir, run_id)
    tracking.run.summary.update({k: v for k, v in record.items() if isinstance(v, int | float)})
    tracking.finish()
