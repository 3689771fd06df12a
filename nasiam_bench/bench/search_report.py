"""Compare searches: variants of one spec (a flag, a recipe, a strategy), each searched with several seeds, side by
side: the genotypes found, the share of parameter-free ops in them, the final softmax(alpha) of every layer
(mean over seeds) and the search's cost. ``nasiam-bench searches`` runs what is missing and writes the report."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasiam_bench.config.spec import Spec, SpecError, load_spec, parse_override
from nasiam_bench.core.io import atomic_write_text
from nasiam_bench.models.heads.genotype import load_genotype
from nasiam_bench.models.heads.ops import PARAMETER_FREE_OPS
from nasiam_bench.report.strategy_table import parameter_free_share
from nasiam_bench.report.tables import markdown
from nasiam_bench.search.decision import DECIDED_EPOCHS, DECIDED_MARGIN, by_epoch
from nasiam_bench.search.run import run_search
from nasiam_bench.store.layout import SEARCH_SUMMARY, default_search_dir
from nasiam_bench.store.results import git_commit, write_search_record


@dataclass(frozen=True)
class Variant:
    label: str
    spec: Spec


def parse_variant(text: str, spec: str, overrides: list[str]) -> Variant:
    """``LABEL:key=value,key=value`` (or ``LABEL:`` for the spec as given) on top of ``overrides``."""
    label, sep, extra = text.partition(":")
    if not sep or not label.strip():
        raise SpecError(f"--variant {text!r}: expected LABEL:key=value[,key=value...], e.g. 'quirk:search.lr=0.1'")
    more = [o for o in extra.split(",") if o.strip()]
    for override in more:
        parse_override(override)
    return Variant(label.strip(), load_spec(spec, [*overrides, *more]))


def run_variants(
    variants: list[Variant],
    seeds: list[int],
    runs: str | Path,
    device: str = "auto",
    progress: bool = True,
    results: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Search every variant with every seed (finished searches are read back, interrupted ones resume); with
    ``results``, each search's record is kept there too."""
    rows = []
    for variant in variants:
        for seed in seeds:
            out = default_search_dir(variant.spec, seed, runs)
            print(f"{variant.label}, seed {seed}: {out}", flush=True)
            result, genotype_file = run_search(variant.spec, seed, out, device=device, progress=progress)
            if genotype_file is None:
                raise SpecError(f"variant {variant.label!r}: strategy 'none' searches nothing to compare")
            summary = json.loads((out / SEARCH_SUMMARY).read_text())
            if results is not None:
                write_search_record(results, variant.spec, seed, summary)
            rows.append(
                {
                    "variant": variant.label,
                    "seed": seed,
                    "genotype": result.genotype,
                    "alpha": load_genotype(genotype_file).alpha,
                    "seconds": result.seconds,
                    "device": summary.get("device", "?"),
                    "profile": variant.spec.experiment.profile,
                    "folder": out,
                }
            )
    return rows


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def _genotype_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "variant": r["variant"],
                "seed": r["seed"],
                "head": head,
                "genotype (layer 0 →)": ", ".join(ops),
                "parameter-free ops": f"{sum(op in PARAMETER_FREE_OPS for op in ops)}/{len(ops)}",
                "search s": f"{r['seconds']:.0f}",
            }
            for r in rows
            for head, ops in r["genotype"].items()
        ]
    )


def _alpha_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean over seeds of the final softmax(alpha), a row per variant, head and layer, a column per op."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        for head, first in mine[0]["alpha"].items():
            final = np.mean([r["alpha"][head]["final"] for r in mine], axis=0)  # [layers, ops]
            for layer, weights in enumerate(final):
                row = {"variant": variant, "head": head, "layer": layer}
                row.update({op: f"{w:.3f}" for op, w in zip(first["ops"], weights, strict=True)})
                row["argmax"] = first["ops"][int(np.argmax(weights))]
                out.append(row)
    return pd.DataFrame(out)


def _decision_section(rows: list[dict[str, Any]]) -> list[str]:
    """Per variant and seed, after each epoch (of a schedule set for the whole search): the share of decided layers
    (``search.decision``), and the share of layers whose op agrees with the first variant's for the same seed."""
    first = rows[0]["variant"]
    reference = {r["seed"]: r["alpha"] for r in rows if r["variant"] == first}
    table = []
    for r in rows:
        if not r["alpha"]:
            continue
        other = reference.get(r["seed"]) if r["variant"] != first else None
        for row in by_epoch(r["alpha"], other):
            table.append({"variant": r["variant"], "seed": r["seed"], **row})
    if not table:
        return []
    frame = pd.DataFrame(table)
    shown = frame.groupby(["variant", "epoch"], sort=False).mean(numeric_only=True).drop(columns="seed").reset_index()
    for column in [c for c in ("decided", "agreement") if c in shown]:
        shown[column] = shown[column].map(lambda v: "–" if pd.isna(v) else f"{v:.0%}")
    if "agreement" in shown:
        shown = shown.rename(columns={"agreement": f"agrees with {first}"})
    threshold = f"margin >= {DECIDED_MARGIN:g} and the argmax held over the last {DECIDED_EPOCHS} epochs"
    return [
        "## Decided layers and agreement by epoch (mean over seeds)",
        "",
        f"Decided: {threshold}. Each epoch's row reads the search's α after that epoch of its own schedule.",
        "",
        markdown(shown),
    ]


def write_report(rows: list[dict[str, Any]], path: str | Path, title: str, command: str) -> Path:
    """The Markdown report, with each search's alpha heatmap copied beside it (``plots/``)."""
    path = Path(path)
    made = f"Made by the code at commit {git_commit()}, {', '.join(sorted({r['profile'] for r in rows}))} profile"
    lines = [f"# {title}", "", f"Regenerate: `{command}`", "", made, "", "## Genotypes", ""]
    lines += [markdown(_genotype_table(rows)), *_parameter_free_lines(rows), "", *_decision_section(rows)]
    lines += ["", "## Final softmax(α) per layer, mean over seeds", "", markdown(_alpha_table(rows)), ""]
    lines += ["## α over the search", "", *_heatmap_lines(rows, path)]
    devices = "; ".join(sorted({r["device"] for r in rows}))
    lines += ["", f"Device: {devices}. Search seconds are wall time on it.", ""]
    atomic_write_text(path, "\n".join(lines))
    return path


def _parameter_free_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The share of parameter-free ops per genotype, per variant over its seeds."""
    summary = (
        pd.DataFrame([{"variant": r["variant"], "share": parameter_free_share(r["genotype"])} for r in rows])
        .groupby("variant", sort=False)["share"]
        .agg(["mean", "min", "max", "count"])
    )
    lines = ["", "Share of parameter-free ops (identity, avgpool_3x3, maxpool_3x3) per genotype:", ""]
    for variant, s in summary.iterrows():
        lines.append(
            f"- {variant}: mean {s['mean']:.2f} (min {s['min']:.2f}, max {s['max']:.2f}) over {int(s['count'])} seeds"
        )
    return lines


def _heatmap_lines(rows: list[dict[str, Any]], path: Path) -> list[str]:
    """Each search's alpha heatmap, copied into ``plots/`` beside the report, as a list of links."""
    plots = path.parent / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    lines = []
    for r in rows:
        name = f"{path.stem}_{_slug(r['variant'])}_seed{r['seed']}.png"
        shutil.copyfile(r["folder"] / "alpha.png", plots / name)
        lines.append(f"- {r['variant']}, seed {r['seed']}: ![α]({plots.name}/{name})")
    return lines
