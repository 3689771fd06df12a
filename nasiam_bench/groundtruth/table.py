"""The ground truth read back from its records: one row per run (genotype and seed) with its accuracies, its
label-free measures and the machine that made it, and a query API over it::

    truth = GroundTruth.load("results", spec)
    truth.lookup({"projector": ["linear_relu", "identity", "avgpool_3x3", "linear_elu"]})  # {seed: {...}}

Only the runs of the spec's comparison are read (the same schedule, data, recipe and backbone: they pair)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nasiam_bench.config.heads import HeadKind
from nasiam_bench.config.spec import Spec
from nasiam_bench.core.machine import machine_kind
from nasiam_bench.eval.label_free import MEASURES
from nasiam_bench.models.heads.genotype import OPS_PREFIX, ops_head
from nasiam_bench.store.identity import comparison_id
from nasiam_bench.store.results import load_records

METRICS = ("knn_top1", "linear_top1")
BASELINE = HeadKind.BASELINE  # the framework's own heads: outside the search space (its key in the table)


@dataclass(frozen=True)
class GroundTruth:
    """The runs of a ground truth (``runs``: one row per genotype key and seed) and the floor's accuracy."""

    runs: pd.DataFrame
    floor: pd.DataFrame

    @classmethod
    def load(cls, results: str | Path, spec: Spec) -> GroundTruth:
        """The baseline, paper and ``ops:`` runs of ``spec``'s comparison and seeds in ``results``."""
        wanted = comparison_id(spec.replace(head="baseline"))
        e, seeds = spec.experiment, set(spec.seeds.values)
        rows, floor = [], []
        for r in load_records(results):
            if r["comparison_id"] != wanted or r["framework"] != e.framework or r["seed"] not in seeds:
                continue
            if r["head"] == HeadKind.FLOOR:
                floor.append({"seed": r["seed"], "knn_top1": r["knn_top1"]})
            elif r["head"] in (BASELINE, "paper") or r["head"].startswith(OPS_PREFIX):
                rows.append(_row(r, BASELINE if r["head"] == BASELINE else ops_head(r["genotype"])))
        runs = pd.DataFrame(rows, columns=_COLUMNS)
        # the paper's genotype trained as `paper` and as `ops:` is one genotype: keep one run a seed
        runs = runs.sort_values(["key", "seed", "head"]).drop_duplicates(["key", "seed"], keep="first")
        return cls(runs.reset_index(drop=True), pd.DataFrame(floor, columns=["seed", "knn_top1"]))

    def lookup(self, genotype: dict[str, list[str]] | str) -> dict[int, dict[str, Any]]:
        """Per seed, the accuracies and measures of a genotype (or of ``"baseline"``); empty when not trained."""
        key = genotype if isinstance(genotype, str) else ops_head(genotype)
        found = self.runs[self.runs["key"] == key]
        return {int(r["seed"]): {c: r[c] for c in (*METRICS, *MEASURES, "head_params")} for _, r in found.iterrows()}

    def means(self, keys: list[str] | None = None, seeds: int = 2) -> pd.DataFrame:
        """Per genotype key with runs of ``seeds`` seeds at least: the mean of every metric and measure over them
        (indexed by key; ``keys`` restricts and orders)."""
        runs = self.runs if keys is None else self.runs[self.runs["key"].isin(keys)]
        counts = runs.groupby("key")["seed"].nunique()
        full = counts[counts >= seeds].index
        means = runs[runs["key"].isin(full)].groupby("key")[[*METRICS, *MEASURES, "head_params"]].mean()
        return means if keys is None else means.reindex([k for k in keys if k in means.index])


_COLUMNS = ["key", "head", "seed", *METRICS, *MEASURES, "head_params", "machine", "created"]


def _row(record: dict[str, Any], key: str) -> dict[str, Any]:
    row = {c: record.get(c) for c in _COLUMNS if c not in ("key", "machine")}
    return {**row, "key": key, "machine": machine_kind(record.get("machine"))}
