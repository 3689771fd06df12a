import math

import pytest

from nasiam_bench.report.stats import paired_difference
from nasiam_bench.report.strategy_table import compact, compare_strategies, parameter_free_share, presentable
from nasiam_bench.report.tables import write_tables
from nasiam_bench.store.results import write_record

GENOTYPES = {
    "darts": {"projector": ["identity", "avgpool_3x3", "linear_elu", "maxpool_3x3"]},
    "random": {"projector": ["linear_relu", "linear_silu", "identity", "linear_elu"]},
}


def _record(head, seed, knn, strategy="-", comparison="cmp", **extra):
    return {
        "dataset": "cifar10",
        "framework": "moco",
        "backbone": "resnet18",
        "width": 0.125,
        "profile": "quick",
        "recipe": "reference",
        "seed": seed,
        "epochs": 6,
        "batch_size": 128,
        "train_subset": 8000,
        "head": head,
        "strategy": strategy,
        "run_id": f"{head}-{strategy}-{comparison}",
        "comparison_id": comparison,
        "knn_top1": knn,
        "linear_top1": knn + 1.0,
        "head_params": 100,
        "search_device_hours": 0.01 if head == "nasiam" else 0.0,
        "pretrain_device_hours": 0.03,
        "device": "CPU (x86_64, 2 cores)",
        "genotype": GENOTYPES.get(strategy),
        **extra,
    }


def _records():
    baseline = [30.0, 31.0, 29.0]
    records = [_record("baseline", s, b) for s, b in enumerate(baseline)]
    for strategy, shift in (("darts", (1.0, 2.0, 3.0)), ("random", (0.0, 0.5, 1.0))):
        records += [_record("nasiam", s, b + d, strategy) for s, (b, d) in enumerate(zip(baseline, shift, strict=True))]
    return records


def test_parameter_free_share_and_compact_names():
    assert parameter_free_share(GENOTYPES["darts"]) == 0.75
    assert parameter_free_share({"a": ["identity"], "b": ["linear_relu"]}) == 0.5
    assert compact(GENOTYPES["darts"]) == "projector: id-avg-elu-max"


def test_strategies_are_paired_with_the_baseline_and_with_random_search():
    table = compare_strategies(_records()).set_index("strategy")
    darts = table.loc["darts"]
    assert darts["seeds"] == 3 and darts["parameter_free"] == 0.75
    assert darts["knn_vs_baseline"] == paired_difference([31.0, 33.0, 32.0], [30.0, 31.0, 29.0])
    assert darts["knn_vs_baseline"].mean == pytest.approx(2.0)
    assert darts["knn_vs_random"] == paired_difference([31.0, 33.0, 32.0], [30.0, 31.5, 30.0])
    assert table.loc["random"]["knn_vs_random"].n == 0  # random search is the control, not compared to itself
    assert "s0: projector: id-avg-elu-max" in darts["genotypes"]
    shown = presentable(compare_strategies(_records()))
    assert list(shown["strategy"]) == ["darts", "random"]


def test_other_comparisons_are_never_paired():
    records = _records() + [_record("baseline", s, 50.0, comparison="other") for s in range(3)]
    table = compare_strategies(records).set_index("strategy")
    assert table.loc["darts"]["knn_vs_baseline"].mean == pytest.approx(2.0)
    alone = [r for r in _records() if r["strategy"] != "random"]
    assert compare_strategies(alone).empty  # one strategy: nothing to compare


def test_the_tables_gain_a_strategy_section_with_its_plot(tmp_path):
    for record in _records():
        write_record(tmp_path, record)
    written = write_tables(tmp_path)
    document = (tmp_path / "cifar10.md").read_text()
    assert "## Search strategies" in document
    assert (tmp_path / "cifar10_search_strategies.png") in written
    assert (tmp_path / "cifar10_search_strategies.png").stat().st_size > 0
    assert not math.isnan(compare_strategies(_records())["search_device_h"].iloc[0])


def test_records_without_a_recipe_are_compared_as_recipe_none():
    records = [{k: v for k, v in r.items() if k != "recipe"} for r in _records()]
    table = compare_strategies(records)
    assert list(table["recipe"]) == ["(none)", "(none)"] and list(table["strategy"]) == ["darts", "random"]


def test_the_strategy_figures_legends_lie_inside_the_figure():
    """Each panel's legend, however long its labels, is drawn inside the figure (not cut at its edges)."""
    from nasiam_bench.report.strategy_table import compare_strategies, strategies_figure
    from nasiam_bench.store.results import load_records
    from tests.conftest import REPO

    records = [r for r in load_records(REPO / "results") if r["dataset"] == "cifar10"]
    fig = strategies_figure(compare_strategies(records), "cifar10")
    fig.canvas.draw()
    inside = fig.bbox.padded(1)
    legends = [legend for subfigure in fig.subfigs for legend in subfigure.legends]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(fig.canvas.get_renderer())
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
