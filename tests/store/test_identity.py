"""Results right by construction: one identity per result (``nasiam_bench.store.identity``), used by every folder,
record, cache, resume check and table. One test per defect found off the beaten path (issue 19), each over every
registry entry it concerns."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from nasiam_bench.bench.runner import bench
from nasiam_bench.cli import main
from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.data.loaders import LoaderConfig, ssl_loader
from nasiam_bench.engine.loop import TrainingDiverged
from nasiam_bench.engine.train import pretrain
from nasiam_bench.models.heads.genotype import GENOTYPES_DIR, Genotype, published_genotypes
from nasiam_bench.report.tables import presentable, summarise
from nasiam_bench.search.base import GradientStrategy
from nasiam_bench.search.run import run_search
from nasiam_bench.store.checkpoints import StateMismatch, save_state
from nasiam_bench.store.claims import claim, holder
from nasiam_bench.store.identity import identity, run_id, search_id
from nasiam_bench.store.results import find_record, load_records, record_path, write_record
from tests.conftest import TEST_DATA_ROOT, assert_identical
from tests.report.test_strategy_table import _record as strategy_record

SEARCHING = [s for s in SEARCH_STRATEGIES.list() if s != "none"]
GRADIENT = [s for s in SEARCHING if issubclass(SEARCH_STRATEGIES.get(s), GradientStrategy)]
NOT_CONTROL = [s for s in SEARCHING if s != "random"]


def smoke(framework, *overrides):
    return load_spec(f"{framework}_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", *overrides])


def _genotype_file(path, framework, op):
    layers = {h: c.layers for h, c in FRAMEWORKS.get(framework).search_cells(8).items()}
    return Genotype(framework, {h: [op] * n for h, n in layers.items()}).save(path)


# ----------------------------------------------------------------------------- 1. the strategy table's grouping


def _record(head, seed, knn, strategy="-", run="r", spec=None):
    """A hand-made record (``tests.report.test_strategy_table``'s) of run ``head-strategy-run`` with its spec."""
    return {
        **strategy_record(head, seed, knn, strategy),
        "run_id": f"{head}-{strategy}-{run}",
        "head_params": 100,
        "genotype": {"projector": ["identity"] * 4} if head == "nasiam" else None,
        "spec": spec or {"experiment": {"strategy": strategy}, "search": {"epochs": 2}},
    }


@pytest.mark.parametrize("strategy", NOT_CONTROL)
def test_strategy_table_keeps_two_search_settings_apart_and_pairs_each_with_its_random_twin(strategy):
    from nasiam_bench.report.strategy_table import compare_strategies
    from nasiam_bench.report.strategy_table import presentable as shown_strategies

    def spec(strat, epochs):
        # also a bench option and another strategy's setting that differ: neither changes this strategy's result
        rank = "knn" if epochs == 2 else "ssl_loss"
        experiment = {"strategy": strat, "perturbation_check": epochs == 8}
        return {"experiment": experiment, "search": {"epochs": epochs, "random_rank": rank}}

    records = [_record("baseline", s, 30.0) for s in range(3)]
    for epochs, shift, control_shift in ((2, 1.0, 0.0), (8, 3.0, 5.0)):
        for s in range(3):
            records.append(_record("nasiam", s, 30.0 + shift + s, strategy, f"e{epochs}", spec(strategy, epochs)))
            records.append(_record("nasiam", s, 30.0 + control_shift, "random", f"e{epochs}", spec("random", epochs)))
    table = compare_strategies(records)
    rows = table[table["strategy"] == strategy]
    assert len(rows) == 2  # two identities: never averaged into one row
    for _, row in rows.iterrows():
        assert row["seeds"] == 3 and row["knn_vs_baseline"].n == 3
    by_epochs = {r["search_differs"]: r for _, r in rows.iterrows()}
    assert set(by_epochs) == {"search.epochs=2", "search.epochs=8"}
    # Δ vs random search: each with its twin (the same search settings), not an arbitrary random-search run
    assert by_epochs["search.epochs=2"]["knn_vs_random"].mean == pytest.approx(2.0)
    assert by_epochs["search.epochs=8"]["knn_vs_random"].mean == pytest.approx(-1.0)
    assert "search differs in" in shown_strategies(table).columns


def test_an_ambiguous_reference_is_not_paired_by_guess():
    from nasiam_bench.report.stats import paired_by_seed

    head = pd.DataFrame([_record("nasiam", s, 31.0) for s in range(3)])
    two = pd.DataFrame([_record("baseline", s, 30.0, run=r) for s in range(3) for r in ("a", "b")])
    assert paired_by_seed(head, two, "knn_top1").n == 0
    assert paired_by_seed(head, two[two["run_id"].str.endswith("a")], "knn_top1").n == 3


# -------------------------------------------------------------------------- 2. an edited genotype is another run


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_a_genotype_file_is_identified_by_its_ops_not_its_path(framework, tmp_path):
    a = _genotype_file(tmp_path / "a.toml", framework, "linear_relu")
    b = _genotype_file(tmp_path / "elsewhere" / "b.toml", framework, "linear_relu")
    ids = [run_id(smoke(framework, f"head=genotype:{p}")) for p in (a, b)]
    assert ids[0] == ids[1]  # the same ops under another name: the same experiment
    _genotype_file(a, framework, "linear_silu")
    assert run_id(smoke(framework, f"head=genotype:{a}")) != ids[0]


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_an_edited_genotype_does_not_resume_the_old_weights(framework, tmp_path):
    path = _genotype_file(tmp_path / "g.toml", framework, "linear_relu")
    spec = smoke(framework, f"head=genotype:{path}", "train.epochs=2", "data.train_subset=64")
    pretrain(spec, 0, tmp_path / "run", progress=False, stop_after=1)
    _genotype_file(path, framework, "linear_silu")
    edited = smoke(framework, f"head=genotype:{path}", "train.epochs=2", "data.train_subset=64")
    with pytest.raises(StateMismatch, match=r"holds the pretrain state of identity \w{12}, not \w{12}"):
        pretrain(edited, 0, tmp_path / "run", progress=False)


def test_a_record_of_another_genotype_is_not_reused(tmp_path, capsys):
    record = {**_record("nasiam", 0, 30.0), "identity": "old"}
    path = write_record(tmp_path, record)
    assert find_record(path, "old")["knn_top1"] == 30.0
    assert find_record(path, "new") is None  # a re-searched genotype: the run is done again
    assert "records state old, not new: run again" in capsys.readouterr().out


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_the_state_identity_follows_the_heads_ops(framework):
    spec = smoke(framework, "head=nasiam")
    relu = {"projector": ["linear_relu"] * 4}
    assert identity("state", spec, 0, relu) != identity("state", spec, 0, {"projector": ["linear_silu"] * 4})
    assert identity("state", spec, 0, relu) != identity("state", spec, 1, relu)
    assert identity("state", spec, 0, relu) == identity("state", spec, 0, dict(relu))


# ------------------------------------------------------------------- 3. saved genotypes live apart from the paper's


def test_save_as_refuses_paths_and_existing_names_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NASIAM_GENOTYPES", str(tmp_path / "saved"))
    common = ["moco_cifar10", "profile=smoke", f"data.root={TEST_DATA_ROOT}", "--out", str(tmp_path / "s")]
    for bad in ("../../x", "a/b", "..", "/abs"):
        assert main(["search", *common, "--save-as", bad]) == 2
        assert "not a path" in capsys.readouterr().err
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "mine.toml").write_text("x")
    assert main(["search", *common, "--save-as", "mine"]) == 2
    assert "exists; choose another name, or --force" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # refused before the search started


