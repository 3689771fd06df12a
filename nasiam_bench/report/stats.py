"""Paired comparisons of heads: per-seed differences to the baseline, a Student-t interval over seeds, a verdict.

Every head of a comparison is pre-trained with the same seeds, data order and initialisation as the baseline, so
the unit of evidence is the difference of one seed's head to the same seed's baseline; the spread of those
differences, not of the accuracies, says how sure a claim is.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
MIN_SEEDS = 3  # below this a t interval is too wide to mean anything: no verdict
BETTER, WORSE, NO_DIFFERENCE, NOT_APPLICABLE = "better", "worse", "no difference detected", "n/a"


@dataclass(frozen=True)
class PairedDifference:
    """Mean of head - baseline over ``n`` paired seeds with its ``confidence`` interval [low, high]."""

    n: int
    mean: float
    low: float
    high: float
    verdict: str
    left_out: int = 0  # the head's seeds with two reference runs of different run ids: paired with neither

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_difference(
    head: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> PairedDifference:
    """Compare ``head[i]`` with ``baseline[i]`` (the same seed); the interval is Student's t over the differences.

    The verdict is ``better`` or ``worse`` when the interval excludes 0, ``no difference detected`` when it covers
    0 (an interval touching 0 covers it), and ``n/a`` below ``MIN_SEEDS`` pairs.
    """
    if len(head) != len(baseline):
        raise ValueError(f"paired samples differ in length: {len(head)} head values, {len(baseline)} baseline values")
    diffs = np.asarray(head, dtype=float) - np.asarray(baseline, dtype=float)
    n = len(diffs)
    if n == 0:
        return PairedDifference(0, math.nan, math.nan, math.nan, NOT_APPLICABLE)
    mean = float(diffs.mean())
    if n < 2:
        return PairedDifference(n, mean, math.nan, math.nan, NOT_APPLICABLE)
    sem = float(diffs.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * sem
    low, high = mean - half, mean + half
    return PairedDifference(n, mean, low, high, _verdict(n, low, high))


def _verdict(n: int, low: float, high: float) -> str:
    if n < MIN_SEEDS:
        return NOT_APPLICABLE
    if low > 0:
        return BETTER
    if high < 0:
        return WORSE
    return NO_DIFFERENCE


def format_difference(d: PairedDifference) -> str:
    """``+1.2 [-0.3, +2.7]`` (points), the mean alone below 2 pairs, ``–`` without any pair."""
    if d.n == 0:
        return "–"
    if math.isnan(d.low):
        return f"{d.mean:+.1f}"
    return f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"


def format_mean_std(mean: float, std: float, n: int, digits: int = 1) -> str:
    """``31.3 ± 0.5`` over ``n`` seeds, the mean alone for one seed, ``–`` without a value."""
    if pd.isna(mean):
        return "–"
    return f"{mean:.{digits}f}" if n < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def paired_by_seed(head: pd.DataFrame, reference: pd.DataFrame, metric: str) -> PairedDifference:
    """``paired_difference`` of the records of one head (rows with ``comparison_id``, ``seed`` and ``metric``) to
    the reference records of the same comparison id and seed (the same data, schedule and initialisation); records
    without a partner, or without the metric, are left out, and so is a seed whose reference is ambiguous (two
    reference runs of different run ids: which one is the partner is not for this function to guess)."""
    reference = reference[reference[metric].notna()] if metric in reference else reference.iloc[0:0]
    ambiguous: set = set()
    if "run_id" in reference:
        runs = reference.groupby(["comparison_id", "seed"])["run_id"].transform("nunique")
        ambiguous = set(zip(reference["comparison_id"][runs > 1], reference["seed"][runs > 1], strict=True))
        reference = reference[runs == 1]
    ref = reference.drop_duplicates(["comparison_id", "seed"]).set_index(["comparison_id", "seed"])[metric]
    keys = list(zip(head["comparison_id"], head["seed"], strict=True))
    pairs = [
        (value, ref[key])
        for key, value in zip(keys, head[metric], strict=True)
        if key in ref.index and pd.notna(value) and pd.notna(ref[key])
    ]
    found = paired_difference([p[0] for p in pairs], [p[1] for p in pairs])
    return dataclasses.replace(found, left_out=sum(key in ambiguous for key in set(keys)))


@dataclass(frozen=True)
class Interval:
    """An estimate with its ``CONFIDENCE`` interval [low, high] and the number of units it rests on."""

    value: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]" if self.n else "–"


def icc_oneway(values: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """The intraclass correlation ICC(1) of ``values`` [groups, repeats] (here genotypes x seeds): the share of the
    variance that lies between groups, (MSB - MSW) / (MSB + (k - 1) MSW), with the F-distribution interval of
    Shrout and Fleiss (1979). 1: the seeds agree on every genotype; 0: the genotypes differ no more than seeds."""
    values = np.asarray(values, dtype=float)
    n, k = values.shape
    if n < 3 or k < 2:
        return Interval(math.nan, math.nan, math.nan, 0)
    grand = values.mean()
    msb = k * ((values.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msw = ((values - values.mean(axis=1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    if msw == 0:
        return Interval(1.0, 1.0, 1.0, n)
    f, df1, df2 = msb / msw, n - 1, n * (k - 1)
    tail = 0.5 + confidence / 2
    f_low, f_high = f / stats.f.ppf(tail, df1, df2), f * stats.f.ppf(tail, df2, df1)
    return Interval(
        (msb - msw) / (msb + (k - 1) * msw), (f_low - 1) / (f_low + k - 1), (f_high - 1) / (f_high + k - 1), n
    )


def rank_correlations(
    x: Sequence[float], y: Sequence[float], repeats: int = 2000, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, Interval]:
    """Kendall's tau (tau-b) and Spearman's rho of ``x`` against ``y``, each with a percentile bootstrap interval
    over the pairs (``repeats`` resamples, seeded)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant ranks nothing
        nothing = Interval(math.nan, math.nan, math.nan, 0)
        return {"tau": nothing, "rho": nothing}
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(repeats, n))
    out = {}
    for name, measure in (("tau", stats.kendalltau), ("rho", stats.spearmanr)):
        value = float(measure(x, y)[0])
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)  # a resample of ties: NaN, left out
            boot = np.array([measure(x[d], y[d])[0] for d in draws], dtype=float)
        low, high = np.nanquantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
        out[name] = Interval(value, float(low), float(high), n)
    return out
