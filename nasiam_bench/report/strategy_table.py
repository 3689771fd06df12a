"""The search strategies side by side: for each framework whose searched heads come from more than one strategy,
what each search cost, what it chose (genotypes, the share of parameter-free ops) and what its head is worth
against the baseline and against the heads of random search, paired by seed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nasiam_bench.core.figures import save
from nasiam_bench.models.heads.ops import LINEAR_PREFIX, PARAMETER_FREE_OPS
from nasiam_bench.report.plots import head_colour, marker, strategy_colour
from nasiam_bench.report.stats import (
    PairedDifference,
    format_difference,
    format_mean_std,
    paired_by_seed,
    paired_difference,
)
from nasiam_bench.search.decision import mean_pairwise_agreement
from nasiam_bench.store.results import flat_spec, spec_differences, strategy_label

SEARCHED = "nasiam"
CONTROL = "random"  # the strategy any other must beat for the search to show a benefit
GROUP = ["profile", "recipe", "framework"]
SHORT_OPS = {"identity": "id", "avgpool_3x3": "avg", "maxpool_3x3": "max"}


def parameter_free_share(genotype: dict[str, list[str]]) -> float:
    """The share of a genotype's layers whose op is parameter-free by name (identity or a pooling; on a layer that
    changes width the search space puts a Linear before them, as the paper's code does)."""
    ops = [op for layers in genotype.values() for op in layers]
    return sum(op in PARAMETER_FREE_OPS for op in ops) / len(ops)


def compact(genotype: dict[str, list[str]]) -> str:
    """``projector: elu-id-id-elu`` (linear ops by their activation, id/avg/max for the parameter-free ones)."""

    def short(op: str) -> str:
        return op[len(LINEAR_PREFIX) :] if op.startswith(LINEAR_PREFIX) else SHORT_OPS.get(op, op)

    return "; ".join(f"{head}: {'-'.join(short(op) for op in layers)}" for head, layers in sorted(genotype.items()))