@pytest.mark.usefixtures("cifar10_data")
def test_save_as_a_paper_name_leaves_the_paper_genotype_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("NASIAM_GENOTYPES", str(tmp_path / "saved"))
    paper = GENOTYPES_DIR / "moco_cifar10_resnet18.toml"
    before, published = paper.read_bytes(), published_genotypes()
    common = ["moco_cifar10", "profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128"]
    assert main(["search", *common, "--out", str(tmp_path / "s"), "--save-as", "moco_cifar10_resnet18"]) == 0
    assert paper.read_bytes() == before and published_genotypes() == published
    assert (tmp_path / "saved" / "moco_cifar10_resnet18.toml").is_file()


# --------------------------------------------------------------- 4. the search cache covers what the search reads


@pytest.mark.parametrize("strategy", SEARCHING)
def test_the_search_identity_covers_amp_and_what_the_strategy_reads(strategy):
    spec = smoke("moco", f"strategy={strategy}")
    assert search_id(spec) != search_id(spec.replace(**{"train.amp": not spec.train.amp}))
    assert search_id(spec) == search_id(spec.replace(**{"train.epochs": 7, "eval.linear_epochs": 3}))
    knn_changes = search_id(spec) != search_id(spec.replace(**{"eval.knn_k": 7}))
    assert knn_changes == ("eval.knn_k" in SEARCH_STRATEGIES.get(strategy).reads)
    assert knn_changes == (strategy == "random")  # only random search ranks by kNN


