import json
import multiprocessing as mp

import pandas as pd
import pytest

from nasiam_bench.bench.runner import bench
from nasiam_bench.eval.evaluate import eval_data_for, knn_encoder, spec_knn
from nasiam_bench.report.tables import summarise, write_tables
from nasiam_bench.store.checkpoints import load_checkpoint, model_from_checkpoint
from nasiam_bench.store.results import RECORD_FORMAT, load_records, load_search_records, write_record
from tests.conftest import REPO, SMOKE_BENCH, TEST_DATA_ROOT

SMOKE = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128", "eval.test_subset=200"]


def test_smoke_bench_end_to_end_then_skips(smoke_bench, capsys):
    runs, results, records, out = smoke_bench.runs, smoke_bench.results, smoke_bench.records, smoke_bench.out
    assert f"records, tables and plots -> {results} (the smoke profile; --results to choose)" in out  # no folder given
    assert "[1/5] moco untrained seed 0" in out and "[5/5] moco paper seed 0" in out
    assert [r["head"] for r in records] == ["untrained", "baseline", "nasiam", "paper"]
    stored = {r["head"]: r for r in load_records(results)}
    assert stored.keys() == {"untrained", "baseline", "nasiam", "paper"}
    nasiam = stored["nasiam"]
    assert nasiam["strategy"] == "darts" and nasiam["search_device_hours"] > 0
    assert len(nasiam["genotype"]["projector"]) == 4 and nasiam["git_commit"]
    final = nasiam["search_alpha"]["projector"]["final"]  # the supernet's ranking of every genotype, kept
    assert len(final) == 4 and all(sum(layer) == pytest.approx(1.0) for layer in final)
    (kept,) = load_search_records(results)
    assert kept["search_id"] == nasiam["search_id"] and kept["alpha"] == nasiam["search_alpha"] and kept["machine"]
    assert stored["paper"]["genotype"]["projector"] == ["avgpool_3x3"] * 4
    for head in ("baseline", "nasiam", "paper"):
        r = stored[head]
        assert 0 <= r["knn_top1"] <= 100 and r["linear_top1"] <= r["linear_top5"]
        assert r["pretrain_device_hours"] == pytest.approx(r["pretrain_seconds"] / 3600)
        assert r["head_params"] > 0 and r["images_per_s"] > 0 and r["peak_memory_mb"] > 0
        assert r["spec"]["experiment"]["head"] == head and r["seed"] == 0
    # The same seed and data for every head: the runs differ in their head only (each names it as its bench's).
    specs = [
        dict(stored[h]["spec"], experiment={**stored[h]["spec"]["experiment"], "head": "-", "bench_heads": "-"})
        for h in ("baseline", "nasiam", "paper")
    ]
    assert specs[0] == specs[1] == specs[2]

    table = (results / "cifar10.md").read_text()
    assert (
        f"{stored['baseline']['knn_top1']:.1f}" in table
        and "| smoke | reference | moco | nasiam | darts | resnet18 | 0.125 | 1 | final | 1 |" in table
    )
    assert "## Published figures (not measured here" in table and "JPEG copy" in table
    csv = pd.read_csv(results / "cifar10.csv")
    assert csv.set_index("head").loc["paper", "knn_mean"] == pytest.approx(stored["paper"]["knn_top1"])
    assert (results / "cifar10_accuracy_vs_cost.png").stat().st_size > 5000
    searched = stored["nasiam"]["search_id"]  # one heatmap per search: searches of other settings do not collide
    assert (results / "plots" / f"alpha_moco_cifar10_darts_{searched}_seed0.png").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in (results / "records").rglob("*.json")}
    bench("moco", SMOKE_BENCH, runs=runs, results=results, progress=False)
    assert capsys.readouterr().out.count("done before, skipped") == 4
    assert stamps == {p: p.stat().st_mtime_ns for p in (results / "records").rglob("*.json")}
    written = [p for p in (REPO / "results").rglob("*") if p.stat().st_mtime_ns >= smoke_bench.began_ns]
    assert not written  # the committed tables, plots and records are untouched


