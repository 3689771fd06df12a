"""The README's headline table, made from the records by ``make tables`` (never typed): per framework, the heads a
``make bench`` of the profile and recipe trains today (the records whose spec is the one the catalogue gives now),
kNN top-1 mean ± std over seeds, and each head's paired difference to the baseline with its verdict."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from nasiam_bench.config.heads import HeadKind
from nasiam_bench.config.spec import bench_spec
from nasiam_bench.core.io import atomic_write_text
from nasiam_bench.core.machine import machine_kind
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.report.tables import markdown, presentable, summarise
from nasiam_bench.store.results import DATASET_NOTES, load_records, spec_differences

START, END = "<!-- headline:start (make tables writes it) -->", "<!-- headline:end -->"
COLUMNS = {
    HeadKind.BASELINE: "baseline",
    "nasiam": "NASiam ({strategy})",
    "random": "random genotype",
    "paper": "paper's genotype",
}
# What a head's row may differ in from today's bench spec and still be today's row: the head itself, and the
# search settings for the heads that are not searched.
HEAD_KEYS = ("experiment.head", "experiment.strategy")


def headline(results: str | Path, dataset: str = "cifar10", profile: str = "quick", recipe: str = "reference",
             strategy: str = "darts") -> str:  # fmt: skip
    """The headline table as markdown, with the line that names its recipe, data, seeds and machines."""
    records = [r for r in load_records(results) if r["dataset"] == dataset and _current(r, profile, recipe, strategy)]
    if not records:
        return f"(no records of `{profile}` / `{recipe}` on {dataset} yet: `make bench` makes them)"
    shown = presentable(summarise(records))
    rows = [_row(framework, group, strategy) for framework, group in shown.groupby("framework", sort=True)]
    seeds = sorted({r["seed"] for r in records})
    machines = sorted({machine_kind(r.get("machine")) for r in records})
    return "\n".join(
        [
            f"kNN top-1 % on the {dataset} test set (mean ± std over seeds {', '.join(map(str, seeds))}), and each"
            " head's paired difference to the baseline of the same seed [95% Student-t interval] with its verdict."
            f" Profile `{profile}`, recipe `{recipe}`, {DATASET_NOTES.get(dataset, dataset)}; machines:"
            f" {', '.join(machines)}. From `results/records/` by `make tables`; every row and column in"
            f" `results/{dataset}.md`.",
            "",
            markdown(pd.DataFrame(rows)),
        ]
    )


def _current(record: dict[str, Any], profile: str, recipe: str, strategy: str) -> bool:
    """Whether a record is of the spec ``make bench`` gives its head today (the catalogue's, at the profile)."""
    head = record["head"]
    if head not in (HeadKind.FLOOR, *COLUMNS) or (head == "nasiam" and record.get("strategy") != strategy):
        return False
    spec = record.get("spec") or {}
    if spec.get("experiment", {}).get("profile", profile) != profile:
        return False
    try:
        today = bench_spec(record["framework"], record["dataset"], [f"profile={profile}", f"recipe={recipe}"])
    except NasiamBenchError:
        return False  # a framework or dataset no longer registered
    difference = spec_differences([spec, today.to_dict()])[0]
    ignored = HEAD_KEYS if head == "nasiam" else (*HEAD_KEYS, "search.")
    return all(key.startswith(ignored) for key in re.findall(r"(?:^|, )([a-z_]+\.[a-z_0-9]+)=", difference))


def _row(framework: str, shown: pd.DataFrame, strategy: str) -> dict[str, str]:
    row = {"framework": framework}
    by_head = {head: rows.iloc[0] for head, rows in shown.groupby("head")}
    for head, column in {**COLUMNS, HeadKind.FLOOR: "untrained floor"}.items():
        found = by_head.get(head)
        row[column.format(strategy=strategy)] = "–" if found is None else _cell(found, head)
    return row


def _cell(row: pd.Series, head: str) -> str:
    accuracy = row["kNN top-1 %"]
    if head in (HeadKind.BASELINE, HeadKind.FLOOR):
        return accuracy
    return f"{accuracy}, Δ {row['kNN Δ vs baseline [95% CI]']}: {row['kNN verdict']}"


def write_headline(readme: str | Path, results: str | Path) -> Path:
    """Replace the block between the README's headline markers with the table made now."""
    before, after = readme_parts(readme)
    atomic_write_text(readme, f"{before}{START}\n{headline(results)}\n{END}{after}")
    return Path(readme)


def readme_parts(readme: str | Path) -> tuple[str, str]:
    """The README's text before its headline block and after it; a README without the markers is refused."""
    try:
        text = Path(readme).read_text()
    except OSError as exc:
        raise NasiamBenchError(f"--readme {readme}: {exc.strerror or exc}") from exc
    if START not in text or END not in text:
        raise NasiamBenchError(f"--readme {readme}: no headline markers to write the table between ({START} ... {END})")
    before, rest = text.split(START, 1)
    return before, rest.split(END, 1)[1]
