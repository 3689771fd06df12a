"""Comparison tables (pandas -> Markdown and CSV) and plots from the run records, one set per dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from nasiam_bench.config.heads import HeadKind
from nasiam_bench.core.figures import save
from nasiam_bench.core.io import atomic_path, atomic_write_text
from nasiam_bench.core.machine import machine_kind
from nasiam_bench.models.heads.genotype import OPS_PREFIX
from nasiam_bench.report import strategy_table
from nasiam_bench.report.plots import head_colour, legend_outside, marker
from nasiam_bench.report.stats import (
    CONFIDENCE,
    PairedDifference,
    format_difference,
    format_mean_std,
    paired_by_seed,
    paired_difference,
)
from nasiam_bench.search.decision import DECIDED_EPOCHS, DECIDED_MARGIN, PERTURBATION
from nasiam_bench.store.results import DATASET_NOTES, load_records, spec_differences, strategy_label

# Published figures, for the labelled block only: never mixed with the measured rows.
PUBLISHED = [
    ("SimSiam paper", "cifar10", "simsiam", "resnet18", "linear, 800 epochs", 91.8),
    ("solo-learn", "cifar10", "simclr", "resnet18", "linear, 1000 epochs", 90.74),
    ("solo-learn", "cifar10", "moco", "resnet18", "linear, 1000 epochs (MoCo v2+)", 92.94),
    ("solo-learn", "cifar10", "simsiam", "resnet18", "linear, 1000 epochs", 90.51),
    ("solo-learn", "cifar10", "byol", "resnet18", "linear, 1000 epochs", 92.58),
    ("solo-learn", "cifar100", "simclr", "resnet18", "linear, 1000 epochs", 65.78),
    ("solo-learn", "cifar100", "moco", "resnet18", "linear, 1000 epochs (MoCo v2+)", 69.89),
    ("solo-learn", "cifar100", "simsiam", "resnet18", "linear, 1000 epochs", 66.04),
    ("solo-learn", "cifar100", "byol", "resnet18", "linear, 1000 epochs", 70.46),
    ("lightly", "cifar10", "simclr", "resnet18", "kNN, 800 epochs, batch 512", 87.9),
    ("lightly", "cifar10", "moco", "resnet18", "kNN, 800 epochs, batch 512", 89.9),
    ("lightly", "cifar10", "simsiam", "resnet18", "kNN, 800 epochs, batch 512", 90.4),
    ("lightly", "cifar10", "byol", "resnet18", "kNN, 800 epochs, batch 512", 91.0),
]
HEAD_ORDER = {kind: order for order, kind in enumerate(HeadKind)}  # floor, baseline, nasiam, random, paper
METRICS = {"knn": "knn_top1", "linear": "linear_top1"}
LABELS = ["profile", "recipe", "framework", "head", "strategy", "backbone", "width", "epochs", "checkpoint_selection"]
# Records written before a label existed: what it stood for then.
LABEL_DEFAULTS = {"recipe": "(none)", "checkpoint_selection": "final"}


HEAD_PARAMS_COLUMNS = ("head_params", "head_params_min", "head_params_max")


def _params(mean: float, low: float, high: float) -> str:
    """``16,768``, or ``20,992 (16,768–25,216)``: the mean and the range over seeds when they differ."""
    if pd.isna(mean):
        return "–"
    return f"{int(low):,}" if low == high else f"{mean:,.0f} ({int(low):,}–{int(high):,})"


def _column_mean_std(table: pd.DataFrame, prefix: str) -> list[str]:
    columns = (table[f"{prefix}_mean"], table[f"{prefix}_std"], table["seeds"])
    return [format_mean_std(m, s, n) for m, s, n in zip(*columns, strict=True)]


def summarise(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per experiment, the head and run id (the hash of the whole resolved spec but the seed): means ± std
    over its seeds. Rows whose labels agree but whose specs do not name the keys that differ (``differs``)."""
    frame = pd.DataFrame(records)
    if "linear_top1" not in frame:  # only floors so far
        frame["linear_top1"] = float("nan")
    for label, default in LABEL_DEFAULTS.items():
        frame[label] = frame[label].fillna(default) if label in frame else default
    frame["strategy"] = [strategy_label(r) for r in frame.to_dict("records")]
    rows = [_summary_row(run_id, group, frame) for (_, run_id), group in frame.groupby(["head", "run_id"], sort=False)]
    table = pd.DataFrame(rows)
    _name_differences(table, {(r["head"], r["run_id"]): r.get("spec") for r in records})
    table["_order"] = table["head"].map(HEAD_ORDER).fillna(9)
    return table.sort_values(["profile", "framework", "_order", "strategy"]).drop(columns="_order")


