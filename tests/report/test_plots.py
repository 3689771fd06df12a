"""Plots a researcher can put in a paper (issue 23): one colour per head in every plot, one marker per strategy,
legends outside the axes, the kNN curves one panel per head with whole-epoch ticks."""

import pandas as pd
import pytest

from nasiam_bench.report import plots, tables
from nasiam_bench.report.plots import head_colour, marker


@pytest.fixture
def figures(monkeypatch, tmp_path):
    """The figures the plot functions draw, kept open instead of written."""
    drawn = []
    monkeypatch.setattr(tables, "save", lambda fig, path, **_: drawn.append(fig) or path)
    return drawn


def _curve_records():
    records = [{"head": "untrained", "run_id": "f", "seed": 0, "knn_top1": 24.0, "strategy": "-"}]
    for head, strategy in (("baseline", "-"), ("nasiam", "darts"), ("nasiam", "random"), ("random", "-")):
        for seed in (0, 1):
            curve = [[2, 30.0 + seed], [4, 31.0], [6, 31.5]]
            records.append({"head": head, "run_id": f"{head}{strategy}", "seed": seed, "strategy": strategy,
                            "knn_top1": 31.5, "knn_curve": curve})  # fmt: skip
    return records


def test_knn_curves_one_panel_per_head_whole_epochs_legend_outside(figures, tmp_path):
    tables.plot_knn_curves(_curve_records(), tmp_path / "c.png", "curves")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["baseline", "nasiam", "random"]
    for ax in panels:
        ticks = [t for t in ax.get_xticks() if 2 <= t <= 6]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert ax.get_legend() is None  # the figure's legend, outside the panels
        for line in ax.get_lines()[:-1]:  # the last is the floor
            assert line.get_color() == head_colour(ax.get_title())
    assert fig.legends
    nasiam = panels[1].get_lines()
    assert {nasiam[0].get_marker(), nasiam[1].get_marker()} == {marker("nasiam", "darts"), marker("nasiam", "random")}


def test_accuracy_against_cost_colours_heads_alike_and_marks_strategies(figures, tmp_path):
    rows = [
        ("moco", "untrained", "-"), ("moco", "baseline", "-"), ("moco", "nasiam", "darts"),
        ("moco", "nasiam", "beta_darts"), ("simclr", "baseline", "-"), ("simclr", "nasiam", "darts"),
    ]  # fmt: skip
    table = pd.DataFrame(
        [{"framework": f, "head": h, "strategy": s, "total_device_h": 0.1, "total_device_h_std": 0.01,
          "knn_mean": 30.0, "knn_std": 1.0} for f, h, s in rows]
    )  # fmt: skip
    tables.plot_accuracy_vs_cost(table, tmp_path / "a.png", "cifar10")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["moco", "simclr"] and fig.legends
    points = {
        (ax.get_title(), line.get_marker()): line.get_color() for ax in panels for line in ax.get_lines()
        if line.get_marker() not in ("None", "", None, "_", "|")
    }  # fmt: skip
    assert points[("moco", marker("nasiam", "darts"))] == points[("simclr", marker("nasiam", "darts"))]
    assert points[("moco", marker("nasiam", "beta_darts"))] == head_colour("nasiam")
    assert marker("nasiam", "darts") != marker("nasiam", "beta_darts") != marker("baseline")
    assert plots.marker("nasiam", "random (kNN: uses labels)") == plots.STRATEGY_MARKERS["random"]
