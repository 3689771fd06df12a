"""Heads of one seed pre-trained in lockstep (issue 21): one loader for all, and each head's weights bit-identical
to its separate run's, also when the lockstep is interrupted and resumed."""

import pytest

from nasiam_bench.config.spec import SpecError, load_spec
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.engine.lockstep import Member, pretrain_lockstep
from nasiam_bench.engine.train import pretrain
from nasiam_bench.store.checkpoints import read_state
from nasiam_bench.store.resolve import resolve_genotype
from tests.conftest import SMOKE_BENCH, TEST_DATA_ROOT, assert_identical

pytestmark = pytest.mark.usefixtures("cifar10_data")


def smoke(framework, *overrides):
    base = ["profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=96", "train.batch_size=16"]
    return load_spec(f"{framework}_cifar10", [*base, "train.epochs=2", "eval.knn_every=0", *overrides])


def _members(framework, root):
    out = []
    for head in ("baseline", "random"):
        spec = smoke(framework, f"experiment.head={head}")
        out.append(Member(spec, root / head, resolve_genotype(spec, 0, root)))
    return out


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_lockstep_heads_end_with_their_separate_runs_weights_also_when_resumed(framework, tmp_path):
    members = _members(framework, tmp_path / "lockstep")
    first = pretrain_lockstep(members, 0, stop_after=1, progress=False)
    assert [r.epochs_done for r in first] == [1, 1] and not any(r.finished for r in first)
    together = pretrain_lockstep(members, 0, progress=False)  # resumed from each head's own checkpoint
    assert all(r.finished and r.lockstep == 2 for r in together)
    for m, shared in zip(members, together, strict=True):
        alone = pretrain(m.spec, 0, tmp_path / "alone" / m.out_dir.name, genotype=m.genotype, progress=False)
        assert alone.lockstep == 1 and [r["epoch"] for r in alone.history] == [r["epoch"] for r in shared.history]
        mine = read_state(shared.checkpoint, "pretrain")["model"]
        theirs = read_state(alone.checkpoint, "pretrain")["model"]
        assert_identical(mine, theirs, where=f"{framework} {m.out_dir.name}")
        assert [r["loss"] for r in shared.history] == [r["loss"] for r in alone.history]


def test_lockstep_refuses_heads_that_would_read_different_batches(tmp_path):
    a = Member(smoke("moco"), tmp_path / "a")
    b = Member(smoke("moco", "train.batch_size=32"), tmp_path / "b")
    with pytest.raises(SpecError, match=r"lockstep: .*b differs from .*a in train.batch_size"):
        pretrain_lockstep([a, b], 0, progress=False)


def test_a_lockstep_bench_records_what_a_plain_bench_records(smoke_bench, tmp_path, capsys):
    from nasiam_bench.bench.runner import bench

    plain, overrides = smoke_bench.records, SMOKE_BENCH
    together = bench("moco", overrides, runs=tmp_path / "r2", results=tmp_path / "s2", progress=False, lockstep=True)
    assert "lockstep seed 0: baseline, nasiam, paper" in capsys.readouterr().out
    assert [r["head"] for r in together] == [r["head"] for r in plain]
    for a, b in zip(plain, together, strict=True):
        assert (a["knn_top1"], a.get("linear_top1")) == (b["knn_top1"], b.get("linear_top1")), a["head"]
        assert a["identity"] == b["identity"]
        if a["head"] != "untrained":
            assert a["lockstep_heads"] == 1 and b["lockstep_heads"] == 3


def test_a_lockstep_that_falls_back_closes_every_writer_it_opened(tmp_path, monkeypatch):
    """Heads whose checkpoints are at different epochs are refused (the bench then trains them one by one), and
    the TensorBoard writers the lockstep opened for them are closed."""
    from nasiam_bench.engine import train

    opened = []

    class Writer:
        closed = False

        def __init__(self, *args):
            opened.append(self)

        def add_scalar(self, *args):
            pass

        def close(self):
            self.closed = True

    members = _members("moco", tmp_path)
    pretrain(members[0].spec, 0, members[0].out_dir, genotype=members[0].genotype, stop_after=1, progress=False)
    monkeypatch.setattr(train, "_tensorboard", Writer)
    with pytest.raises(SpecError, match="checkpoints are at different epochs"):
        pretrain_lockstep(members, 0, progress=False)
    assert len(opened) == 2 and all(w.closed for w in opened)
