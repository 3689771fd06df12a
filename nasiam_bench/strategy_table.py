"""The search strategies side by side: for each framework whose searched heads come from more than one strategy,
what each search cost, what it chose (genotypes, the share of parameter-free ops) and what its head is worth
against the baseline and against the heads of random search, paired by seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from nasiam_bench.heads.ops import LINEAR_PREFIX, PARAMETER_FREE_OPS
from nasiam_bench.io import atomic_path
from nasiam_bench.stats import PairedDifference, format_difference, format_mean_std, paired_by_seed, paired_difference

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
    """One row per (profile, recipe, framework, strategy) of searched heads, for groups with two strategies or
    more: seeds, search device-hours, genotypes per seed, parameter-free share, Δ kNN and linear vs the baseline,
    Δ kNN vs the random strategy's head."""
    frame = pd.DataFrame(records)
    if frame.empty or "comparison_id" not in frame:
        return pd.DataFrame()
    frame = frame[frame["comparison_id"].notna()]
    # Records written before recipes existed: "(none)", as the main table labels them.
    frame = frame.assign(recipe=frame["recipe"].fillna("(none)") if "recipe" in frame else "(none)")
    rows = []
    for key, group in frame.groupby(GROUP, sort=True):
        searched = group[group["head"] == SEARCHED]
        if searched["strategy"].nunique() < 2:
            continue
        baseline = group[group["head"] == "baseline"]
        control = searched[searched["strategy"] == CONTROL]
        for strategy, runs in searched.groupby("strategy", sort=True):
            runs = runs.sort_values("seed")
            shares = [parameter_free_share(g) for g in runs["genotype"]]
            per_seed = zip(runs["seed"], runs["genotype"], strict=True)
            row = dict(zip(GROUP, key, strict=True))
            row.update(
                strategy=strategy,
                seeds=int(runs["seed"].nunique()),
                search_device_h=runs["search_device_hours"].mean(),
                search_device_h_std=runs["search_device_hours"].std(ddof=1),
                parameter_free=sum(shares) / len(shares),
                genotypes=" / ".join(f"s{n}: {compact(g)}" for n, g in per_seed),
                knn_mean=runs["knn_top1"].mean(),
                knn_std=runs["knn_top1"].std(ddof=1),
                knn_vs_baseline=paired_by_seed(runs, baseline, "knn_top1"),
                linear_vs_baseline=paired_by_seed(runs, baseline, "linear_top1"),
                knn_vs_random=(
                    paired_by_seed(runs, control, "knn_top1") if strategy != CONTROL else paired_difference([], [])
                ),
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _verdict(d: PairedDifference) -> str:
    return "–" if d.n == 0 else f"{format_difference(d)}, {d.verdict}"


def presentable(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "profile": table["profile"],
            "recipe": table["recipe"],
            "framework": table["framework"],
            "strategy": table["strategy"],
            "seeds": table["seeds"],
            "search device-h": [
                format_mean_std(m, s, n, digits=4)
                for m, s, n in zip(table["search_device_h"], table["search_device_h_std"], table["seeds"], strict=True)
            ],
            "parameter-free ops": table["parameter_free"].map("{:.0%}".format),
            "kNN top-1 %": [
                format_mean_std(m, s, n)
                for m, s, n in zip(table["knn_mean"], table["knn_std"], table["seeds"], strict=True)
            ],
            "kNN Δ vs baseline [95% CI], verdict": table["knn_vs_baseline"].map(_verdict),
            "linear Δ vs baseline [95% CI], verdict": table["linear_vs_baseline"].map(_verdict),
            "kNN Δ vs random search [95% CI], verdict": table["knn_vs_random"].map(_verdict),
            "genotypes (per seed)": table["genotypes"],
        }
    )


def plot_strategies(table: pd.DataFrame, path: Path, dataset: str) -> Path:
    """Per framework: each strategy's kNN difference to the baseline (mean and 95% interval) against its search
    device-hours (mean ± std), the share of parameter-free ops written beside each point."""
    groups = list(table.groupby(GROUP, sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), layout="constrained", squeeze=False)
    for ax, (key, rows) in zip(axes[0], groups, strict=True):
        for i, row in enumerate(rows.itertuples(index=False)):
            d = row.knn_vs_baseline
            yerr = [[d.mean - d.low], [d.high - d.mean]] if pd.notna(d.low) else None
            ax.errorbar(
                row.search_device_h,
                d.mean,
                xerr=0.0 if pd.isna(row.search_device_h_std) else row.search_device_h_std,
                yerr=yerr,
                marker="o",
                capsize=3,
                linestyle="none",
                color=f"C{i}",
                label=f"{row.strategy} ({row.parameter_free:.0%} parameter-free)",
            )
        ax.axhline(0.0, color="grey", linestyle="--", linewidth=1, label="baseline heads")
        ax.set_title(f"{dataset} {key[2]} ({key[0]} profile, {key[1]} recipe)", fontsize=9)
        ax.set_xlabel("search device-hours, mean ± std over seeds")
        ax.set_ylabel("kNN Δ vs baseline (points), mean and 95% CI")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