def compare_strategies(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per searched experiment (a ``nasiam`` run id: a strategy and its search settings) of each comparison
    (comparison id) that searched with two strategies or more: seeds, search device-hours, genotypes per seed,
    parameter-free share, Δ kNN and linear vs the baseline, Δ kNN vs its random-search twin (the random strategy's
    run of the same spec). Runs of two identities are never averaged into one row."""
    frame = pd.DataFrame(records)
    if frame.empty or "comparison_id" not in frame:
        return pd.DataFrame()
    frame = frame[frame["comparison_id"].notna()]
    # Records written before recipes existed: "(none)", as the main table labels them.
    frame = frame.assign(recipe=frame["recipe"].fillna("(none)") if "recipe" in frame else "(none)")
    frame = frame.assign(_twin=[_twin_key(r) for r in frame.to_dict("records")])
    rows = []
    for _, group in frame.groupby("comparison_id", sort=False):
        searched = group[group["head"] == SEARCHED]
        if searched["strategy"].nunique() < 2:
            continue
        baseline = group[group["head"] == "baseline"]
        for _, runs in searched.groupby("run_id", sort=False):
            rows.append(_strategy_row(runs.sort_values("seed"), baseline, searched))
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table["search_differs"] = _search_differences(table, frame)
    return table.sort_values([*GROUP, "strategy", "search_differs"]).reset_index(drop=True)


def _strategy_row(runs: pd.DataFrame, baseline: pd.DataFrame, searched: pd.DataFrame) -> dict[str, Any]:
    strategy = runs["strategy"].iloc[0]
    shares = [parameter_free_share(g) for g in runs["genotype"]]
    per_seed = zip(runs["seed"], runs["genotype"], strict=True)
    row = {key: runs[key].iloc[0] for key in GROUP}
    row.update(
        comparison_id=runs["comparison_id"].iloc[0],
        run_id=runs["run_id"].iloc[0],
        strategy=strategy,
        strategy_shown=strategy_label(runs.iloc[0].to_dict()),
        seeds=int(runs["seed"].nunique()),
        search_device_h=runs["search_device_hours"].mean(),
        search_device_h_std=runs["search_device_hours"].std(ddof=1),
        parameter_free=sum(shares) / len(shares),
        genotypes=" / ".join(f"s{n}: {compact(g)}" for n, g in per_seed),
        decided=_mean_of(runs, "search_decision", lambda d: d["decided_share"]),
        seed_agreement=mean_pairwise_agreement(list(runs["genotype"])),
        perturbation_kept=_mean_of(runs, "perturbation_agreement", float),
        knn_mean=runs["knn_top1"].mean(),
        knn_std=runs["knn_top1"].std(ddof=1),
        knn_vs_baseline=paired_by_seed(runs, baseline, "knn_top1"),
        linear_vs_baseline=paired_by_seed(runs, baseline, "linear_top1"),
        knn_vs_random=(
            paired_by_seed(runs, _control(runs, searched), "knn_top1")
            if strategy != CONTROL
            else paired_difference([], [])
        ),
    )
    return row


def _mean_of(runs: pd.DataFrame, column: str, value) -> float:
    """The mean over the runs that hold ``column`` of ``value(cell)``; NaN when none does (older records)."""
    if column not in runs:
        return math.nan
    cells = [value(c) for c in runs[column] if isinstance(c, dict) or (c is not None and pd.notna(c))]
    return float(sum(cells) / len(cells)) if cells else math.nan


# What may differ between a searched run and its random-search twin besides the strategy: labels and places.
TWIN_IGNORED = {"experiment.strategy", "experiment.bench_strategies", "experiment.name", "data.root", "data.workers"}


def _twin_key(record: dict[str, Any]) -> str | None:
    """The record's spec without the strategy (and what only labels or places it); None without a spec."""
    spec = record.get("spec")
    if not isinstance(spec, dict):
        return None
    flat = flat_spec(spec)
    return repr(sorted((k, repr(v)) for k, v in flat.items() if k not in TWIN_IGNORED and not k.startswith("seeds.")))


def _control(runs: pd.DataFrame, searched: pd.DataFrame) -> pd.DataFrame:
    """The random-search runs a searched run is compared with: its twin (the same spec but the strategy); for
    records without a spec, the comparison's random-search runs if they are of one run id (else none: no guess)."""
    control = searched[searched["strategy"] == CONTROL]
    key = runs["_twin"].iloc[0]
    if key is not None:
        return control[control["_twin"] == key]
    return control if control["run_id"].nunique() == 1 else control.iloc[0:0]


def _search_differences(table: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """For rows of one comparison and strategy (runs of different search settings), the keys their specs differ
    in; empty for a row alone."""
    specs = {r: s for r, s in zip(frame["run_id"], frame.get("spec", [None] * len(frame)), strict=True)}
    out = [""] * len(table)
    for _, rows in table.groupby(["comparison_id", "strategy"], sort=False):
        if len(rows) > 1:
            differences = spec_differences([specs.get(r) for r in rows["run_id"]])
            for index, text, run in zip(rows.index, differences, rows["run_id"], strict=True):
                out[index] = text or f"run id {run}"
    return out


def _share(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.0%}"


def _verdict(d: PairedDifference, seeds: int) -> str:
    """The interval and verdict; the number of pairs when it is not the row's seed count."""
    if d.n == 0:
        return "–"
    return f"{format_difference(d)}, {d.verdict}" + ("" if d.n == seeds else f" (n={d.n})")


def presentable(table: pd.DataFrame) -> pd.DataFrame:
    shown = pd.DataFrame(
        {
            "profile": table["profile"],
            "recipe": table["recipe"],
            "framework": table["framework"],
            "strategy": table["strategy_shown"],
            "seeds": table["seeds"],
            "search device-h": [
                format_mean_std(m, s, n, digits=4)
                for m, s, n in zip(table["search_device_h"], table["search_device_h_std"], table["seeds"], strict=True)
            ],
            "parameter-free ops": table["parameter_free"].map("{:.0%}".format),
            "decided layers": table["decided"].map(_share),
            "seeds agree": table["seed_agreement"].map(_share),
            "perturbation keeps": table["perturbation_kept"].map(_share),
            "kNN top-1 %": [
                format_mean_std(m, s, n)
                for m, s, n in zip(table["knn_mean"], table["knn_std"], table["seeds"], strict=True)
            ],
            **{
                name: [_verdict(d, n) for d, n in zip(table[column], table["seeds"], strict=True)]
                for name, column in (
                    ("kNN Δ vs baseline [95% CI], verdict", "knn_vs_baseline"),
                    ("linear Δ vs baseline [95% CI], verdict", "linear_vs_baseline"),
                    ("kNN Δ vs random search [95% CI], verdict", "knn_vs_random"),
                )
            },
            "genotypes (per seed)": table["genotypes"],
        }
    )
    if table["search_differs"].any():  # rows of one strategy that would otherwise look alike
        shown.insert(4, "search differs in", table["search_differs"].map(lambda v: v or "–"))
    return shown


def plot_strategies(table: pd.DataFrame, path: Path, dataset: str) -> Path:
    """Per framework: each strategy's kNN difference to the baseline (mean and 95% interval) against its search
    device-hours (mean ± std), one colour and marker per strategy (hollow: a second search of it, under other
    settings), the share of parameter-free ops in the legend below each panel."""
    return save(strategies_figure(table, dataset), path)


def strategies_figure(table: pd.DataFrame, dataset: str):
    """The figure of ``plot_strategies``: one subfigure a framework, its legend below its panel and inside the
    figure (constrained layout makes room for it)."""
    groups = [(tuple(rows[GROUP].iloc[0]), rows) for _, rows in table.groupby("comparison_id", sort=False)]
    fig = plt.figure(figsize=(7.5 * len(groups), 7.0), layout="constrained")
    subfigures = np.atleast_1d(fig.subfigures(1, len(groups)))
    for subfigure, (key, rows) in zip(subfigures, groups, strict=True):
        ax = subfigure.subplots()
        seen: set[str] = set()
        for row in rows.itertuples(index=False):
            d = row.knn_vs_baseline
            yerr = [[d.mean - d.low], [d.high - d.mean]] if pd.notna(d.low) else None
            colour = strategy_colour(row.strategy)
            ax.errorbar(
                row.search_device_h,
                d.mean,
                xerr=0.0 if pd.isna(row.search_device_h_std) else row.search_device_h_std,
                yerr=yerr,
                marker=marker("nasiam", row.strategy),
                markersize=9,
                markerfacecolor="none" if row.strategy in seen else colour,
                capsize=3,
                linestyle="none",
                color=colour,
                label=f"{row.strategy_shown}{f' ({row.search_differs})' if row.search_differs else ''} "
                f"({row.parameter_free:.0%} parameter-free)",
            )
            seen.add(row.strategy)
        ax.axhline(0.0, color=head_colour("baseline"), linestyle="--", linewidth=1, label="baseline heads")
        ax.set_title(f"{dataset} {key[2]} ({key[0]} profile, {key[1]} recipe)", fontsize=9)
        ax.set_xlabel("search device-hours, mean ± std over seeds")
        ax.set_ylabel("kNN Δ vs baseline (points), mean and 95% CI")
        subfigure.legend(fontsize=7, loc="outside lower center")  # below the axes: covers no point
        ax.grid(alpha=0.3)
    return fig