def _summary_row(run_id: str, group: pd.DataFrame, frame: pd.DataFrame) -> dict[str, Any]:
    """One experiment's row: its labels, its seeds' means and spreads, its costs and its paired differences."""
    row = {label: group[label].iloc[0] for label in LABELS}
    row.update(
        {
            "run_id": run_id,
            "seeds": int(group["seed"].nunique()),
            "knn_mean": group["knn_top1"].mean(),
            "knn_std": group["knn_top1"].std(ddof=1),
            "linear_mean": group["linear_top1"].mean(),
            "linear_std": group["linear_top1"].std(ddof=1),
            # searched and random heads differ from seed to seed: their mean and range
            "head_params": group["head_params"].mean(),
            "head_params_min": group["head_params"].min(),
            "head_params_max": group["head_params"].max(),
            "search_device_h": group["search_device_hours"].mean(),
            "pretrain_device_h": group["pretrain_device_hours"].mean(),
            "device": ", ".join(sorted(set(group["device"]))),
        }
    )
    row["total_device_h"] = row["search_device_h"] + row["pretrain_device_h"]
    row["total_device_h_std"] = (group["search_device_hours"] + group["pretrain_device_hours"]).std(ddof=1)
    row["differs"] = ""
    row["across_machines"] = _across_machines(group, frame)
    for prefix, metric in METRICS.items():
        d = _against_baseline(group, frame, metric)
        row.update({f"{prefix}_diff_{k}": v for k, v in vars(d).items()})
    return row


def _name_differences(table: pd.DataFrame, specs: dict[tuple[str, str], Any]) -> None:
    """Rows whose labels agree but whose specs do not: each names the keys it differs in (``differs``)."""
    for _, same_labels in table.groupby(LABELS, sort=False):
        if len(same_labels) > 1:
            rows = list(same_labels.itertuples())
            differences = spec_differences([specs[(row.head, row.run_id)] for row in rows])
            # Specs alike but for the hash: records written by another version of the suite.
            labelled = zip(differences, rows, strict=True)
            table.loc[same_labels.index, "differs"] = [d or f"run id {r.run_id}" for d, r in labelled]


def _against_baseline(group: pd.DataFrame, frame: pd.DataFrame, metric: str) -> PairedDifference:
    """The paired difference of a head's runs to the baseline runs of the same comparison id and seed.

    The baseline itself and the floor are not compared (n = 0); nor are records without a comparison id (written
    before pairing existed), which pair with nothing."""
    head = group["head"].iloc[0]
    if head in (HeadKind.BASELINE, HeadKind.FLOOR) or "comparison_id" not in frame:
        return paired_difference([], [])
    baseline = frame[(frame["head"] == HeadKind.BASELINE) & frame["comparison_id"].notna()]
    return paired_by_seed(group, baseline, metric)


