"""The ground-truth report, regenerated from the records: how the sampled heads' accuracies spread against seed
noise, where the baseline, the paper's genotype and every committed search's picks fall, how well each label-free
measure, proxy and supernet (its final softmax(alpha)) ranks the sample, what the ops contribute, and the regret of
query strategies run against the table. Written to ``results/ground_truth/<framework>_<profile>.md`` with a CSV
(one row per genotype) and plots beside it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nasiam_bench.config.spec import Spec, spec_from_dict
from nasiam_bench.core.io import atomic_path, atomic_write_text
from nasiam_bench.core.machine import machine_kind
from nasiam_bench.core.registry import QUERY_STRATEGIES
from nasiam_bench.eval.label_free import MEASURES
from nasiam_bench.groundtruth import plan
from nasiam_bench.groundtruth.queries import regret_curves
from nasiam_bench.groundtruth.table import BASELINE, METRICS, GroundTruth
from nasiam_bench.models.heads.genotype import ops_head, parse_ops_head
from nasiam_bench.models.heads.ops import PARAMETER_FREE_OPS
from nasiam_bench.report.stats import icc_oneway, rank_correlations
from nasiam_bench.report.tables import markdown
from nasiam_bench.store.identity import comparison_id
from nasiam_bench.store.results import DATASET_NOTES, load_search_records

PREDICTORS = (*MEASURES, "head_params")
LABELS = {"knn_top1": "kNN", "linear_top1": "linear"}
QUERY_BUDGET, QUERY_REPEATS = 50, 50
BOOTSTRAP = 2000  # resamples of every rank correlation's interval
SHOWN_QUERIES = (1, 5, 10, 20, 50)


def write_report(results: str | Path, spec: Spec, size: int, seed: int, command: str) -> Path:
    """Regenerate the report of ``spec``'s ground truth (its sample: ``size`` genotypes drawn with ``seed``)."""
    results = Path(results)
    e = spec.experiment
    truth = GroundTruth.load(results, spec)
    sample = [ops_head(g) for g in plan.sample(spec, size, seed)]
    means = truth.means(sample)
    folder = results / "ground_truth"
    stem = f"{e.framework}_{e.profile}"
    picks = _picks(spec, results, truth)
    supernets = _supernets(spec, results, means)
    sections = [
        _header(spec, truth, sample, means, command, stem),
        _distribution(truth, means, picks),
        _spread(truth, sample),
        _predictors(means),
        _supernet_section(supernets),
        _regret(means, picks),
        _ops(means),
        _queries(truth, means, folder / f"{stem}_regret.png"),
        _machines(truth, results, spec, sample),
        _answers(truth, sample, means, picks, supernets),
    ]
    _plot_ecdf(truth, means, picks, folder / f"{stem}_ecdf.png")
    _write_csv(truth, sample, means, folder / f"{stem}.csv")
    path = folder / f"{stem}.md"
    atomic_write_text(path, "\n\n".join(sections) + "\n")
    return path


# ----------------------------------------------------------------------------------------------------- the parts


def _percentile(values: pd.Series, value: float) -> float:
    """The share of ``values`` below ``value`` (ties count half), in percent."""
    v = values.to_numpy()
    return 100.0 * ((v < value).sum() + 0.5 * (v == value).sum()) / len(v)


def _picks(spec: Spec, results: Path, truth: GroundTruth) -> pd.DataFrame:
    """Each committed search's pick (strategy, search id, its search's epochs, seed) with its genotype's mean over
    the ground truth's seeds; searches of one strategy and epochs are one row group."""
    rows = []
    for p in plan.committed_picks(spec, results):
        key = ops_head(p["genotype"])
        found = truth.lookup(key)
        rows.append(
            {
                "strategy": p["strategy"],
                "search_id": p["search_id"],
                "search": _search_label(p),
                "seed": p["seed"],
                "key": key,
                **{m: np.mean([r[m] for r in found.values()]) if len(found) >= 2 else math.nan for m in METRICS},
            }
        )
    return pd.DataFrame(rows, columns=["strategy", "search_id", "search", "seed", "key", *METRICS])


