"""The one checkpointer: every resumable state (pre-training, best-on-test weights, a search's state) is written
atomically with a format tag and the identity (``nasiam_bench.store.identity``) of what produced it, and is loaded only
under that identity: a state of another run, seed, genotype, dataset or search is refused in one line that names
both identities and the way out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nasiam_bench.config.spec import Spec, spec_from_dict
from nasiam_bench.core.io import save_torch
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.models.build import build_model
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.store.identity import identity

FORMATS = {
    "pretrain": "nasiam-bench/checkpoint/2",
    "best": "nasiam-bench/best/2",
    "search": "nasiam-bench/search-state/2",
}
CHECKPOINT_FORMAT = FORMATS["pretrain"]
BEST_CHECKPOINT = "best.pt"  # beside checkpoint.pt: the epoch of best test kNN, for eval.checkpoint = best-on-test


class StateMismatch(NasiamBenchError):
    """A saved state that is not of the identity asked for."""


def save_state(path: str | Path, kind: str, state_identity: str, state: dict[str, Any]) -> None:
    """Write ``state`` atomically, tagged with the format of ``kind`` and its identity."""
    save_torch(path, {**state, "format": FORMATS[kind], "identity": state_identity})


def read_state(path: str | Path, kind: str) -> dict[str, Any]:
    """A state of ``kind`` this suite wrote, or a clear error; its identity is the caller's to check."""
    path = Path(path)
    if not path.is_file():
        raise NasiamBenchError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise NasiamBenchError(f"{path}: not a nasiam-bench {kind} state ({type(exc).__name__})") from None
    found = state.get("format") if isinstance(state, dict) else None
    if found != FORMATS[kind]:
        raise NasiamBenchError(
            f"{path}: not a nasiam-bench {kind} state of this version (format {found!r}, expected "
            f"{FORMATS[kind]!r}): remove it, or use another output folder"
        )
    return state


def load_state(path: str | Path, kind: str, state_identity: str, way_out: str) -> dict[str, Any] | None:
    """The state at ``path`` if it is of ``state_identity``; None when there is none; an error when it is of
    another (``way_out`` says what the user can do)."""
    path = Path(path)
    if not path.is_file():
        return None
    state = read_state(path, kind)
    if state["identity"] != state_identity:
        raise StateMismatch(
            f"{path} holds the {kind} state of identity {state['identity']}, not {state_identity} (another spec, "
            f"seed, genotype or dataset): {way_out}"
        )
    return state


def checkpoint_identity(state: dict[str, Any]) -> str:
    """The identity a pre-training checkpoint's own spec, seed and genotype give now."""
    spec = spec_from_dict(state["spec"], where=f"checkpoint {state['identity']}")
    return identity("state", spec, state["seed"], state.get("genotype"))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A pre-training checkpoint, its identity checked against the spec, seed and genotype it holds (a dataset
    prepared anew, or another version of the suite, gives another identity)."""
    state = read_state(path, "pretrain")
    now = checkpoint_identity(state)
    if now != state["identity"]:
        raise StateMismatch(
            f"{path} was written as {state['identity']}; its spec, seed and genotype give {now} here (the dataset "
            f"or the suite's identity rules changed): train it again (another --out, or --no-resume)"
        )
    return state


def model_from_checkpoint(state: dict[str, Any]) -> tuple[Spec, Framework]:
    """Rebuild the spec and the trained model (its heads included) a checkpoint holds."""
    spec = spec_from_dict(state["spec"], where=f"checkpoint {state['identity']}")
    model = build_model(spec, state.get("genotype"))
    model.load_state_dict(state["model"])
    return spec, model