def _across_machines(group: pd.DataFrame, frame: pd.DataFrame) -> str:
    """How many of a head's seeds pair with a baseline run of another kind of machine (or one that did not record
    its machine, when the head's did or the reverse): their paired difference mixes the machines' rounding."""
    head = group["head"].iloc[0]
    if head in (HeadKind.BASELINE, HeadKind.FLOOR) or "comparison_id" not in frame:
        return ""
    kinds = frame.assign(
        _kind=[machine_kind(m if isinstance(m, dict) else None) for m in frame.get("machine", [None] * len(frame))]
    )
    baseline = kinds[kinds["head"] == HeadKind.BASELINE].drop_duplicates(["comparison_id", "seed"])
    partner = baseline.set_index(["comparison_id", "seed"])["_kind"]
    pairs = [
        (kinds.loc[i, "_kind"], partner[key])
        for i, key in zip(group.index, zip(group["comparison_id"], group["seed"], strict=True), strict=True)
        if key in partner.index
    ]
    apart = sum(a != b for a, b in pairs)
    return f"{apart} of {len(pairs)} seeds" if apart else ""


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of already formatted cells (pandas' to_markdown needs tabulate for this)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join("–" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


def _differences(table: pd.DataFrame, prefix: str) -> list[PairedDifference]:
    fields = ("n", "mean", "low", "high", "verdict", "left_out")
    columns = [table[f"{prefix}_diff_{f}"] for f in fields]
    return [PairedDifference(int(n), m, lo, hi, v, int(left)) for n, m, lo, hi, v, left in zip(*columns, strict=True)]


def _column_difference(table: pd.DataFrame, prefix: str) -> list[str]:
    return [format_difference(d) for d in _differences(table, prefix)]


def _column_verdict(table: pd.DataFrame, prefix: str) -> list[str]:
    return [_verdict_text(d) for d in _differences(table, prefix)]


def _verdict_text(d: PairedDifference) -> str:
    """The verdict and its pairs; seeds left unpaired (two baseline runs of one seed) are said, never dropped
    silently."""
    left = f"; {d.left_out} seed(s) left out: two baseline runs of different run ids" if d.left_out else ""
    return ("–" if d.n == 0 else f"{d.verdict} (n={d.n})") + left if d.n or d.left_out else "–"


def presentable(table: pd.DataFrame) -> pd.DataFrame:
    """The summary with readable column names and formatted numbers."""
    shown = pd.DataFrame(
        {
            "profile": table["profile"],
            "recipe": table["recipe"],
            "framework": table["framework"],
            "head": table["head"],
            "strategy": table["strategy"],
            "backbone": table["backbone"],
            "width": table["width"].map("{:g}".format),
            "epochs": table["epochs"],
            "checkpoint": table["checkpoint_selection"].map(lambda v: "best on test" if v == "best-on-test" else v),
            "seeds": table["seeds"],
            "kNN top-1 %": _column_mean_std(table, "knn"),
            "kNN Δ vs baseline [95% CI]": _column_difference(table, "knn"),
            "kNN verdict": _column_verdict(table, "knn"),
            "linear top-1 %": _column_mean_std(table, "linear"),
            "linear Δ vs baseline [95% CI]": _column_difference(table, "linear"),
            "linear verdict": _column_verdict(table, "linear"),
            "head params": [
                _params(m, lo, hi) for m, lo, hi in zip(*(table[c] for c in HEAD_PARAMS_COLUMNS), strict=True)
            ],
        }
    )
    for column, name in (
        ("search_device_h", "search device-h"),
        ("pretrain_device_h", "pre-train device-h"),
        ("total_device_h", "total device-h"),
    ):
        shown[name] = table[column].map("{:.4f}".format)
    shown["device"] = table["device"]
    if table["across_machines"].any():  # a paired difference whose runs took different rounding paths
        shown["Δ paired across machines"] = table["across_machines"].map(lambda v: v or "–")
    if table["differs"].any():  # rows that would otherwise look alike
        shown["spec differs in"] = table["differs"].map(lambda v: v or "–")
    return shown


def write_tables(results: str | Path = "results") -> list[Path]:
    """Regenerate ``results/<dataset>.md``, ``.csv`` and ``_accuracy_vs_cost.png`` from every record."""
    results = Path(results)
    # Heads written as their ops are the ground truth's sample: its own report (ground_truth.py), not table rows.
    records = [r for r in load_records(results) if not r["head"].startswith(OPS_PREFIX)]
    written = []
    for dataset in sorted({r["dataset"] for r in records}):
        subset = [r for r in records if r["dataset"] == dataset]
        table = summarise(subset)
        shown = presentable(table)
        csv_path = results / f"{dataset}.csv"
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        plot_path = plot_accuracy_vs_cost(table, results / f"{dataset}_accuracy_vs_cost.png", dataset)
        curve_plots = _curve_plots(subset, results, dataset)
        strategies = _strategy_section(subset, results, dataset)
        document = _document(dataset, shown, subset, plot_path.name, [p.name for p in curve_plots])
        atomic_write_text(results / f"{dataset}.md", document + strategies)
        written += [results / f"{dataset}.md", csv_path, plot_path, *curve_plots]
        if strategies:
            written += [results / f"{dataset}_strategies.csv", results / f"{dataset}_search_strategies.png"]
    return written


def _strategy_section(records: list[dict[str, Any]], results: Path, dataset: str) -> str:
    """The search strategies compared (``strategy_table``), with its CSV and plot; empty with fewer than two."""
    table = strategy_table.compare_strategies(records)
    if table.empty:
        return ""
    shown = strategy_table.presentable(table)
    with atomic_path(results / f"{dataset}_strategies.csv") as tmp:
        shown.to_csv(tmp, index=False)
    plot = strategy_table.plot_strategies(table, results / f"{dataset}_search_strategies.png", dataset)
    return "\n".join(
        [
            "## Search strategies",
            "",
            "The searched (`nasiam`) head of each strategy, on the same seeds, data and schedule as the baseline. "
            "`search device-h`: the search alone (the pre-training of the searched head is in the table above). "
            "`parameter-free ops`: the share of searched layers whose op is identity or a pooling. "
            f"`decided layers`: the share of searched layers whose softmax(alpha) leads the second op by "
            f"{DECIDED_MARGIN:g} or more and whose argmax held over the last {DECIDED_EPOCHS} epochs (mean over "
            "seeds; `–`: searches recorded before it was measured). `seeds agree`: the share of layers on which two "
            "seeds' genotypes agree (mean over pairs; 1 in the number of ops by chance). `perturbation keeps`: the "
            f"share of layers the same search keeps with alpha perturbed by {PERTURBATION:g} at its start "
            "(`experiment.perturbation_check`). `Δ vs random "
            "search`: paired with the head the `random` strategy picked for the same seed; a search that does not "
            "beat it shows no benefit of searching. Intervals and verdicts as above. Regenerate with "
            "`make compare-search` (runs what is missing, then the tables).",
            "",
            markdown(shown),
            "",
            f"![search strategies: kNN difference to the baseline against search cost]({plot.name})",
            "",
        ]
    )


def _curve_plots(records: list[dict[str, Any]], results: Path, dataset: str) -> list[Path]:
    """One kNN-curve plot per (profile, recipe, framework) whose records hold curves."""
    written = []
    keys = sorted({(r["profile"], r.get("recipe", "(none)"), r["framework"]) for r in records})
    for profile, recipe, framework in keys:
        subset = [
            r
            for r in records
            if (r["profile"], r.get("recipe", "(none)"), r["framework"]) == (profile, recipe, framework)
        ]
        title = f"{dataset} {framework}: kNN top-1 during pre-training ({profile} profile, {recipe} recipe)"
        path = plot_knn_curves(subset, results / f"{dataset}_{framework}_{profile}_{recipe}_knn_curves.png", title)
        if path is not None:
            written.append(path)
    return written


HOW_TO_READ = (
    "Measured by nasiam-bench (`make tables` regenerates this file from `results/records/`). Every head of a "
    "framework is pre-trained with the same seeds, data and schedule; `untrained` is the kNN floor of the same "
    "backbone before training. Accuracies: mean ± std over seeds (a single seed shows no std). "
    f"`Δ vs baseline`: the mean over seeds of (head − baseline of the same seed) in points, with its "
    f"{CONFIDENCE:.0%} Student-t interval; the verdict is `better` or `worse` when the interval excludes 0, "
    "`no difference detected` when it covers 0 (not evidence that the heads are equal), `n/a` below 3 seeds. "
    "Device-hours: wall time × devices. `checkpoint`: `final` evaluates the last epoch; `best on test` the epoch "
    "whose test kNN was the best, a figure selected on the test split (NASiam's code's protocol), optimistic by "
    "construction. The recipe names the hyperparameters (`catalogue/recipes/`; `(none)`: recorded before recipes)."
)


def _document(
    dataset: str, shown: pd.DataFrame, records: list[dict[str, Any]], plot: str, curve_plots: list[str]
) -> str:
    parts = [
        f"# {dataset}: NASiam heads against the frameworks' standard heads",
        "",
        HOW_TO_READ,
        "",
        markdown(shown),
        "",
        f"![kNN top-1 against device-hours]({plot})",
        "",
        *[f"![kNN top-1 per epoch]({name})" for name in curve_plots],
        "",
        *_provenance(dataset, records),
        *_published_block(dataset),
    ]
    return "\n".join(parts)


def _provenance(dataset: str, records: list[dict[str, Any]]) -> list[str]:
    """The lines that say which profiles, data, machines and code made the table."""
    profiles = ", ".join(sorted({r["profile"] for r in records}))
    machines = "; ".join(sorted({r["device"] for r in records}))
    commits = ", ".join(sorted({r.get("git_commit", "unknown")[:12] for r in records}))
    lines = [f"- Profile(s): {profiles}. {_schedules(records)}"]
    note = DATASET_NOTES.get(dataset, "")
    if note:
        lines.append(f"- Data: {note}; accuracies on it may differ slightly from the lossless original.")
    return [*lines, f"- Machine(s): {machines}.", f"- Code: commit(s) {commits}.", ""]


def _published_block(dataset: str) -> list[str]:
    """The published figures of the dataset, in their own labelled block (not measured here)."""
    published = pd.DataFrame(
        [p for p in PUBLISHED if p[1] == dataset],
        columns=["source", "dataset", "framework", "backbone", "protocol", "top-1 %"],
    )
    if published.empty:
        return []
    return ["## Published figures (not measured here: other schedules and protocols)", "", markdown(published), ""]


def _schedules(records: list[dict[str, Any]]) -> str:
    """What each reduced profile trained, read from the records themselves."""
    lines = []
    for profile in sorted({r["profile"] for r in records} - {"paper"}):
        r = next(r for r in records if r["profile"] == profile)
        images = f"a subset of {r['train_subset']:,} images" if r.get("train_subset") else "the whole training split"
        lines.append(
            f"`{profile}` is a reduced schedule ({r['backbone']} at width {r['width']:g}, {images}, "
            f"{r['epochs']} epochs, batch {r['batch_size']})"
        )
    if not lines:
        return ""
    return (
        "; ".join(lines) + ": its figures compare the heads under that budget and are far below published accuracies."
    )


def plot_accuracy_vs_cost(table: pd.DataFrame, path: Path, dataset: str) -> Path:
    """kNN top-1 against total device-hours, one panel per framework, one point per head (its colour) and strategy
    (its marker) with mean ± std over seeds as error bars; the floor as a dashed line."""
    frameworks = sorted(set(table["framework"]))
    fig, axes = plt.subplots(
        1, len(frameworks), figsize=(3.6 * len(frameworks) + 2.4, 3.8), layout="constrained", squeeze=False
    )
    for ax, framework in zip(axes[0], frameworks, strict=True):
        rows = table[table["framework"] == framework]
        for row in rows[rows["head"] != HeadKind.FLOOR].itertuples(index=False):
            ax.errorbar(
                row.total_device_h,
                row.knn_mean,
                xerr=_zero_if_nan(row.total_device_h_std),
                yerr=_zero_if_nan(row.knn_std),
                marker=marker(row.head, row.strategy),
                markersize=9,
                capsize=3,
                linestyle="none",
                color=head_colour(row.head),
                label=row.head + (f" ({row.strategy})" if row.strategy != "-" else ""),
            )
        for row in rows[rows["head"] == HeadKind.FLOOR].itertuples(index=False):
            ax.axhline(
                row.knn_mean, color=head_colour(HeadKind.FLOOR), linestyle="--", linewidth=1, label="untrained floor"
            )
        ax.set_title(framework, fontsize=9)
        ax.set_xlabel("device-hours (search + pre-training)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("kNN top-1 (%), mean ± std over seeds")
    fig.suptitle(f"{dataset}: accuracy against cost (error bars: std over seeds)", fontsize=10)
    legend_outside(fig, axes)
    return save(fig, path)


def _zero_if_nan(value: float) -> float:
    return 0.0 if pd.isna(value) else value


def plot_knn_curves(records: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """kNN top-1 per monitored epoch, one panel per head (its colour), one line per strategy and run id in it: the
    mean over seeds and a band of ± std; the untrained floor dashed in each. None when no record holds a curve."""
    curves = [r for r in records if r.get("knn_curve")]
    if not curves:
        return None
    groups: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {}
    for r in sorted(curves, key=lambda r: HEAD_ORDER.get(r["head"], 9)):
        groups.setdefault(r["head"], {}).setdefault((r.get("strategy", "-"), r["run_id"]), []).append(r)
    fig, axes = plt.subplots(
        1, len(groups), figsize=(3.2 * len(groups) + 2.4, 3.4), layout="constrained", squeeze=False, sharey=True
    )
    floors = [r["knn_top1"] for r in records if r["head"] == HeadKind.FLOOR]
    for ax, (head, runs_of) in zip(axes[0], groups.items(), strict=True):
        for k, ((strategy, run), runs) in enumerate(runs_of.items()):
            frame = pd.DataFrame([{"epoch": e, "knn": v} for r in runs for e, v in r["knn_curve"]])
            by_epoch = frame.groupby("epoch")["knn"]
            mean, std = by_epoch.mean(), by_epoch.std(ddof=1).fillna(0.0)
            label = head + (f" ({strategy}, run {run[:6]})" if strategy != "-" else "") + f", {len(runs)} seed(s)"
            style = dict(color=head_colour(head), linestyle=("-", "--", ":", "-.")[k % 4])
            ax.plot(mean.index, mean.values, marker=marker(head, strategy), markersize=5, label=label, **style)
            ax.fill_between(mean.index, mean - std, mean + std, color=head_colour(head), alpha=0.15)
        if floors:
            ax.axhline(sum(floors) / len(floors), color=head_colour(HeadKind.FLOOR), linestyle="--", linewidth=1,
                       label="untrained floor")  # fmt: skip
        ax.set_title(head, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("kNN top-1 (%) on the monitor's queries")
    fig.suptitle(title, fontsize=9)
    legend_outside(fig, axes)
    return save(fig, path)
