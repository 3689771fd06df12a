"""Checkpoints as this suite writes them: a format tag, the resolved spec, the model, optimiser and RNG states."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nasiam_bench.frameworks.base import Framework
from nasiam_bench.models import build_model
from nasiam_bench.registry import NasiamBenchError
from nasiam_bench.spec import Spec, spec_from_dict

CHECKPOINT_FORMAT = "nasiam-bench/checkpoint/1"
BEST_CHECKPOINT = "best.pt"  # beside checkpoint.pt: the epoch of best test kNN, for eval.checkpoint = best-on-test


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint this suite wrote, or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise NasiamBenchError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise NasiamBenchError(f"{path}: not a nasiam-bench checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise NasiamBenchError(f"{path}: not a nasiam-bench checkpoint (no format {CHECKPOINT_FORMAT!r})")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> tuple[Spec, Framework]:
    """Rebuild the spec and the trained model (its heads included) a checkpoint holds."""
    spec = spec_from_dict(state["spec"], where=f"checkpoint of run {state['run_id']}")
    model = build_model(spec, state.get("genotype"))
    model.load_state_dict(state["model"])
    return spec, model