def test_the_dataset_digest_is_part_of_every_identity_and_its_place_is_not(tmp_path):
    spec = smoke("moco")
    copy = tmp_path / "copy" / "cifar10"
    copy.mkdir(parents=True)
    meta = json.loads((TEST_DATA_ROOT / "cifar10" / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps(meta))
    moved = spec.replace(**{"data.root": str(tmp_path / "copy")})
    assert run_id(moved) == run_id(spec) and search_id(moved) == search_id(spec)
    (copy / "meta.json").write_text(json.dumps({**meta, "source_digest": "another source"}))
    assert run_id(moved) != run_id(spec) and search_id(moved) != search_id(spec)


# ---------------------------------------------------------------------- 5. search state resumes only its own


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("strategy", SEARCHING)
def test_a_search_state_of_another_spec_is_refused(strategy, tmp_path):
    spec = smoke("simsiam", f"strategy={strategy}", "data.train_subset=128")
    other = spec.replace(**{"search.lr": 0.123})
    save_state(tmp_path / "search_state.pt", "search", identity("search_state", other, 0), {"epoch": 1})
    with pytest.raises(StateMismatch, match=r"search_state.pt holds the search state of identity \w{12}, not \w{12}"):
        run_search(spec, 0, tmp_path, progress=False)
    (tmp_path / "search_state.pt").unlink()
    torch.save({"strategy": {}, "epoch": 1, "history": [], "seconds": 0.0}, tmp_path / "search_state.pt")
    with pytest.raises(Exception, match=r"not a nasiam-bench search state of this version"):  # no format tag
        run_search(spec, 0, tmp_path, progress=False)


# ----------------------------------------------------------------------- 6. a diverged search writes no genotype


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("strategy", SEARCHING)
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_a_search_whose_loss_turns_non_finite_stops_and_writes_no_genotype(framework, strategy, tmp_path, monkeypatch):
    cls = FRAMEWORKS.get(framework)
    real = cls.forward

    def poisoned(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        return {**out, "loss": out["loss"] * float("nan")}

    monkeypatch.setattr(cls, "forward", poisoned)
    spec = smoke(framework, f"strategy={strategy}", "data.train_subset=128")
    with pytest.raises(TrainingDiverged, match=rf"search {strategy}: the loss is nan at epoch 1, step 1; no genotype"):
        run_search(spec, 0, tmp_path, progress=False)
    assert not (tmp_path / "genotype.toml").exists() and not (tmp_path / "search.json").exists()


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("strategy", GRADIENT)
def test_a_search_whose_alpha_turns_non_finite_writes_no_genotype(strategy, tmp_path, monkeypatch):
    real = GradientStrategy.weight_step

    def breaking(self, *args, **kwargs):
        loss = real(self, *args, **kwargs)
        if self.steps == self.total_steps:  # after the last step: the loss stayed finite, alpha did not
            with torch.no_grad():
                next(iter(self.heads.values())).alpha.fill_(float("nan"))
        return loss

    monkeypatch.setattr(GradientStrategy, "weight_step", breaking)
    with pytest.raises(TrainingDiverged, match=r"alpha of \w+ is not finite after epoch 1; no genotype is written"):
        run_search(smoke("moco", f"strategy={strategy}", "data.train_subset=128"), 0, tmp_path, progress=False)
    assert not (tmp_path / "genotype.toml").exists() and not (tmp_path / "search_state.pt").exists()


# ------------------------------------------------------- 7. the torch loader's draws do not depend on its workers


@pytest.mark.usefixtures("cifar10_data")
def test_the_torch_loader_draws_the_same_batches_whatever_its_workers(cifar10_data, cifar10_subset):
    def batches(workers, epochs=(0, 1)):
        config = LoaderConfig(batch_size=32, image_size=32, seed=3, workers=workers, kind="torch")
        loader = ssl_loader(cifar10_data, "train", config, cifar10_subset[:96])
        out = []
        for epoch in epochs:
            loader.set_epoch(epoch)
            out.append([b for b in loader])
        return out

    reference = batches(0)
    assert not torch.equal(reference[0][0][0], reference[1][0][0])  # epochs differ
    for workers in (1, 2):
        assert_identical(batches(workers), reference, f"{workers} workers")
    assert_identical(batches(2, epochs=(1,))[0], reference[1], "epoch 1 alone")  # a resumed run's first epoch
    state = torch.get_rng_state()
    batches(0)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left as it was


# ---------------------------------------------------------- 8. a run is claimed by the process that runs it


def test_a_live_claim_is_respected_and_a_stale_one_taken_over(tmp_path):
    path = tmp_path / "run.claim"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path.write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid, "started": "now"}))
        with claim(path) as other:
            assert other is not None and other.pid == sleeper.pid
        assert path.is_file()  # not ours to remove
    finally:
        sleeper.kill()
        sleeper.wait()
    assert holder(path) is None  # its process is gone: stale
    with claim(path) as other:
        assert other is None and json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("head", ["baseline", "random"])
