import json
import tomllib

import pytest
import torch

from nasiam_bench.cli import main
from nasiam_bench.config.spec import load_spec
from nasiam_bench.core.registry import FRAMEWORKS, NasiamBenchError
from nasiam_bench.engine.train import TrainingDiverged, pretrain
from tests.conftest import REPO, TEST_DATA_ROOT

# The frameworks NASiam's code covers: those its recipe has tables for.
NASIAM_CODE_FRAMEWORKS = sorted(
    set(tomllib.loads((REPO / "nasiam_bench" / "catalogue" / "recipes" / "nasiam-code.toml").read_text())) - {"recipe"}
)

pytestmark = pytest.mark.usefixtures("cifar10_data")


def smoke(framework, *overrides):
    return load_spec(f"{framework}_cifar10", ["profile=smoke", f"data.root={TEST_DATA_ROOT}", *overrides])


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_cli_pretrain_then_eval(framework, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["pretrain", f"{framework}_cifar10", "profile=smoke", f"data.root={TEST_DATA_ROOT}", "--out", str(out)])
        == 0
    )
    assert "finished" in capsys.readouterr().out
    log = (out / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,loss,lr") and len(log) == 2
    assert any((out / "tensorboard").iterdir())
    assert main(["eval", str(out / "checkpoint.pt"), "--floor"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["knn_top1"] <= 100 and 0 <= result["linear_top1"] <= result["linear_top5"] <= 100
    assert result["linear_top5"] > 30  # any classifier scores 50% top-5 on 10 balanced classes
    assert result["std_ratio"] > 0 and result["effective_rank"] >= 1 and "untrained_knn_top1" in result
    assert json.loads((out / "eval.json").read_text()) == result


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    from nasiam_bench.models.frameworks.simsiam import SimSiam

    real = SimSiam.forward

    def poisoned(self, view1, view2):
        out = real(self, view1, view2)
        return {**out, "loss": out["loss"] * float("nan")}

    monkeypatch.setattr(SimSiam, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"the simsiam loss is nan at epoch 1, step 1 .* lower train.lr"):
        pretrain(smoke("simsiam"), 0, tmp_path, progress=False)


def test_checkpoint_of_another_framework_or_run_fails_clearly(tmp_path, capsys):
    moco = pretrain(smoke("moco", "data.train_subset=64"), 0, tmp_path, progress=False)
    mismatch = r"holds the pretrain state of identity \w{12}, not \w{12} .*--no-resume"
    with pytest.raises(NasiamBenchError, match=mismatch):
        pretrain(smoke("simsiam"), 0, tmp_path, progress=False)
    with pytest.raises(NasiamBenchError, match=r"holds the pretrain state of identity \w{12}, not \w{12}"):
        pretrain(smoke("moco", "data.train_subset=64"), 1, tmp_path, progress=False)
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["eval", str(bogus)]) == 2
    assert "not a nasiam-bench pretrain state" in capsys.readouterr().err
    torch.save({"weights": 1}, bogus)
    assert main(["eval", str(bogus)]) == 2
    assert moco.checkpoint.is_file()


@pytest.mark.parametrize("framework", NASIAM_CODE_FRAMEWORKS)
def test_nasiam_code_recipe_pretrains_and_evaluates_as_the_papers_code(framework, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["recipe=nasiam-code", "profile=smoke", f"data.root={TEST_DATA_ROOT}", "data.train_subset=128"]
    assert main(["pretrain", f"{framework}_cifar10", *common, "train.epochs=2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", str(out / "checkpoint.pt")]) == 0
    result = json.loads(capsys.readouterr().out)
    best = framework != "simclr"  # SimCLR's code evaluates its last epoch
    assert result["checkpoint_selection"] == ("best-on-test" if best else "final")
    assert (out / "best.pt").is_file() == best and 1 <= result["selected_epoch"] <= 2
    if best:  # the epoch kept is the one of best test kNN in the log
        log = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
        knn = [float(row[log[0].index("knn_top1")]) for row in log[1:]]
        assert result["selected_epoch"] == 1 + knn.index(max(knn))
    colour = ", colour jitter and grayscale" if framework == "simclr" else ""  # SimCLR's linear.py recolours
    protocol = f"resized crop (8%-100%) and flip{colour}, best test epoch (1 of 1): selected on test"
    assert result["linear_protocol"].startswith(protocol)
    assert 0 <= result["linear_top1"] <= result["linear_top5"] <= 100


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_compile_keeps_the_state_dict_keys_so_checkpoints_move_between_compiled_and_eager_runs(framework):
    from nasiam_bench.core.compile import compile_model
    from nasiam_bench.models.build import build_model

    model = build_model(smoke(framework))
    keys = list(model.state_dict())
    assert list(compile_model(model).state_dict()) == keys
