import math

import pytest
from scipy import stats as scipy_stats

from nasiam_bench.report.stats import (
    BETTER,
    NO_DIFFERENCE,
    NOT_APPLICABLE,
    WORSE,
    format_difference,
    paired_difference,
)


def test_known_mean_difference_and_interval():
    # Differences 1, 2, 3: mean 2, sd 1, sem 1/sqrt(3); t(0.975, 2) = 4.302652729...
    d = paired_difference([41.0, 52.0, 63.0], [40.0, 50.0, 60.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(2.0)
    assert (d.low, d.high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    assert d.half_width == pytest.approx(half)
    assert d.verdict == NO_DIFFERENCE  # -0.48 .. 4.48 covers 0
    assert format_difference(d) == "+2.0 [-0.5, +4.5]"


def test_the_interval_is_students_t_for_other_levels_too():
    d = paired_difference([1.0, 3.0, 2.0, 6.0], [0.0, 0.0, 0.0, 0.0], confidence=0.9)
    low, high = scipy_stats.t.interval(0.9, 3, loc=3.0, scale=scipy_stats.sem([1.0, 3.0, 2.0, 6.0]))
    assert (d.low, d.high) == (pytest.approx(low), pytest.approx(high))


@pytest.mark.parametrize(
    ("shift", "verdict"),
    [(0.0, NO_DIFFERENCE), (1e-9, BETTER), (-1e-9, NO_DIFFERENCE), (-2 * 1.0 - 1e-9, WORSE)],
)
def test_the_verdict_flips_at_the_edges_of_the_interval(shift, verdict):
    # Differences (c - 1, c, c + 1): the interval is c -/+ t * sem; placing its low end at 0 + shift.
    half = scipy_stats.t.ppf(0.975, 2) / math.sqrt(3)
    centre = half + shift
    if verdict == WORSE:  # the high end just below 0 instead
        centre = -half - 1e-9
    d = paired_difference([centre - 1, centre, centre + 1], [0.0, 0.0, 0.0])
    assert d.verdict == verdict
    if shift == 0.0:
        assert d.low == pytest.approx(0.0, abs=1e-12)  # an interval touching 0 covers it


def test_a_constant_difference_has_a_zero_width_interval():
    d = paired_difference([41.0, 42.0, 43.0], [40.0, 41.0, 42.0])
    assert d.low == d.high == pytest.approx(1.0) and d.verdict == BETTER


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_seeds_give_no_verdict(n):
    head, base = [50.0 + 10 * i for i in range(n)], [40.0 + 10 * i for i in range(n)]
    d = paired_difference(head, base)
    assert d.n == n and d.verdict == NOT_APPLICABLE
    if n == 2:  # an interval exists, but two seeds are not enough for a claim
        assert d.low == pytest.approx(10.0) and d.high == pytest.approx(10.0)
    assert format_difference(d) == {0: "–", 1: "+10.0", 2: "+10.0 [+10.0, +10.0]"}[n]


def test_unpaired_samples_are_refused():
    with pytest.raises(ValueError, match="2 head values, 3 baseline values"):
        paired_difference([1.0, 2.0], [1.0, 2.0, 3.0])