def _search_label(pick: dict[str, Any]) -> str:
    again = "" if pick["found"] == "its head's record" else f", {pick['found']}"
    return f"{pick['strategy']} ({pick['search_id']}{again})"


def _header(spec: Spec, truth: GroundTruth, sample: list[str], means: pd.DataFrame, command: str, stem: str) -> str:
    e = spec.experiment
    seeds = sorted(truth.runs["seed"].unique())
    trained = truth.runs[truth.runs["key"].isin(sample)]
    machines = truth.runs.groupby("machine").size()
    return "\n".join(
        [
            f"# Ground truth: {e.framework}'s head space at the `{e.profile}` profile",
            "",
            f"Regenerated from the run records by `{command}`. Every head is pre-trained as a bench run (the "
            f"`{e.profile}` profile, the `{e.recipe}` recipe, {e.backbone} at width {e.width}, {e.dataset}: "
            f"{DATASET_NOTES.get(e.dataset, e.dataset)}) with the same seeds, data and schedule; accuracies are "
            f"top-1 % on the test split, a genotype's value is its mean over seeds {', '.join(map(str, seeds))}.",
            "",
            f"- The sample: {len(sample)} distinct genotypes drawn uniformly from the "
            f"{plan.space_size(spec):,} of the space; {len(means)} have both seeds, {len(trained)} of "
            f"{2 * len(sample)} sample runs are done.",
            "- Machines: " + "; ".join(f"{kind}: {n} runs" for kind, n in machines.items()) + ".",
            f"- Files: `{stem}.csv` (one row per genotype), `{stem}_ecdf.png`, and `{stem}_regret.png` once 10 "
            f"sampled genotypes have every seed.",
        ]
    )


def _distribution(truth: GroundTruth, means: pd.DataFrame, picks: pd.DataFrame) -> str:
    lines = ["## Distribution over the sample", ""]
    if means.empty:
        return "\n".join([*lines, "No sampled genotype has both seeds yet."])
    quantiles = [0.0, 0.1, 0.5, 0.9, 1.0]
    rows = [
        {"metric": LABELS[m], **{f"{int(q * 100)}%": f"{means[m].quantile(q):.2f}" for q in quantiles}} for m in METRICS
    ]
    lines += [markdown(pd.DataFrame(rows)), ""]
    floor = truth.floor["knn_top1"].mean() if not truth.floor.empty else math.nan
    lines.append(f"The untrained floor (kNN): {floor:.2f}. Where the named heads fall (percentile in the sample):")
    lines += ["", markdown(pd.DataFrame(_placed(truth, means, picks)))]
    return "\n".join(lines)