@pytest.mark.usefixtures("cifar10_data")
def test_killed_bench_resumes_and_completes(tmp_path, monkeypatch):
    import nasiam_bench.engine.train as train

    runs, results = tmp_path / "runs", tmp_path / "results"
    overrides = [*SMOKE, "train.epochs=2", "bench_heads=['baseline', 'paper']"]
    real_step, calls = train.train_step, {"n": 0}

    def dying_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4 + 2:  # 4 steps per epoch: the kill comes in the second epoch of the first head
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        bench("moco", overrides, runs=runs, results=results, progress=False)
    assert [r["head"] for r in load_records(results)] == ["untrained"]
    (checkpoint,) = runs.rglob("checkpoint.pt")
    assert load_checkpoint(checkpoint)["epoch"] == 1  # the last whole epoch survived the kill
    monkeypatch.setattr(train, "train_step", real_step)
    bench("moco", overrides, runs=runs, results=results, progress=False)
    done = {r["head"]: r for r in load_records(results)}
    assert done.keys() == {"untrained", "baseline", "paper"} and done["baseline"]["epochs"] == 2
    log = (checkpoint.parent / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + both epochs: epoch 1 from before the kill, epoch 2 after the resume


def _write_many(args):
    results, start = args
    for i in range(start, start + 40):
        write_record(
            results,
            {
                "dataset": "cifar10",
                "framework": "moco",
                "head": "baseline",
                "run_id": f"r{i:03d}",
                "seed": 0,
                "knn_top1": float(i),
            },
        )


def test_two_benches_writing_records_at_once_lose_nothing(tmp_path):
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_write_many, [(tmp_path, 0), (tmp_path, 40)])
    records = load_records(tmp_path)
    assert sorted(r["knn_top1"] for r in records) == [float(i) for i in range(80)]
    assert not list(tmp_path.rglob("*.tmp"))


def _record(head, seed, knn, linear=None, strategy="-", search=0.0, pretrain=0.01, lr=0.06):
    return {
        "dataset": "cifar10",
        "profile": "quick",
        "framework": "moco",
        "backbone": "resnet18",
        "width": 0.5,
        "epochs": 4,
        "batch_size": 128,
        "train_subset": 10000,
        "head": head,
        "strategy": strategy,
        "seed": seed,
        "knn_top1": knn,
        "linear_top1": linear,
        "head_params": None if head == "untrained" else 1000,
        "search_device_hours": search,
        "pretrain_device_hours": pretrain,
        "device": "CPU",
        "git_commit": "abc",
        "run_id": f"{head}-lr{lr}",  # a run id names the spec, not the seed
        "comparison_id": f"lr{lr}",  # what the heads of one comparison share
        "spec": {"experiment": {"head": head}, "train": {"lr": lr, "epochs": 4}, "seeds": {"values": [0, 1]}},
    }


def test_tables_from_hand_made_records(tmp_path):
    records = [
        _record("untrained", 0, 30.0),
        _record("untrained", 1, 32.0),
        _record("baseline", 0, 40.0, 45.0),
        _record("baseline", 1, 42.0, 47.0),
        _record("nasiam", 0, 41.0, 44.0, "darts", search=0.02),
        _record("nasiam", 1, 45.0, 48.0, "darts", 0.04),
    ]
    table = summarise(records).set_index("head")
    assert list(table.index) == ["untrained", "baseline", "nasiam"]
    assert table.loc["baseline", "knn_mean"] == 41.0
    assert table.loc["baseline", "knn_std"] == pytest.approx(2**0.5)
    assert table.loc["nasiam", "total_device_h"] == pytest.approx(0.03 + 0.01)
    for r in records:
        write_record(tmp_path, r)
    write_tables(tmp_path)
    text = (tmp_path / "cifar10.md").read_text()
    assert (
        "| quick | (none) | moco | baseline | - | resnet18 | 0.5 | 4 | final | 2 "
        "| 41.0 ± 1.4 | – | – | 46.0 ± 1.4 | – | – | 1,000 |" in text
    )
    assert (
        "| quick | (none) | moco | untrained | - | resnet18 | 0.5 | 4 | final | 2 "
        "| 31.0 ± 1.4 | – | – | – | – | – | – |" in text
    )
    schedule = "`quick` is a reduced schedule (resnet18 at width 0.5, a subset of 10,000 images, 4 epochs, batch 128)"
    assert schedule in text
    measured, published = text.split("## Published figures (not measured here")
    assert "| solo-learn |" not in measured and "| lightly |" not in measured  # never mixed with measured rows
    assert "| solo-learn | cifar10 | moco | resnet18 | linear, 1000 epochs (MoCo v2+) | 92.94 |" in published
    assert "| SimSiam paper | cifar10 | simsiam | resnet18 | linear, 800 epochs | 91.8 |" in published
    assert json.loads(next(tmp_path.rglob("*.json")).read_text())["format"] == RECORD_FORMAT
    assert "spec differs in" not in text  # no two rows look alike


