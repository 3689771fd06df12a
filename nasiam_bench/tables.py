"""Comparison tables (pandas -> Markdown and CSV) and plots from the run records, one set per dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from nasiam_bench.io import atomic_path, atomic_write_text
from nasiam_bench.results import DATASET_NOTES, load_records

FLOOR = "untrained"

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
HEAD_ORDER = {FLOOR: 0, "baseline": 1, "nasiam": 2, "random": 3, "paper": 4}
LABELS = ["profile", "recipe", "framework", "head", "strategy", "backbone", "width", "epochs", "checkpoint_selection"]
# Records written before a label existed: what it stood for then.
LABEL_DEFAULTS = {"recipe": "(none)", "checkpoint_selection": "final"}


def _mean_std(mean: float, std: float, n: int) -> str:
    if pd.isna(mean):
        return "–"
    return f"{mean:.1f}" if n < 2 else f"{mean:.1f} ± {std:.1f}"


def _column_mean_std(table: pd.DataFrame, prefix: str) -> list[str]:
    columns = (table[f"{prefix}_mean"], table[f"{prefix}_std"], table["seeds"])
    return [_mean_std(m, s, n) for m, s, n in zip(*columns, strict=True)]


def summarise(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per experiment, the head and run id (the hash of the whole resolved spec but the seed): means ± std
    over its seeds. Rows whose labels agree but whose specs do not name the keys that differ (``differs``)."""
    frame = pd.DataFrame(records)
    if "linear_top1" not in frame:  # only floors so far
        frame["linear_top1"] = float("nan")
    for label, default in LABEL_DEFAULTS.items():
        frame[label] = frame[label].fillna(default) if label in frame else default
    rows = []
    for (_, run_id), group in frame.groupby(["head", "run_id"], sort=False):
        row = {label: group[label].iloc[0] for label in LABELS}
        row.update(
            {
                "run_id": run_id,
                "seeds": int(group["seed"].nunique()),
                "knn_mean": group["knn_top1"].mean(),
                "knn_std": group["knn_top1"].std(ddof=1),
                "linear_mean": group["linear_top1"].mean(),
                "linear_std": group["linear_top1"].std(ddof=1),
                "head_params": group["head_params"].iloc[0],
                "search_device_h": group["search_device_hours"].mean(),
                "pretrain_device_h": group["pretrain_device_hours"].mean(),
                "device": ", ".join(sorted(set(group["device"]))),
            }
        )
        row["total_device_h"] = row["search_device_h"] + row["pretrain_device_h"]
        row["differs"] = ""
        rows.append(row)
    table = pd.DataFrame(rows)
    specs = {(r["head"], r["run_id"]): r.get("spec") for r in records}
    for _, same_labels in table.groupby(LABELS, sort=False):
        if len(same_labels) > 1:
            rows = list(same_labels.itertuples())
            differences = spec_differences([specs[(row.head, row.run_id)] for row in rows])
            # Specs alike but for the hash: records written by another version of the suite.
            labelled = zip(differences, rows, strict=True)
            table.loc[same_labels.index, "differs"] = [d or f"run id {r.run_id}" for d, r in labelled]
    table["_order"] = table["head"].map(HEAD_ORDER).fillna(9)
    return table.sort_values(["profile", "framework", "_order", "strategy"]).drop(columns="_order")


def _flat(spec: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    return {f"{section}.{key}": value for section, table in (spec or {}).items() for key, value in table.items()}


def spec_differences(specs: list[dict[str, dict[str, Any]] | None]) -> list[str]:
    """For each spec, ``key=value`` of every key on which the specs disagree (``seeds`` aside)."""
    flat = [_flat(s) for s in specs]
    keys = sorted({k for f in flat for k in f if not k.startswith("seeds.")})
    differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]
    return [", ".join(f"{k}={f.get(k, '–')}" for k in differing) for f in flat]


def markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table of already formatted cells (pandas' to_markdown needs tabulate for this)."""
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = [
        "| " + " | ".join("–" if pd.isna(v) else str(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *rows])


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
            "linear top-1 %": _column_mean_std(table, "linear"),
            "head params": table["head_params"].map(lambda v: "–" if pd.isna(v) else f"{int(v):,}"),
        }
    )
    for column, name in (
        ("search_device_h", "search device-h"),
        ("pretrain_device_h", "pre-train device-h"),
        ("total_device_h", "total device-h"),
    ):
        shown[name] = table[column].map("{:.4f}".format)
    shown["device"] = table["device"]
    if table["differs"].any():  # rows that would otherwise look alike
        shown["spec differs in"] = table["differs"].map(lambda v: v or "–")
    return shown