def _placed(truth: GroundTruth, means: pd.DataFrame, picks: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for name, key in (("baseline", BASELINE), ("paper", _paper_key(truth))):
        found = truth.lookup(key) if key else {}
        if len(found) >= 2:
            rows.append(
                _place(name, "–", sorted(found), {m: np.mean([r[m] for r in found.values()]) for m in METRICS}, means)
            )
    for _, p in picks.iterrows():
        rows.append(_place(p["search"], str(p["seed"]), [], p, means))
    return rows


def _place(name: str, seed: str, seeds: list[int], values, means: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {"head": name, "search seed": seed}
    for m in METRICS:
        v = values[m]
        row[LABELS[m]] = "–" if pd.isna(v) else f"{v:.2f}"
        row[f"{LABELS[m]} percentile"] = "–" if pd.isna(v) else f"{_percentile(means[m], v):.0f}"
    return row


def _paper_key(truth: GroundTruth) -> str | None:
    heads = truth.runs.loc[truth.runs["head"] == "paper", "key"]
    return heads.iloc[0] if len(heads) else None


def _by_seed(truth: GroundTruth, keys: list[str], metric: str) -> np.ndarray:
    """[genotypes, seeds] of ``metric`` for the keys with every seed."""
    runs = truth.runs[truth.runs["key"].isin(keys)]
    wide = runs.pivot(index="key", columns="seed", values=metric).dropna()
    return wide.to_numpy(dtype=float)


def _spread(truth: GroundTruth, sample: list[str]) -> str:
    lines = [
        "## Spread between genotypes against seed noise",
        "",
        "ICC(1): the share of the accuracies' variance that lies between genotypes rather than between the seeds of "
        "one genotype (F interval, Shrout and Fleiss). Split-seed Kendall τ: seed 0's ranking of the sample against "
        "seed 1's, the ceiling any predictor of one seed's accuracy can reach (bootstrap interval over genotypes).",
        "",
    ]
    rows = []
    for m in METRICS:
        values = _by_seed(truth, sample, m)
        if len(values) < 3 or values.shape[1] < 2:
            continue
        tau = rank_correlations(values[:, 0], values[:, 1], BOOTSTRAP)["tau"]
        noise = np.sqrt(
            ((values - values.mean(axis=1, keepdims=True)) ** 2).sum() / (len(values) * (values.shape[1] - 1))
        )
        rows.append(
            {
                "metric": LABELS[m],
                "genotypes": len(values),
                "ICC [95% CI]": str(icc_oneway(values)),
                "split-seed τ [95% CI]": str(tau),
                "sd of genotype means": f"{values.mean(axis=1).std(ddof=1):.2f}",
                "sd of seed noise": f"{noise:.2f}",
            }
        )
    return "\n".join([*lines, markdown(pd.DataFrame(rows)) if rows else "Too few genotypes with both seeds yet."])


def _predictors(means: pd.DataFrame) -> str:
    lines = [
        "## Predictors of the ground truth",
        "",
        "Kendall τ and Spearman ρ of each label-free measure (after training), zero-cost proxy (at initialisation) "
        "and the head's parameter count against the genotypes' mean accuracy, with 95% bootstrap intervals over "
        "genotypes (means over the seeds for every column). A loss predicts well with a negative τ.",
        "",
    ]
    rows = []
    for predictor in PREDICTORS:
        usable = means[[predictor, *METRICS]].dropna()
        row: dict[str, Any] = {"predictor": predictor, "genotypes": len(usable)}
        for m in METRICS:
            found = rank_correlations(usable[predictor], usable[m], BOOTSTRAP)
            row[f"τ vs {LABELS[m]}"], row[f"ρ vs {LABELS[m]}"] = str(found["tau"]), str(found["rho"])
        rows.append(row)
    return "\n".join([*lines, markdown(pd.DataFrame(rows))])


def _supernets(spec: Spec, results: Path, means: pd.DataFrame) -> pd.DataFrame:
    """Per committed gradient search with its final softmax(alpha): the τ of its genotype scores (the sum over
    layers of log softmax(alpha) of each op) against the sample's mean accuracies."""
    wanted = comparison_id(spec.replace(head="baseline"))
    rows = []
    for r in load_search_records(results):
        searched = spec_from_dict(r["spec"], where=f"search record {r['search_id']}")
        if not r.get("alpha") or comparison_id(searched.replace(head="baseline")) != wanted:
            continue
        scores = pd.Series({k: _alpha_score(r["alpha"], parse_ops_head(k)) for k in means.index})
        row = {"search": f"{r['strategy']} ({r['search_id']})", "seed": r["seed"], "machine": _kind(r)}
        row["decided"] = (r.get("decision") or {}).get("decided_share", math.nan)
        for m in METRICS:
            row[f"τ vs {LABELS[m]}"] = (
                rank_correlations(scores, means[m], BOOTSTRAP)["tau"] if len(means) >= 3 else None
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _kind(record: dict[str, Any]) -> str:
    return machine_kind(record.get("machine"))


def _alpha_score(alpha: dict[str, Any], genotype: dict[str, list[str]]) -> float:
    return float(
        sum(
            math.log(alpha[h]["final"][i][alpha[h]["ops"].index(op)])
            for h, ops in genotype.items()
            for i, op in enumerate(ops)
        )
    )


def _supernet_section(supernets: pd.DataFrame) -> str:
    lines = [
        "## The supernet's own ranking",
        "",
        "For each committed gradient search run again for its final softmax(α) (the records under "
        "`results/searches/`), each sampled genotype scored by the sum over its layers of log softmax(α) of its op: "
        "the weight-sharing ranking, against the truth (Kendall τ, 95% bootstrap interval). `decided`: the share of "
        "its layers decided at the search's end.",
        "",
    ]
    if supernets.empty:
        return "\n".join([*lines, "No search record with its final α for this comparison yet."])
    shown = supernets.assign(
        **{c: supernets[c].map(lambda t: str(t) if t else "–") for c in supernets if c.startswith("τ")}
    )
    shown["decided"] = shown["decided"].map(lambda v: "–" if pd.isna(v) else f"{v:.0%}")
    return "\n".join([*lines, markdown(shown)])


def _regret(means: pd.DataFrame, picks: pd.DataFrame) -> str:
    lines = [
        "## Regret of the committed picks",
        "",
        "The best mean accuracy of the sample minus the pick's (its genotype trained with the ground truth's seeds), "
        "per strategy and search: mean over its seeds' picks, and the picks' percentiles in the sample.",
        "",
    ]
    if means.empty or picks.empty:
        return "\n".join([*lines, "Nothing to compare yet."])
    rows = []
    for search, group in picks.groupby("search", sort=False):
        row: dict[str, Any] = {"search": search, "picks": len(group)}
        for m in METRICS:
            done = group[m].dropna()
            row[f"{LABELS[m]} regret"] = f"{(means[m].max() - done).mean():.2f}" if len(done) else "–"
            row[f"{LABELS[m]} percentiles"] = ", ".join(f"{_percentile(means[m], v):.0f}" for v in done) or "–"
        rows.append(row)
    return "\n".join([*lines, markdown(pd.DataFrame(rows))])


def _ops(means: pd.DataFrame) -> str:
    lines = ["## What the ops contribute", ""]
    if len(means) < 10:
        return "\n".join([*lines, "Too few genotypes yet."])
    genotypes = [parse_ops_head(k) for k in means.index]
    layers = [(h, i) for h, ops in genotypes[0].items() for i in range(len(ops))]
    table = pd.DataFrame([[g[h][i] for h, i in layers] for g in genotypes], columns=[f"{h}[{i}]" for h, i in layers])
    lines.append(
        "Mean effect of each op at each layer: the mean kNN accuracy of the sampled genotypes with that op there, "
        "minus the sample's mean (n in brackets), and the R² of an additive model (one effect per layer and op, "
        "least squares, adjusted for its parameters) of kNN and linear accuracy."
    )
    knn = means["knn_top1"].to_numpy()
    effects = {
        column: {
            op: f"{knn[table[column] == op].mean() - knn.mean():+.2f} ({(table[column] == op).sum()})"
            for op in sorted(set(table[column]))
        }
        for column in table
    }
    lines += ["", markdown(pd.DataFrame(effects).rename_axis("op").reset_index())]
    fits = ", ".join(f"{LABELS[m]} R² {_r2(table, means[m].to_numpy())}" for m in METRICS)
    lines += ["", f"Additive model: {fits}.", "", _parameter_free(table, knn)]
    return "\n".join(lines)


def _r2(table: pd.DataFrame, y: np.ndarray) -> str:
    x = pd.get_dummies(table, drop_first=True).to_numpy(dtype=float)
    x = np.column_stack([np.ones(len(x)), x])
    fitted = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    r2 = 1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    p = x.shape[1] - 1
    adjusted = 1 - (1 - r2) * (len(y) - 1) / (len(y) - p - 1) if len(y) > p + 1 else math.nan
    return f"{r2:.2f} (adjusted {adjusted:.2f})"


def _parameter_free(table: pd.DataFrame, knn: np.ndarray) -> str:
    free = table.isin(PARAMETER_FREE_OPS).to_numpy()
    top = knn >= np.quantile(knn, 0.9)
    return (
        f"Parameter-free ops ({', '.join(PARAMETER_FREE_OPS)}) hold {free[top].mean():.0%} of the layers of the best "
        f"tenth by kNN ({top.sum()} genotypes) against {free.mean():.0%} of all sampled layers."
    )


def _queries(truth: GroundTruth, means: pd.DataFrame, plot_path: Path) -> str:
    lines = [
        "## Query strategies against the table",
        "",
        f"Each registered query strategy run {QUERY_REPEATS} times (seeds 0-{QUERY_REPEATS - 1}) on the sampled "
        "genotypes with both seeds, seeing one random seed's kNN accuracy per query; regret: the best mean kNN of "
        "the table minus the mean of the genotype it saw do best. Mean [10th-90th percentile] after n queries.",
        "",
    ]
    if len(means) < 10:
        return "\n".join([*lines, "Too few genotypes yet."])
    curves = _curves(truth, means)
    rows = []
    for name, c in curves.items():
        row = {"strategy": name}
        for n in SHOWN_QUERIES:
            if n <= c.shape[1]:
                low, high = np.quantile(c[:, n - 1], [0.1, 0.9])
                row[f"n={n}"] = f"{c[:, n - 1].mean():.2f} [{low:.2f}, {high:.2f}]"
        rows.append(row)
    _plot_regret(curves, plot_path)
    return "\n".join([*lines, markdown(pd.DataFrame(rows))])


def _curves(truth: GroundTruth, means: pd.DataFrame) -> dict[str, np.ndarray]:
    keys = list(means.index)
    ops = {k: tuple(op for ops in parse_ops_head(k).values() for op in ops) for k in keys}
    runs = truth.runs[truth.runs["key"].isin(keys)]
    seeds = {k: g["knn_top1"].to_numpy(dtype=float) for k, g in runs.groupby("key")}
    budget = min(QUERY_BUDGET, len(keys))
    return {
        name: regret_curves(name, ops, seeds, means[list(MEASURES[:3])], budget, QUERY_REPEATS)
        for name in QUERY_STRATEGIES.list()
    }


def _machines(truth: GroundTruth, results: Path, spec: Spec, sample: list[str]) -> str:
    """Runs trained again on another machine (``groundtruth --machine-check``) against the table's: a kind of
    machine rounds its own way, so the same genotype and seed may train to other accuracies there."""
    lines = [
        "## The machine's effect",
        "",
        "The same genotypes and seeds trained again with `groundtruth --machine-check N` (records under "
        "`ground_truth/machines/<kind>/`), against the table's runs: |Δ| of each pair, and the seed noise for scale.",
        "",
    ]
    pairs = []
    for folder in sorted((results / "ground_truth" / "machines").glob("*")):
        again = GroundTruth.load(folder, spec).runs
        joined = again.merge(truth.runs, on=["key", "seed"], suffixes=("_again", ""))
        for (kind, here), group in joined.groupby(["machine_again", "machine"]):
            row = {"re-run on": kind, "table's runs on": here, "pairs": len(group)}
            for m in METRICS:
                diff = (group[f"{m}_again"] - group[m]).abs()
                row[f"{LABELS[m]} mean |Δ|"], row[f"{LABELS[m]} max |Δ|"] = f"{diff.mean():.2f}", f"{diff.max():.2f}"
            pairs.append(row)
    if not pairs:
        return "\n".join([*lines, "No run was trained again on another machine yet."])
    noise = _by_seed(truth, sample, "knn_top1")
    scale = f"{np.abs(noise[:, 0] - noise[:, 1]).mean():.2f}" if len(noise) else "–"
    lines += [
        markdown(pd.DataFrame(pairs)),
        "",
        f"For scale: two seeds of one sampled genotype differ by {scale} kNN on average.",
    ]
    return "\n".join(lines)


def _answers(
    truth: GroundTruth, sample: list[str], means: pd.DataFrame, picks: pd.DataFrame, supernets: pd.DataFrame
) -> str:
    lines = ["## What the ground truth says", ""]
    values = _by_seed(truth, sample, "knn_top1")
    if len(values) < 10:
        return "\n".join([*lines, "Too few genotypes with both seeds to say anything yet."])
    icc = icc_oneway(values)
    spread = "differ beyond seed noise" if icc.low > 0 else "do not differ detectably beyond seed noise"
    lines.append(
        f"- (a) Is there anything to find? The sampled heads {spread}: ICC(kNN) {icc} over {icc.n} genotypes "
        f"(Spread section); their means span {means['knn_top1'].min():.2f}-{means['knn_top1'].max():.2f} kNN."
    )
    lines.append("- (b) Does the search's signal find the good ones? " + _signal(supernets, picks, means))
    decided = supernets["decided"].dropna() if not supernets.empty else pd.Series(dtype=float)
    lines.append(
        "- (c) Is the search too short to decide? "
        + (
            f"The searches run again decide {decided.mean():.0%} of their layers on average (supernet section)."
            if len(decided)
            else "No search record with its α yet."
        )
    )
    return "\n".join(lines)


def _signal(supernets: pd.DataFrame, picks: pd.DataFrame, means: pd.DataFrame) -> str:
    if supernets.empty:
        return "No search's α recorded yet (supernet section)."
    taus = [t for t in supernets["τ vs kNN"] if t is not None and t.n]
    covering = sum(t.low <= 0 <= t.high for t in taus)
    done = picks.dropna(subset=["knn_top1"])
    median = np.median([_percentile(means["knn_top1"], v) for v in done["knn_top1"]]) if len(done) else math.nan
    return (
        f"of {len(taus)} searches' α rankings of the sample, {covering} have a τ against kNN whose interval covers 0 "
        f"(supernet section); the committed picks trained so far sit at a median percentile of {median:.0f} of the "
        f"sample by kNN (regret section)."
    )


# ----------------------------------------------------------------------------------------------------- files


def _write_csv(truth: GroundTruth, sample: list[str], means: pd.DataFrame, path: Path) -> None:
    runs = truth.runs.pivot_table(index="key", columns="seed", values=list(METRICS))
    runs.columns = [f"{m}_seed{s}" for m, s in runs.columns]
    table = truth.means(seeds=1).join(runs).assign(in_sample=lambda t: t.index.isin(sample))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        table.sort_index().to_csv(tmp, float_format="%.6g")


def _plot_ecdf(truth: GroundTruth, means: pd.DataFrame, picks: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    from nasiam_bench.core.figures import save
    from nasiam_bench.report.plots import strategy_colour

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, m in zip(axes, METRICS, strict=True):
        values = np.sort(means[m].to_numpy()) if not means.empty else np.array([])
        ax.step(
            values, np.arange(1, len(values) + 1) / max(len(values), 1), where="post", color="black", label="sample"
        )
        if m == "knn_top1" and not truth.floor.empty:
            ax.axvline(truth.floor["knn_top1"].mean(), color="grey", ls=":", label="untrained floor")
        baseline = truth.lookup(BASELINE)
        if baseline:
            ax.axvline(np.mean([r[m] for r in baseline.values()]), color="C0", ls="--", label="baseline")
        for strategy, group in picks.dropna(subset=[m]).groupby("strategy") if not means.empty else ():
            y = [_percentile(means[m], v) / 100 for v in group[m]]
            ax.scatter(group[m], y, color=strategy_colour(strategy), label=f"{strategy} picks", zorder=3, s=18)
        ax.set_xlabel(f"{LABELS[m]} top-1 % (mean over seeds)")
        ax.set_ylabel("share of the sample at or below")
    axes[-1].legend(fontsize=7, loc="lower right")
    save(fig, path)


def _plot_regret(curves: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib.pyplot as plt

    from nasiam_bench.core.figures import save

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        n = np.arange(1, c.shape[1] + 1)
        ax.plot(n, c.mean(axis=0), label=name)
        ax.fill_between(n, *np.quantile(c, [0.1, 0.9], axis=0), alpha=0.15)
    ax.set_xlabel("queries")
    ax.set_ylabel("regret, kNN points")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    save(fig, path)
