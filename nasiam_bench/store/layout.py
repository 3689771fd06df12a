"""Where runs and searches live under the runs folder (one folder per resolved spec, one subfolder per seed), and
every name the suite writes in them: each is written here once and imported wherever it is read or written."""

from __future__ import annotations

from pathlib import Path

from nasiam_bench.config.spec import Spec
from nasiam_bench.store.identity import run_id, search_id

# In a run folder (pre-training) and a search folder.
CHECKPOINT = "checkpoint.pt"  # the resumable state of a pre-training
TRAIN_LOG = "log.csv"  # one row per epoch
RUN_CLAIM = "run.claim"  # held by the process that trains the run
SEARCH_STATE = "search_state.pt"  # the resumable state of a search
SEARCH_CLAIM = "search.claim"  # held by the process that runs the search
GENOTYPE = "genotype.toml"  # a finished search's genotype
SEARCH_SUMMARY = "search.json"  # a finished search's summary
JOB_STATUS = "job.json"  # an executor's job: where it ran, how long, how it ended


def default_run_dir(spec: Spec, seed: int, root: str | Path = "runs") -> Path:
    label = spec.experiment.name or f"{spec.experiment.framework}-{spec.experiment.dataset}"
    return Path(root) / f"{label}-{run_id(spec)}" / f"seed{seed}"


COMMITTED_PROFILES = ("quick",)  # the profiles whose records results/ keeps (the README's tables)


def default_results(spec: Spec, runs: str | Path = "runs") -> Path:
    """Where a bench's records, tables and plots go unless ``--results`` says: ``results`` for a committed
    profile, else a scratch folder under the runs folder (a smoke or GPU bench must not change the committed
    tables and plots)."""
    profile = spec.experiment.profile
    return Path("results") if profile in COMMITTED_PROFILES else Path(runs) / f"results-{profile}"


def floor_dir(spec: Spec, seed: int, runs: str | Path = "runs") -> Path:
    """The floor trains nothing: its job keeps its logs and status beside the baseline's seed folders."""
    return default_run_dir(spec, seed, runs).parent / f"floor-seed{seed}"


def default_search_dir(spec: Spec, seed: int, runs: str | Path = "runs") -> Path:
    e = spec.experiment
    label = f"search-{e.framework}-{e.dataset}-{e.strategy}"
    return Path(runs) / f"{label}-{search_id(spec)}" / f"seed{seed}"
