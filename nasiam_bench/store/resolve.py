"""Which ops a run's heads have: the genotype ``experiment.head`` names, resolved for a spec and a seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nasiam_bench.config.spec import Spec, SpecError
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.heads.genotype import (
    OPS_PREFIX,
    GenotypeError,
    load_genotype,
    paper_genotype_path,
    parse_ops_head,
    published_genotypes,
    sample_genotype,
)
from nasiam_bench.models.heads.ops import search_space
from nasiam_bench.store.layout import GENOTYPE, default_search_dir


def searched_layers(spec: Spec) -> dict[str, int]:
    """The searched heads of the spec's framework and their layer counts."""
    cells = FRAMEWORKS.get(spec.experiment.framework).search_cells(1, spec.search.layers())
    return {head: cell.layers for head, cell in cells.items()}


def resolve_genotype(spec: Spec, seed: int, runs: str | Path = "runs") -> dict[str, list[str]] | None:
    """The ops of the heads ``experiment.head`` asks for; None for the framework's baseline heads.

    ``genotype:<file>``: a genotype file; ``ops:<head>=<op>,...``: the ops themselves; ``paper``: the paper's for
    this framework, dataset and backbone;
    ``nasiam``: what ``nasiam-bench search`` found for this spec and seed; ``random``: one sampled with the seed.
    """
    e = spec.experiment
    kind = e.head
    if kind == "baseline":
        return None
    if kind.startswith(OPS_PREFIX):
        return _checked_layers(parse_ops_head(kind), spec)
    if kind == "random":
        rng = np.random.default_rng([seed, 1])  # not the random search's own stream
        return sample_genotype(search_space(e.activations), searched_layers(spec), rng)
    if kind == "paper":
        path = paper_genotype_path(e.framework, e.dataset, e.backbone)
        if not path.is_file():
            known = ", ".join(published_genotypes()) or "none"
            raise SpecError(
                f"experiment.head = 'paper': the paper published no genotype for {e.framework} on "
                f"{e.dataset} with {e.backbone}; it did for: {known}"
            )
    elif kind == "nasiam":
        path = default_search_dir(spec, seed, runs) / GENOTYPE
        if not path.is_file():
            raise SpecError(
                f"experiment.head = 'nasiam': no search result at {path}; run "
                f"`nasiam-bench search` with this spec first"
            )
    else:
        path = Path(kind.removeprefix("genotype:"))
    genotype = load_genotype(path)
    if genotype.framework != e.framework:
        raise SpecError(f"{path}: a genotype of {genotype.framework} heads, not {e.framework}")
    return _checked_layers(genotype.heads, spec)  # refused here, before a run folder is made for it


def _checked_layers(heads: dict[str, list[str]], spec: Spec) -> dict[str, list[str]]:
    """A genotype that names each searched head of the framework with its layer count."""
    layers = searched_layers(spec)
    given = {head: len(ops) for head, ops in heads.items()}
    if given != layers:
        want = ";".join(f"{head}=<{n} ops>" for head, n in layers.items())
        raise GenotypeError(f"experiment.head = {spec.experiment.head!r}: {spec.experiment.framework} searches {want}")
    return heads