def test_a_bench_skips_the_runs_another_live_bench_claimed(head, tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    overrides = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128", "eval.test_subset=200"]
    overrides.append("bench_heads=['baseline', 'random']")
    spec = load_spec("moco_cifar10", [*overrides, f"head={head}"])
    path = record_path(
        results, {"dataset": "cifar10", "framework": "moco", "head": head, "run_id": run_id(spec), "seed": 0}
    )
    path.parent.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        claim_file = path.with_suffix(".claim")
        claim_file.write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid, "started": "now"}))
        records = bench("moco", overrides, runs=runs, results=results, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"moco {head} seed 0: claimed by" in capsys.readouterr().out
    assert head not in {r["head"] for r in records} and not path.exists()
    assert {r["head"] for r in load_records(results)} == {"untrained", "baseline", "random"} - {head}
    again = bench("moco", overrides, runs=runs, results=results, progress=False)  # the claim is stale now
    assert {r["head"] for r in again} == {"untrained", "baseline", "random"}


# ------------------------------------------------------------ 9. head params: the mean and range over the seeds


def test_head_params_show_the_mean_and_range_over_seeds():
    records = [
        {**_record("nasiam", s, 30.0, "darts"), "head_params": p} for s, p in enumerate((16768, 25216, 20992))
    ] + [_record("baseline", s, 30.0) for s in range(3)]
    shown = presentable(summarise(records)).set_index("head")
    assert shown.loc["nasiam", "head params"] == "20,992 (16,768–25,216)"
    assert shown.loc["baseline", "head params"] == "100"


# ------------------------------------------------------ re-keying: committed records under today's identities


def test_committed_records_are_filed_under_the_identities_their_contents_give():
    from nasiam_bench.store.identity import record_identities
    from tests.conftest import REPO

    records = list((REPO / "results" / "records").rglob("*.json"))
    assert records
    for path in records:
        record = json.loads(path.read_text())
        assert {k: record[k] for k in record_identities(record)} == record_identities(record), path
        assert record_path(REPO / "results", record) == path


def test_rekey_files_a_record_anew_when_its_identity_changes(tmp_path):
    from tests.conftest import REPO

    source = next((REPO / "results" / "records").rglob("baseline-*.json"))
    target = tmp_path / "records" / "cifar10" / "moco" / source.name
    target.parent.mkdir(parents=True)
    shutil.copyfile(source, target)
    record = json.loads(target.read_text())
    target.write_text(json.dumps({**record, "run_id": "000000000000", "identity": "x"}))
    assert main(["rekey", "--results", str(tmp_path)]) == 0
    assert json.loads(target.read_text()) == record


@pytest.mark.usefixtures("cifar10_data")
@pytest.mark.parametrize("what", ["pretrain", "search"])
def test_a_run_folder_another_live_process_holds_is_refused(what, tmp_path):
    from nasiam_bench.store.claims import RunClaimed

    name = "run.claim" if what == "pretrain" else "search.claim"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / name).write_text(json.dumps({"host": os.uname().nodename, "pid": sleeper.pid, "started": "now"}))
        spec = smoke("moco", "data.train_subset=64")
        with pytest.raises(RunClaimed, match=rf"is being run by .*:{sleeper.pid}"):
            if what == "pretrain":
                pretrain(spec, 0, tmp_path, progress=False)
            else:
                run_search(spec, 0, tmp_path, progress=False)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "search_state.pt").exists()


# ------------------------------------------------- a strategy's own settings are part of its identity only

STRATEGY_FIELDS = {"search.random_samples": 3, "search.random_rank": "knn", "search.beta_decay": 5.0,
                   "search.tau_max": 3.0, "search.tau_min": 0.5}  # fmt: skip


@pytest.mark.parametrize("strategy", SEARCH_STRATEGIES.list())
@pytest.mark.parametrize("key", sorted(STRATEGY_FIELDS))
def test_a_strategy_specific_setting_changes_only_that_strategys_identity(strategy, key):
    from nasiam_bench.config.spec import SearchSection

    only = SearchSection.__dataclass_fields__[key.removeprefix("search.")].metadata["only"]
    spec = smoke("moco", f"strategy={strategy}", "head=nasiam")
    changed = spec.replace(**{key: STRATEGY_FIELDS[key]})
    assert (search_id(changed) != search_id(spec)) == (strategy in only)
    assert (run_id(changed) != run_id(spec)) == (strategy in only)


def test_an_older_record_says_its_random_search_ranked_by_knn(tmp_path):
    from nasiam_bench.store.results import OLD_RECORD_FORMATS, strategy_label

    record = {**_record("nasiam", 0, 30.0, "random"), "format": OLD_RECORD_FORMATS[0]}
    path = tmp_path / "records" / "cifar10" / "moco" / "nasiam-x-seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    (loaded,) = load_records(tmp_path)
    assert loaded["spec"]["search"]["random_rank"] == "knn" and strategy_label(loaded) == "random (kNN: uses labels)"
    assert strategy_label({**loaded, "spec": {"search": {"random_rank": "ssl_loss"}}}) == "random"