def test_tables_never_merge_runs_of_different_specs(tmp_path):
    # Seed 0 twice, with train.lr 0.06 and 0.6: two experiments, two rows of one seed each, and the reader is told
    # why there are two rows.
    records = [_record("baseline", 0, 40.0, 45.0, lr=0.06), _record("baseline", 0, 50.0, 55.0, lr=0.6)]
    table = summarise(records)
    assert list(table["seeds"]) == [1, 1] and sorted(table["knn_mean"]) == [40.0, 50.0]
    assert sorted(table["differs"]) == ["train.lr=0.06", "train.lr=0.6"]
    for r in records:
        write_record(tmp_path, r)
    write_tables(tmp_path)
    text = (tmp_path / "cifar10.md").read_text()
    assert "| 1 | 40.0 | – | – | 45.0 |" in text and "| 1 | 50.0 | – | – | 55.0 |" in text
    assert text.count("train.lr=0.6 |") == 1 and text.count("train.lr=0.06 |") == 1


def test_heads_are_paired_with_the_baseline_of_the_same_seed_and_comparison(tmp_path):
    # nasiam - baseline per seed: +1, +2, +3 (mean 2, sd 1): 95% interval 2 -/+ 4.30/sqrt(3) covers 0. The random
    # head is 1.5 +/- 0.5 ahead: better. Baselines of another spec (lr 0.6), far lower, must not be paired with them.
    base, nasiam, rand = [40.0, 41.0, 42.0], [41.0, 43.0, 45.0], [41.4, 42.5, 43.6]
    records = [_record("baseline", s, k, k + 5) for s, k in enumerate(base)]
    records += [_record("nasiam", s, k, k + 5, "darts", 0.01) for s, k in enumerate(nasiam)]
    records += [_record("random", s, k, k + 5) for s, k in enumerate(rand)]
    records += [_record("baseline", s, 10.0, 10.0, lr=0.6) for s in range(3)]
    records += [_record("paper", 0, 50.0, 50.0, lr=0.6), _record("paper", 1, 52.0, 52.0, lr=0.6)]
    table = summarise(records).set_index(["head", "run_id"])
    n = table.loc[("nasiam", "nasiam-lr0.06")]
    assert n["knn_diff_n"] == 3 and n["knn_diff_mean"] == pytest.approx(2.0)
    assert n["knn_diff_high"] - n["knn_diff_mean"] == pytest.approx(4.302652729911275 / 3**0.5)
    assert n["knn_diff_verdict"] == "no difference detected" and n["linear_diff_verdict"] == "no difference detected"
    r = table.loc[("random", "random-lr0.06")]
    assert r["knn_diff_mean"] == pytest.approx(1.5) and r["knn_diff_verdict"] == "better"
    p = table.loc[("paper", "paper-lr0.6")]  # two seeds, paired with the lr 0.6 baselines only
    assert p["knn_diff_n"] == 2 and p["knn_diff_mean"] == pytest.approx(41.0) and p["knn_diff_verdict"] == "n/a"
    assert table.loc[("baseline", "baseline-lr0.06"), "knn_diff_n"] == 0
    for rec in records:
        write_record(tmp_path, rec)
    write_tables(tmp_path)
    text = (tmp_path / "cifar10.md").read_text()
    assert "| 41.0 ± 1.0 | – | – | 46.0 ± 1.0 | – | – |" in text  # the baseline is not compared with itself
    assert "| 43.0 ± 2.0 | +2.0 [-0.5, +4.5] | no difference detected (n=3) |" in text
    assert "| 51.0 ± 1.4 | +41.0 [+28.3, +53.7] | n/a (n=2) |" in text
    assert "95% Student-t interval" in text