def write_tables(results: str | Path = "results") -> list[Path]:
    """Regenerate ``results/<dataset>.md``, ``.csv`` and ``_accuracy_vs_cost.png`` from every record."""
    results = Path(results)
    records = load_records(results)
    written = []
    for dataset in sorted({r["dataset"] for r in records}):
        subset = [r for r in records if r["dataset"] == dataset]
        table = summarise(subset)
        shown = presentable(table)
        csv_path = results / f"{dataset}.csv"
        with atomic_path(csv_path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        plot_path = plot_accuracy_vs_cost(table, results / f"{dataset}_accuracy_vs_cost.png", dataset)
        atomic_write_text(results / f"{dataset}.md", _document(dataset, shown, subset, plot_path.name))
        written += [results / f"{dataset}.md", csv_path, plot_path]
    return written


def _document(dataset: str, shown: pd.DataFrame, records: list[dict[str, Any]], plot: str) -> str:
    profiles = ", ".join(sorted({r["profile"] for r in records}))
    machines = "; ".join(sorted({r["device"] for r in records}))
    commits = ", ".join(sorted({r.get("git_commit", "unknown")[:12] for r in records}))
    published = pd.DataFrame(
        [p for p in PUBLISHED if p[1] == dataset],
        columns=["source", "dataset", "framework", "backbone", "protocol", "top-1 %"],
    )
    note = DATASET_NOTES.get(dataset, "")
    parts = [
        f"# {dataset}: NASiam heads against the frameworks' standard heads",
        "",
        "Measured by nasiam-bench (`make tables` regenerates this file from `results/records/`). Every head of a "
        "framework is pre-trained with the same seeds, data and schedule; `untrained` is the kNN floor of the same "
        "backbone before training. Accuracies: mean ± std over seeds (a single seed shows no std). "
        "Device-hours: wall time × devices. `checkpoint`: `final` evaluates the last epoch; `best on test` the epoch "
        "whose test kNN was the best, a figure selected on the test split (NASiam's code's protocol), optimistic by "
        "construction. The recipe names the hyperparameters (`registry/recipes/`; `(none)`: recorded before recipes).",
        "",
        markdown(shown),
        "",
        f"![kNN top-1 against device-hours]({plot})",
        "",
        f"- Profile(s): {profiles}. {_schedules(records)}",
    ]
    if note:
        parts.append(f"- Data: {note}; accuracies on it may differ slightly from the lossless original.")
    parts += [f"- Machine(s): {machines}.", f"- Code: commit(s) {commits}.", ""]
    if not published.empty:
        parts += [
            "## Published figures (not measured here: other schedules and protocols)",
            "",
            markdown(published),
            "",
        ]
    return "\n".join(parts)


def _schedules(records: list[dict[str, Any]]) -> str:
    """What each reduced profile trained, read from the records themselves."""
    lines = []
    for profile in sorted({r["profile"] for r in records} - {"paper"}):
        r = next(r for r in records if r["profile"] == profile)
        images = f"a {r['train_subset']:,}-image subset" if r.get("train_subset") else "the whole training split"
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
    """kNN top-1 against total device-hours, one point per head and framework (the floor as a dashed line)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    markers = {"baseline": "o", "nasiam": "*", "random": "^", "paper": "s"}
    trained = table[table["head"] != FLOOR]
    colours = {fw: f"C{i}" for i, fw in enumerate(sorted(set(table["framework"])))}
    for row in trained.itertuples(index=False):
        ax.scatter(
            row.total_device_h,
            row.knn_mean,
            marker=markers.get(row.head, "x"),
            s=90,
            color=colours[row.framework],
            label=f"{row.framework} {row.head}",
        )
    for row in table[table["head"] == FLOOR].itertuples(index=False):
        ax.axhline(
            row.knn_mean,
            color=colours[row.framework],
            linestyle="--",
            linewidth=1,
            label=f"{row.framework} untrained floor",
        )
    ax.set_xlabel("device-hours (search + pre-training)")
    ax.set_ylabel("kNN top-1 (%)")
    ax.set_title(f"{dataset}: accuracy against cost")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
