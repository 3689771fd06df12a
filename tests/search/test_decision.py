"""Has a search decided? The measures of softmax(alpha), the stopping rule, the perturbation check (issue 20)."""

import math
import shutil

import numpy as np
import pytest
import torch

from nasiam_bench.bench.runner import bench
from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.report.strategy_table import compare_strategies, presentable
from nasiam_bench.search.base import GradientStrategy
from nasiam_bench.search.decision import (
    DECIDED_MARGIN,
    agreement,
    decision_summary,
    layer_decisions,
    mean_pairwise_agreement,
    unchanged_for,
)
from nasiam_bench.search.run import run_search
from nasiam_bench.store.results import load_records
from tests.conftest import TEST_DATA_ROOT

GRADIENT = [s for s in SEARCH_STRATEGIES.list() if issubclass(SEARCH_STRATEGIES.get(s), GradientStrategy)]
OPS = ["a", "b", "c"]


def _alpha(*epochs):
    """alpha as a search reports it: one head of one layer, softmax weights per epoch (row 0 before the search)."""
    return {"projector": {"ops": OPS, "final": [epochs[-1]], "history": [[e] for e in epochs]}}


def test_a_layer_is_decided_by_a_margin_held_over_the_last_epochs():
    uniform = [1 / 3] * 3
    lead = [0.5, 0.3, 0.2]
    (settled,) = layer_decisions(_alpha(uniform, [0.34, 0.33, 0.33], lead, lead))
    assert settled["op"] == "a" and settled["margin"] == pytest.approx(0.2) and settled["stable_since"] == 1
    assert settled["entropy"] == pytest.approx(-sum(p * math.log(p) for p in lead)) and settled["decided"]
    (changed,) = layer_decisions(_alpha(uniform, [0.2, 0.5, 0.3], [0.2, 0.5, 0.3], lead))
    assert changed["stable_since"] == 3 and not changed["decided"]  # its argmax moved in the last epoch
    close = [1 / 3 + DECIDED_MARGIN / 3, 1 / 3, 1 / 3 - DECIDED_MARGIN / 3]
    (narrow,) = layer_decisions(_alpha(uniform, close, close, close))
    assert narrow["stable_since"] == 1 and not narrow["decided"]  # stable, but by less than the margin
    summary = decision_summary({**_alpha(uniform, lead, lead), "predictor": _alpha(uniform, close, close)["projector"]})
    assert summary["decided_share"] == 0.5 and decision_summary({}) is None


def test_the_genotype_is_unchanged_for_k_epochs_when_every_argmax_held():
    uniform, a, b = [1 / 3] * 3, [0.4, 0.3, 0.3], [0.3, 0.4, 0.3]
    assert unchanged_for(_alpha(uniform, a, a, a), 2) and not unchanged_for(_alpha(uniform, a, a, a), 3)
    assert not unchanged_for(_alpha(uniform, b, a, a), 2) and unchanged_for(_alpha(uniform, b, a, a), 1)
    assert not unchanged_for(_alpha(uniform, a), 1)  # one epoch cannot show a change or its absence


def test_agreement_is_the_share_of_layers_alike():
    a, b, c = ({"p": ops} for ops in (["x", "y", "z", "w"], ["x", "y", "q", "q"], ["x", "q", "q", "q"]))
    assert agreement(a, a) == 1.0 and agreement(a, b) == 0.5
    assert mean_pairwise_agreement([a, b, c]) == pytest.approx((0.5 + 0.25 + 0.75) / 3)
    assert math.isnan(mean_pairwise_agreement([a]))


def smoke(strategy, *overrides):
    base = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128", f"strategy={strategy}"]
    return load_spec("moco_cifar10", [*base, *overrides])


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("strategy", GRADIENT)
def test_the_stopping_rule_ends_a_search_whose_genotype_stopped_changing(strategy, tmp_path):
    # alpha cannot move (arch_lr 0): the genotype is the same at every epoch's end, so K = 1 stops after epoch 2
    spec = smoke(strategy, "search.epochs=4", "search.stop_when_stable=1", "search.arch_lr=0.0")
    result, _ = run_search(spec, 0, tmp_path / "s", progress=False)
    assert result.ended == "stopping rule: genotype unchanged for 1 epochs, at epoch 2 of 4"
    capped, _ = run_search(smoke(strategy, "search.epochs=2"), 0, tmp_path / "c", progress=False)
    assert result.steps == capped.steps and capped.ended == "epoch cap: 2 epochs"
    assert result.decision["decided_share"] == 0.0  # alpha never moved: nothing is decided
    # killed after the state was saved but before the result: the resumed search trains no further epoch
    (tmp_path / "s" / "search.json").unlink()
    again, _ = run_search(spec, 0, tmp_path / "s", progress=False)
    assert again.steps == result.steps and again.ended == result.ended