def test_a_seed_with_two_baseline_runs_is_left_out_and_the_row_says_so(tmp_path):
    records = [_record("baseline", s, 40.0 + s, 45.0) for s in range(3)]
    records.append({**_record("baseline", 0, 39.0, 44.0), "run_id": "baseline-other"})  # same comparison and seed
    records += [_record("nasiam", s, 41.0 + s, 46.0, "darts", 0.01) for s in range(3)]
    table = summarise(records).set_index(["head", "run_id"])
    n = table.loc[("nasiam", "nasiam-lr0.06")]
    assert n["knn_diff_n"] == 2 and n["knn_diff_left_out"] == 1
    for rec in records:
        write_record(tmp_path, rec)
    write_tables(tmp_path)
    text = (tmp_path / "cifar10.md").read_text()
    assert "n/a (n=2); 1 seed(s) left out: two baseline runs of different run ids" in text


def test_records_without_a_baseline_of_their_comparison_are_not_paired():
    records = [_record("baseline", s, 40.0 + s) for s in range(3)]
    records += [{**_record("nasiam", s, 45.0, strategy="darts"), "comparison_id": "another"} for s in range(3)]
    table = summarise(records).set_index("head")
    assert table.loc["nasiam", "knn_diff_n"] == 0 and table.loc["nasiam", "knn_diff_verdict"] == "n/a"


@pytest.mark.usefixtures("cifar10_data")
def test_smoke_bench_with_two_seeds_pairs_each_head_with_its_seeds_baseline(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    overrides = [
        *SMOKE,
        "bench_heads=['baseline', 'random']",
        "knn_every=1",
        "monitor_subset=100",
        "seeds.values=[0, 1]",
    ]
    records = bench("moco", overrides, runs=runs, results=results, progress=False)
    assert [(r["head"], r["seed"]) for r in records] == [
        ("untrained", 0), ("baseline", 0), ("random", 0), ("untrained", 1), ("baseline", 1), ("random", 1)
    ]  # fmt: skip
    assert len({r["comparison_id"] for r in records}) == 1  # one comparison: only the heads differ
    for r in (r for r in records if r["head"] != "untrained"):  # the monitor's figure, computed again here
        spec, model = model_from_checkpoint(load_checkpoint(r["checkpoint"]))
        monitor = eval_data_for(spec, r["seed"], "cpu", monitor=True)
        knn = spec_knn(monitor.features(knn_encoder(model, spec.eval.knn_features)), spec.eval)
        assert r["knn_curve"] == [[1, knn]], (r["head"], r["seed"])
    table = summarise(load_records(results)).set_index("head")
    assert table.loc["random", "knn_diff_n"] == 2 and table.loc["random", "knn_diff_verdict"] == "n/a"
    by_seed = {(r["head"], r["seed"]): r["knn_top1"] for r in records}
    expected = sum(by_seed[("random", s)] - by_seed[("baseline", s)] for s in (0, 1)) / 2
    assert table.loc["random", "knn_diff_mean"] == pytest.approx(expected)
    assert "n/a (n=2)" in (results / "cifar10.md").read_text()
    assert (results / "cifar10_moco_smoke_reference_knn_curves.png").stat().st_size > 5000


def test_a_searched_head_whose_search_chose_again_is_trained_again_with_nothing_lost(smoke_bench, tmp_path, capsys):
    import shutil

    from nasiam_bench.models.heads.genotype import load_genotype

    runs, results = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(smoke_bench.runs, runs, ignore=shutil.ignore_patterns("results-*"))
    shutil.copytree(smoke_bench.results, results)
    (searched,) = runs.glob("search-moco-*/seed0/genotype.toml")
    old = load_genotype(searched)
    other = {"projector": ["identity"] * 4}
    assert other != old.heads
    type(old)(old.framework, other, old.dataset, old.backbone, "chosen again", old.alpha).save(searched)
    bench("moco", SMOKE_BENCH, runs=runs, results=results, progress=False)
    out = capsys.readouterr().out
    assert "(another genotype): moved to" in out  # the old run set aside, not overwritten
    record = {r["head"]: r for r in load_records(results)}["nasiam"]
    assert record["genotype"] == other
    assert len(list(runs.glob("moco-cifar10-*/seed0-state-*/checkpoint.pt"))) == 1
