"""The ground truth: its sample and heads, the ops: head, the table read back from records, the query strategies
(every registered one), and the report, on hand-made records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from nasiam_bench.config.spec import bench_spec
from nasiam_bench.core.registry import QUERY_STRATEGIES
from nasiam_bench.eval.label_free import MEASURES
from nasiam_bench.groundtruth import plan
from nasiam_bench.groundtruth.queries import regret_curves
from nasiam_bench.groundtruth.report import write_report
from nasiam_bench.groundtruth.table import GroundTruth
from nasiam_bench.models.heads.genotype import Genotype, GenotypeError, ops_head, parse_ops_head
from nasiam_bench.models.heads.ops import search_space
from nasiam_bench.report.stats import icc_oneway, rank_correlations
from nasiam_bench.store.identity import comparison_id, run_id
from nasiam_bench.store.resolve import resolve_genotype
from nasiam_bench.store.results import write_record

SPEC = bench_spec("moco", None, ["profile=quick", "seeds.values=[0, 1]"])
OPS = search_space()


def test_genotype_at_numbers_the_space_from_the_first_op_to_the_last():
    assert plan.space_size(SPEC) == 7**4
    assert plan.genotype_at(SPEC, 0) == {"projector": [OPS[0]] * 4}
    assert plan.genotype_at(SPEC, 7**4 - 1) == {"projector": [OPS[-1]] * 4}
    assert plan.genotype_at(SPEC, 1) == {"projector": [OPS[0]] * 3 + [OPS[1]]}
    assert len({ops_head(plan.genotype_at(SPEC, i)) for i in range(7**4)}) == 7**4


def test_the_sample_is_distinct_seeded_and_covers_every_op():
    drawn = [ops_head(g) for g in plan.sample(SPEC, 100, 0)]
    assert len(set(drawn)) == 100 and drawn == [ops_head(g) for g in plan.sample(SPEC, 100, 0)]
    assert drawn != [ops_head(g) for g in plan.sample(SPEC, 100, 1)]
    for layer in range(4):
        assert {parse_ops_head(k)["projector"][layer] for k in drawn} == set(OPS)
    assert len(plan.sample(SPEC, 10_000, 0)) == 7**4  # more than the space: all of it


def test_ground_truth_heads_list_baseline_paper_picks_then_the_sample_once_each(tmp_path):
    pick = {"projector": ["linear_elu"] * 4}
    write_record(tmp_path, _record("nasiam", 0, pick, 30.0, strategy="darts"))
    write_record(tmp_path, _record("nasiam", 1, pick, 30.0, strategy="darts"))
    heads = plan.heads(SPEC, 5, 0, tmp_path)
    assert heads[:3] == ["baseline", "paper", ops_head(pick)]
    assert len(heads) == len(set(heads)) == 3 + 5


def test_an_ops_head_is_the_same_run_as_its_genotype_file(tmp_path):
    genotype = {"projector": ["linear_relu", "identity", "avgpool_3x3", "linear_elu"]}
    assert parse_ops_head(ops_head(genotype)) == genotype
    path = Genotype("moco", genotype).save(tmp_path / "g.toml")
    as_file, as_ops = SPEC.replace(head=f"genotype:{path}"), SPEC.replace(head=ops_head(genotype))
    assert run_id(as_file) == run_id(as_ops)
    assert resolve_genotype(as_ops, 0) == genotype


@pytest.mark.parametrize(
    "head, message",
    [
        ("ops:projector=linear_relu,softmax,identity,identity", "unknown op 'softmax'; valid: linear_celu, "),
        ("ops:projector", "write ops:HEAD=OP,OP,..."),
        ("ops:projector=identity,identity", "moco searches projector=<4 ops>"),
        ("ops:predictor=identity,identity,identity,identity", "moco searches projector=<4 ops>"),
    ],
)
def test_a_bad_ops_head_is_refused_naming_what_is_valid(head, message):
    with pytest.raises(GenotypeError, match=message.replace("(", r"\(").replace("[", r"\[")):
        resolve_genotype(SPEC.replace(head=head), 0)


def test_icc_and_rank_correlations_against_hand_computations():
    values = np.array([[1.0, 2.0], [3.0, 5.0], [6.0, 6.0]])  # means 1.5, 4, 6; grand 23/6
    msb = 2 * ((1.5 - 23 / 6) ** 2 + (4 - 23 / 6) ** 2 + (6 - 23 / 6) ** 2) / 2
    msw = (0.25 + 0.25 + 1 + 1 + 0 + 0) / 3
    assert icc_oneway(values).value == pytest.approx((msb - msw) / (msb + msw))
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    found = rank_correlations(x, y, repeats=200)
    assert found["tau"].value == pytest.approx(scipy_stats.kendalltau(x, y)[0])
    assert found["rho"].value == pytest.approx(scipy_stats.spearmanr(x, y)[0])
    assert found["tau"].low <= found["tau"].value <= found["tau"].high


def _planted(genotype: dict[str, list[str]]) -> float:
    """A hand-made truth: each linear op adds a point by its position in the space, each parameter-free op none."""
    return sum(OPS.index(op) if op.startswith("linear_") else 0.0 for op in genotype["projector"])


def _record(head, seed, genotype, knn, strategy="-", **extra):
    kind = "baseline" if head == "untrained" else head
    spec = SPEC.replace(head=kind if kind in ("baseline", "paper", "nasiam") else ops_head(genotype))
    record = {
        "format": "nasiam-bench/record/2",
        "dataset": "cifar10",
        "framework": "moco",
        "head": head if head != "ops" else ops_head(genotype),
        "strategy": strategy,
        "seed": seed,
        "genotype": genotype,
        "knn_top1": knn,
        "linear_top1": knn + 5,
        "head_params": 100,
        "comparison_id": comparison_id(spec),
        "run_id": run_id(spec),
        "search_id": "s" + strategy,
        "machine": {"cpu": "test CPU", "cpu_isa": "X"},
        "created": "2026-12-03T00:00:00+00:00",
        "spec": spec.to_dict(),
    }
    return {**record, **{m: 0.0 for m in MEASURES}, **extra}


def _results(tmp_path, noise=0.3):
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        write_record(tmp_path, _record("untrained", seed, None, 20.0))
        write_record(tmp_path, _record("baseline", seed, None, 31.0 + seed, **{m: 1.0 for m in MEASURES}))
        for genotype in plan.sample(SPEC, 40, 0):
            truth = _planted(genotype)
            measures = {m: float(rng.normal()) for m in MEASURES} | {"rankme_projector": truth}
            knn = 25.0 + truth + noise * rng.normal()
            write_record(tmp_path, _record("ops", seed, genotype, knn, **measures))
    return tmp_path


def test_the_table_reads_back_per_seed_runs_of_its_comparison_only(tmp_path):
    results = _results(tmp_path)
    genotype = plan.sample(SPEC, 40, 0)[3]
    truth = GroundTruth.load(results, SPEC)
    found = truth.lookup(genotype)
    assert sorted(found) == [0, 1]
    assert found[0]["linear_top1"] == found[0]["knn_top1"] + 5
    assert truth.lookup("baseline")[1]["knn_top1"] == 32.0
    assert len(truth.means(seeds=2)) == 41 and truth.floor["knn_top1"].tolist() == [20.0, 20.0]
    other = bench_spec("moco", None, ["profile=quick", "train.lr=0.5", "seeds.values=[0, 1]"])
    assert GroundTruth.load(results, other).runs.empty  # another comparison: none of these runs


@pytest.mark.parametrize("name", QUERY_STRATEGIES.list())
def test_every_query_strategy_finds_the_best_of_a_noiseless_table_when_it_may_query_all(name):
    keys = [ops_head(g) for g in plan.sample(SPEC, 30, 0)]
    ops = {k: tuple(parse_ops_head(k)["projector"]) for k in keys}
    seeds = {k: np.array([_planted(parse_ops_head(k))] * 2) for k in keys}
    proxies = pd.DataFrame({f"init_{p}": np.arange(30.0) for p in ("synflow", "naswot", "grad_norm")}, index=keys)
    curves = regret_curves(name, ops, seeds, proxies, budget=30, repeats=5)
    assert curves.shape == (5, 30) and (curves >= 0).all()
    assert (np.diff(curves, axis=1) <= 1e-12).all()  # the incumbent never gets worse without noise
    assert (curves[:, -1] == 0).all()  # having seen every genotype, it holds the best
    again = regret_curves(name, ops, seeds, proxies, budget=30, repeats=5)
    assert (curves == again).all()  # seeded


def test_the_report_regenerates_byte_for_byte_and_finds_the_planted_predictor(tmp_path, monkeypatch):
    from nasiam_bench.groundtruth import report

    monkeypatch.setattr(report, "BOOTSTRAP", 200)  # the intervals' resamples: fewer, for time
    monkeypatch.setattr(report, "QUERY_REPEATS", 10)
    results = _results(tmp_path)
    path = write_report(results, SPEC, 40, 0, "make groundtruth")
    first = {p.name: p.read_bytes() for p in path.parent.glob("*.[mc][ds]*")}
    write_report(results, SPEC, 40, 0, "make groundtruth")
    assert first == {p.name: p.read_bytes() for p in path.parent.glob("*.[mc][ds]*")}
    assert {"moco_quick.md", "moco_quick.csv"} <= set(first)
    text = path.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| rankme_projector |"))
    assert float(row.split("|")[3].split()[0]) > 0.8  # planted: tau near 1 against kNN
    assert "40 have both seeds" in text and "(a) Is there anything to find? The sampled heads differ" in text
    assert (path.parent / "moco_quick_ecdf.png").is_file() and (path.parent / "moco_quick_regret.png").is_file()


@pytest.mark.usefixtures("cifar10_data")
def test_groundtruth_trains_ops_heads_as_bench_runs_with_their_measures_and_remakes_older_records(tmp_path):
    import json

    from nasiam_bench.store.results import load_records
    from tests.conftest import SMOKE_BENCH, run_cli

    runs, results = tmp_path / "runs", tmp_path / "results"
    options = [*SMOKE_BENCH[:-1], "--sample", "2", "--runs", str(runs), "--results", str(results)]
    planned = run_cli("groundtruth", "moco", *options, "--plan")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.count("moco ops:projector=") == 2
    assert "5 to do" in planned.stdout  # and the floor, the baseline and the paper's genotype
    assert "expected device-hours: unknown (5 jobs left have no finished run" in planned.stdout  # not "0.000"
    done = run_cli("groundtruth", "moco", *options)
    assert done.returncode == 0, done.stderr
    records = {r["head"]: r for r in load_records(results)}
    assert sum(h.startswith("ops:") for h in records) == 2 and {"baseline", "paper", "untrained"} <= set(records)
    for head, r in records.items():
        assert r["machine"]["cpu"] and r["machine"]["torch"]
        if head != "untrained":
            assert all(isinstance(r[m], float) for m in MEASURES), head
            assert r["spec"]["experiment"]["bench_heads"] == [head]  # not the ground truth's whole list
    table = (results / "cifar10.md").read_text()
    assert "| baseline |" in table and "ops:" not in table  # the sample is the report's, not the table's
    assert (results / "ground_truth" / "moco_smoke.md").is_file()
    # A record of the baseline made before records kept the measures is made again, its accuracies unchanged
    path = next((results / "records").rglob("baseline-*.json"))
    old = json.loads(path.read_text())
    json.dump({k: v for k, v in old.items() if k not in MEASURES}, path.open("w"))
    again = run_cli("groundtruth", "moco", *options)
    assert again.returncode == 0, again.stderr
    assert "predates the label-free measures: made again" in again.stdout
    remade = json.loads(path.read_text())
    assert remade["replaced"]["knn_top1"] == remade["knn_top1"] == old["knn_top1"]
    assert all(remade[m] == old[m] for m in MEASURES)


def test_plan_by_head_puts_each_heads_seeds_together_searches_before_their_heads():
    from nasiam_bench.bench.plan import plan as bench_plan

    spec = SPEC.replace(
        **{"seeds.values": [0, 1], "experiment.bench_heads": ["baseline", "nasiam"], "experiment.plan_by": "head"}
    )
    order = [(j.kind, j.seed) for j in bench_plan(spec)]
    assert order == [
        ("untrained", 0),
        ("untrained", 1),
        ("baseline", 0),
        ("baseline", 1),
        ("search", 0),
        ("nasiam", 0),
        ("search", 1),
        ("nasiam", 1),
    ]
    assert [(j.kind, j.seed) for j in bench_plan(spec.replace(**{"experiment.plan_by": "seed"}))][:3] == [
        ("untrained", 0),
        ("baseline", 0),
        ("search", 0),
    ]


def test_a_smaller_sample_is_the_start_of_a_larger_one():
    assert plan.sample(SPEC, 5, 0) == plan.sample(SPEC, 100, 0)[:5]


def test_the_report_measures_the_machines_effect_from_runs_trained_again(tmp_path, monkeypatch):
    from nasiam_bench.groundtruth import report

    monkeypatch.setattr(report, "BOOTSTRAP", 50)
    monkeypatch.setattr(report, "QUERY_REPEATS", 2)
    results = _results(tmp_path)
    again = results / "ground_truth" / "machines" / "other-cpu"
    for seed in (0, 1):
        for genotype in plan.sample(SPEC, 3, 0):
            moved = GroundTruth.load(results, SPEC).lookup(genotype)[seed]["knn_top1"] + 0.5
            write_record(again, _record("ops", seed, genotype, moved, machine={"cpu": "other CPU", "cpu_isa": "Y"}))
    text = write_report(results, SPEC, 40, 0, "make groundtruth").read_text()
    section = text.split("## The machine's effect")[1]
    assert "| other CPU (Y) | test CPU (X) | 6 | 0.50 | 0.50 |" in section


def test_the_report_of_a_sweep_that_has_trained_only_the_picks_says_so(tmp_path, monkeypatch):
    """A sweep stopped before its sample (picks trained, no sampled genotype with both seeds) still reports."""
    from nasiam_bench.groundtruth import report

    monkeypatch.setattr(report, "BOOTSTRAP", 20)
    pick = {"projector": ["linear_elu"] * 4}
    for seed in (0, 1):
        write_record(tmp_path, _record("nasiam", seed, pick, 30.0, strategy="darts"))
        write_record(tmp_path, _record("ops", seed, pick, 30.5 + seed))
    text = write_report(tmp_path, SPEC, 40, 0, "make groundtruth").read_text()
    assert "No sampled genotype has both seeds yet." in text and "0 of 80 sample runs are done" in text