@pytest.mark.parametrize("strategy", GRADIENT)
def test_the_perturbation_moves_alpha_at_the_rounding_level_only(strategy):
    from tests.search.test_search import _attached

    _, plain = _attached("moco", strategy)
    _, twin = _attached("moco", strategy)
    state = torch.get_rng_state()
    twin.perturb(1e-6, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # a generator of its own: the search's draws are unchanged
    for name, head in plain.heads.items():
        difference = (twin.heads[name].alpha - head.alpha).abs()
        assert 0 < difference.max() < 1e-5


@pytest.mark.usefixtures("cifar10_data")
def test_a_bench_records_the_decision_and_the_perturbation_check(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    overrides = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128", "eval.test_subset=200"]
    overrides += ["bench_heads=['baseline', 'nasiam']", "experiment.perturbation_check=true"]
    overrides.append("experiment.bench_strategies=['darts', 'gdas']")
    bench("moco", overrides, runs=runs, results=results, progress=False)
    searched = [r for r in load_records(results) if r["head"] == "nasiam"]
    assert len(searched) == 2
    for record in searched:
        assert record["search_ended"] == "epoch cap: 1 epochs"
        assert 0.0 <= record["search_decision"]["decided_share"] <= 1.0
        assert len(record["search_decision"]["layers"]) == 4  # MoCo searches a 4-layer projector
        assert 0.0 <= record["perturbation_agreement"] <= 1.0
    assert len(list(runs.glob("search-moco-cifar10-*"))) == 4  # each search and its perturbed twin
    shown = presentable(compare_strategies(load_records(results)))
    assert list(shown["perturbation keeps"]) == [f"{r['perturbation_agreement']:.0%}" for r in sorted(
        searched, key=lambda r: r["strategy"])]  # fmt: skip
    assert all(np.isfinite(compare_strategies(searched + load_records(results))["decided"]))
    shutil.rmtree(runs)


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_random_search_ranks_by_the_held_out_ssl_loss_unless_told_to_use_labels(framework, tmp_path):
    base = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128", "strategy=random"]
    free, _ = run_search(load_spec(f"{framework}_cifar10", base), 0, tmp_path / "free", progress=False)
    assert all(set(s) == {"genotype", "held_out_loss"} for s in free.scores)  # no label was read
    assert free.genotype == min(free.scores, key=lambda s: s["held_out_loss"])["genotype"]
    spec = load_spec(f"{framework}_cifar10", [*base, "search.random_rank=knn"])
    labelled, _ = run_search(spec, 0, tmp_path / "knn", progress=False)
    assert labelled.genotype == max(labelled.scores, key=lambda s: s["knn_top1"])["genotype"]
    assert [s["genotype"] for s in labelled.scores] == [s["genotype"] for s in free.scores]  # the same candidates


def test_the_decision_by_epoch_reads_alpha_as_it_stood_after_each_epoch():
    from nasiam_bench.search.decision import by_epoch

    uniform, lead, other = [1 / 3] * 3, [0.5, 0.3, 0.2], [0.2, 0.5, 0.3]
    search = _alpha(uniform, other, lead, lead)
    twin = _alpha(uniform, other, other, lead)
    rows = by_epoch(search, twin)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["decided"] for r in rows] == [1.0, 0.0, 1.0]  # epoch 2: its argmax had just moved
    assert [r["agreement"] for r in rows] == [1.0, 0.0, 1.0]
    assert "agreement" not in by_epoch(search)[0]


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("strategy", GRADIENT)
def test_alpha_starts_at_zeros_when_told_as_the_papers_code(strategy, tmp_path):
    # arch_lr 0: alpha stays where it started, so the recorded softmax shows the start
    zeros, _ = run_search(
        smoke(strategy, "search.arch_lr=0.0", "search.alpha_init_std=0.0"), 0, tmp_path / "z", progress=False
    )
    drawn, _ = run_search(smoke(strategy, "search.arch_lr=0.0"), 0, tmp_path / "d", progress=False)
    for name, head in zeros.alpha.items():
        uniform = 1 / len(head["ops"])
        assert all(w == pytest.approx(uniform, abs=1e-7) for row in head["final"] for w in row)
        assert any(w != pytest.approx(uniform, abs=1e-7) for row in drawn.alpha[name]["final"] for w in row)
    assert zeros.steps == drawn.steps


def test_a_search_the_cap_ended_says_so_even_when_its_genotype_was_stable():
    from types import SimpleNamespace

    from nasiam_bench.search.base import _SearchProgress

    progress = _SearchProgress.__new__(_SearchProgress)  # only what ended() reads
    progress.ctx = SimpleNamespace(search=SimpleNamespace(stop_when_stable=2, epochs=4))
    progress.epoch, progress.should_stop = 4, True
    assert progress.ended() == "epoch cap: 4 epochs"
    progress.epoch = 3
    assert progress.ended() == "stopping rule: genotype unchanged for 2 epochs, at epoch 3 of 4"


@pytest.mark.usefixtures("cifar10_data")
def test_a_search_whose_twin_another_process_runs_is_pending_and_its_head_waits(tmp_path, capsys):
    """Bench B meets the perturbed twin of its search claimed by bench A: the search is not done until the twin
    is, so B trains no head without its perturbation_agreement; once the twin is free, the record carries it."""
    import json
    import os
    import subprocess
    import sys

    from nasiam_bench.bench.plan import perturbed_twin
    from nasiam_bench.config.spec import bench_spec
    from nasiam_bench.store.layout import default_search_dir

    runs, results = tmp_path / "runs", tmp_path / "results"
    overrides = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128", "eval.test_subset=200"]
    overrides += ["bench_heads=['nasiam']", "experiment.perturbation_check=true"]
    twin = default_search_dir(perturbed_twin(bench_spec("moco", None, overrides)), 0, runs)
    twin.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        claimed = {"host": os.uname().nodename, "pid": sleeper.pid, "started": "now", "token": "a"}
        (twin / "search.claim").write_text(json.dumps(claimed))
        bench("moco", overrides, runs=runs, results=results, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert "its search is running elsewhere; skipped" in capsys.readouterr().out
    assert not [r for r in load_records(results) if r["head"] == "nasiam"]
    bench("moco", overrides, runs=runs, results=results, progress=False)  # the twin's claim is stale now
    (record,) = [r for r in load_records(results) if r["head"] == "nasiam"]
    assert 0.0 <= record["perturbation_agreement"] <= 1.0
