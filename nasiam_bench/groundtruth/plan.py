"""The ground truth of a search space: which heads ``nasiam-bench groundtruth`` trains, each an ordinary run of the
bench's plan (one record per genotype and seed, under the same identity, claim and resume as any other run, and
under every executor).

It trains a seeded, uniform sample of the space's genotypes (distinct, drawn without replacement), the framework's
baseline heads, the paper's genotype (where it published one), and every genotype a committed search of the same
comparison chose (each strategy, each seed), written as ``ops:`` heads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nasiam_bench.config.spec import Spec, SpecError, spec_from_dict
from nasiam_bench.core.machine import machine_kind
from nasiam_bench.models.heads.genotype import ops_head, paper_genotype_path
from nasiam_bench.models.heads.ops import search_space
from nasiam_bench.store.identity import comparison_id
from nasiam_bench.store.resolve import searched_layers
from nasiam_bench.store.results import load_records, load_search_records

Genotype = dict[str, list[str]]


def space_size(spec: Spec) -> int:
    """How many genotypes the spec's search space holds: ops ** searched layers."""
    return len(search_space(spec.experiment.activations)) ** sum(searched_layers(spec).values())


def genotype_at(spec: Spec, index: int) -> Genotype:
    """The ``index``-th genotype of the space (layer by layer, head by head, the first layer the slowest digit)."""
    ops, layers = search_space(spec.experiment.activations), searched_layers(spec)
    digits = []
    for _ in range(sum(layers.values())):
        index, digit = divmod(index, len(ops))
        digits.append(ops[digit])
    digits.reverse()
    heads, start = {}, 0
    for head, n in layers.items():
        heads[head], start = digits[start : start + n], start + n
    return heads


def sample(spec: Spec, size: int, seed: int) -> list[Genotype]:
    """``size`` distinct genotypes drawn uniformly from the space with ``seed`` (all of them when it holds fewer);
    the first ``n`` of them are the sample of size ``n``."""
    total = space_size(spec)
    if size < 1:
        raise SpecError(f"--sample {size}: give 1 or more")
    rng = np.random.default_rng([seed, 31])  # not the random head's or the random search's stream
    # a prefix of one permutation: a smaller sample of the same seed is the start of a larger one
    return [genotype_at(spec, int(i)) for i in rng.permutation(total)[:size]]


def committed_picks(spec: Spec, results: str | Path) -> list[dict[str, Any]]:
    """Every genotype a search chose in ``results`` that pairs with ``spec`` (the same comparison): the searched
    heads' records, then the searches recorded under ``searches/`` whose choice differs (a search run again on
    another kind of machine, say). Each: its strategy, search id, seed, genotype and where it was found."""
    wanted = comparison_id(spec.replace(head="baseline"))
    picks = []
    for r in load_records(results) if (Path(results) / "records").is_dir() else []:
        if r["head"] == "nasiam" and r.get("genotype") and r["comparison_id"] == wanted:
            picks.append(_pick(r, r["genotype"], "its head's record"))
    known = {(p["search_id"], p["seed"], ops_head(p["genotype"])) for p in picks}
    for r in load_search_records(results):
        searched = spec_from_dict(r["spec"], where=f"search record {r['search_id']}").replace(head="baseline")
        if r.get("genotype") and comparison_id(searched) == wanted:
            if (r["search_id"], r["seed"], ops_head(r["genotype"])) not in known:
                picks.append(_pick(r, r["genotype"], f"searched again on {machine_kind(r.get('machine'))}"))
    return picks


def _pick(record: dict[str, Any], genotype: Genotype, found: str) -> dict[str, Any]:
    keys = ("strategy", "search_id", "seed")
    return {**{k: record[k] for k in keys}, "genotype": genotype, "found": found}


def heads(spec: Spec, size: int, seed: int, results: str | Path) -> list[str]:
    """The ``experiment.bench_heads`` of the ground truth: baseline, paper, the committed picks, then the sample
    (each genotype once)."""
    e = spec.experiment
    listed = ["baseline"] + (["paper"] if paper_genotype_path(e.framework, e.dataset, e.backbone).is_file() else [])
    for genotype in [p["genotype"] for p in committed_picks(spec, results)] + sample(spec, size, seed):
        head = ops_head(genotype)
        if head not in listed:
            listed.append(head)
    return listed


def overrides(spec: Spec, size: int, seed: int, results: str | Path) -> list[str]:
    """The bench overrides that make a bench the ground truth's: its heads, records with the label-free measures
    (older records of the same runs made again), and each genotype's seeds one after the other (a sweep stopped
    half-way leaves whole genotypes)."""
    listed = ", ".join(f'"{h}"' for h in heads(spec, size, seed, results))
    return [f"experiment.bench_heads=[{listed}]", "experiment.remake_without_measures=true", "experiment.plan_by=head"]
