import dataclasses
import textwrap
import tomllib

import pytest

from nasiam_bench import catalogue
from nasiam_bench.config.spec import Spec, SpecError, available_profiles, load_spec, parse_override, spec_to_toml
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.store.identity import run_id


def write(tmp_path, text, name="exp.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
    [experiment]
    framework = "moco"
    backbone = "resnet18"
    dataset = "cifar10"
    profile = "quick"

    [train]
    lr = 0.03
"""


def test_file_then_profile_then_overrides(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.experiment.framework == "moco" and spec.train.lr == 0.03
    assert spec.experiment.profile == "quick"
    quick = tomllib.loads(catalogue.find("profiles", "quick").read_text())
    assert spec.train.epochs == quick["train"]["epochs"] and spec.experiment.width == quick["experiment"]["width"]
    explicit = load_spec(write(tmp_path, GOOD + "    epochs = 7\n", name="explicit.toml"))
    assert explicit.train.epochs == 7  # a schedule value written in the file beats the profile

    smoke = load_spec(write(tmp_path, GOOD), ["profile=smoke", "train.epochs=3", "activations=['relu', 'gelu']"])
    assert smoke.experiment.profile == "smoke" and smoke.data.train_subset == 128
    assert smoke.train.epochs == 3  # the command line beats the profile
    assert smoke.experiment.activations == ("relu", "gelu")
    assert dataclasses.is_dataclass(smoke) and isinstance(smoke.experiment.activations, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke.train.epochs = 9


def test_override_values_are_parsed_as_toml():
    assert parse_override("train.epochs=5") == ("train.epochs", 5)
    assert parse_override("train.lr=1e-3") == ("train.lr", 0.001)
    assert parse_override("train.amp=false") == ("train.amp", False)
    assert parse_override("framework=moco") == ("framework", "moco")
    assert parse_override("head=genotype:catalogue/genotypes/x.toml") == ("head", "genotype:catalogue/genotypes/x.toml")


def test_run_id_is_stable_and_tracks_what_changes_results(tmp_path):
    path = write(tmp_path, GOOD)
    a, b = load_spec(path), load_spec(path)
    assert run_id(a) == run_id(b) and len(run_id(a)) == 12
    assert run_id(load_spec(path, ["train.epochs=5"])) != run_id(a)
    # A run is (run id, seed): the bench's list of seeds is not part of a run's identity, so seed 0 of a 1-seed
    # bench is seed 0 of a 3-seed one. Where data lives, how many workers read it and the label change nothing.
    assert run_id(load_spec(path, ["seeds.values=[0, 1, 2]"])) == run_id(a)
    assert run_id(load_spec(path, ["data.workers=7", "experiment.name=x"])) == run_id(a)


def test_shown_toml_loads_back_to_the_same_run_id(tmp_path):
    spec = load_spec(write(tmp_path, GOOD), ["profile=smoke", "train.epochs=2"])
    again = load_spec(write(tmp_path, spec_to_toml(spec), name="again.toml"))
    assert run_id(again) == run_id(spec) and again.to_dict() == spec.to_dict()


def test_replace_validates():
    spec = Spec()
    assert spec.replace(**{"train.epochs": 3}).train.epochs == 3
    with pytest.raises(SpecError, match=r"train\.epochs = 0 is out of range"):
        spec.replace(**{"train.epochs": 0})


# One test per kind of bad input: each error names the file, the key, the bad value and what is valid.


def test_unknown_section(tmp_path):
    path = write(tmp_path, "[trian]\nepochs = 3\n")
    with pytest.raises(SpecError, match=r"exp.toml: unknown section \[trian\]; valid: experiment, data"):
        load_spec(path)


def test_unknown_key(tmp_path):
    path = write(tmp_path, "[train]\nepoch = 3\n")
    with pytest.raises(SpecError, match=r"exp.toml: unknown key train.epoch; valid in \[train\]: epochs,"):
        load_spec(path)


def test_wrong_type(tmp_path):
    path = write(tmp_path, '[train]\nepochs = "ten"\n')
    with pytest.raises(SpecError, match=r"exp.toml: train.epochs = 'ten' \(str\): expected int"):
        load_spec(path)
    with pytest.raises(SpecError, match=r"train.amp = 1 \(int\): expected bool"):
        load_spec(write(tmp_path, "[train]\namp = 1\n"))
    with pytest.raises(SpecError, match=r"train.epochs = True \(bool\): expected int"):
        load_spec(write(tmp_path, "[train]\nepochs = true\n"))


def test_value_out_of_range(tmp_path):
    path = write(tmp_path, "[train]\nmomentum = 1.5\n")
    with pytest.raises(SpecError, match=r"exp.toml: train.momentum = 1.5 is out of range; expected in \[0.0, 1.0\]"):
        load_spec(path)


def test_value_not_among_choices(tmp_path):
    with pytest.raises(SpecError, match=r"data.loader = 'dali'; valid: ffcv, torch"):
        load_spec(write(tmp_path, '[data]\nloader = "dali"\n'))
    with pytest.raises(
        SpecError,
        match=r"experiment.head = 'searched'; valid: baseline, nasiam, random, paper, "
        r"genotype:<...>",
    ):
        load_spec(write(tmp_path, '[experiment]\nhead = "searched"\n'))


def test_unknown_registry_name_suggests_close_match(tmp_path):
    path = write(tmp_path, '[experiment]\nframework = "mocco"\n')
    with pytest.raises(
        SpecError,
        match=r"exp.toml: experiment.framework: unknown frameworks entry 'mocco'; "
        r"did you mean 'moco'\?",
    ):
        load_spec(path)
    with pytest.raises(
        SpecError,
        match=r"experiment.activations: unknown activations entry 'rleu'; did you mean "
        r"'relu'",
    ):
        load_spec(path, ["framework=moco", "activations=['relu', 'rleu']"])


def test_empty_list(tmp_path):
    with pytest.raises(SpecError, match=r"seeds.values = \[\]: expected at least one value"):
        load_spec(write(tmp_path, "[seeds]\nvalues = []\n"))


@pytest.mark.parametrize("profile", available_profiles())
@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_every_profile_loads_for_every_framework(profile, framework):
    spec = load_spec(f"{framework}_cifar10", [f"profile={profile}"])
    assert spec.experiment.profile == profile and spec.train.epochs >= 1 and spec.search.epochs >= 1


def test_unknown_profile(tmp_path):
    with pytest.raises(SpecError, match=r"unknown profile 'fast'; valid: gpu, gpu-short, paper, quick, smoke"):
        load_spec(write(tmp_path, GOOD), ["profile=fast"])


def test_bad_override(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(SpecError, match=r"override 'epochs' is not key=value"):
        load_spec(path, ["epochs"])
    with pytest.raises(
        SpecError,
        match=r"command line: key 'epochs' is ambiguous; write one of search.epochs, "
        r"train.epochs",
    ):
        load_spec(path, ["epochs=3"])
    with pytest.raises(SpecError, match=r"command line: unknown key 'train.lrr'; valid in \[train\]: epochs"):
        load_spec(path, ["train.lrr=3"])


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"exp.toml: not valid TOML"):
        load_spec(write(tmp_path, "[train\n"))
    with pytest.raises(SpecError, match=r"spec file 'nope.toml' not found"):
        load_spec("nope.toml")


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
def test_a_profile_sizes_the_schedule_per_framework(framework, tmp_path, monkeypatch):
    (tmp_path / "profiles").mkdir()
    tmp_path = tmp_path / "profiles"  # a user's catalogue folder: looked in before the shipped one
    (tmp_path / "sized.toml").write_text(
        f"[train]\nepochs = 6\n\n[{framework}.train]\nepochs = 12\n\n[{framework}.eval]\nknn_every = 3\n"
    )
    monkeypatch.setenv("NASIAM_CATALOGUE", str(tmp_path.parent))
    for other in FRAMEWORKS.list():
        spec = load_spec(f"{other}_cifar10", ["profile=sized"])
        assert spec.train.epochs == (12 if other == framework else 6), other
        assert spec.eval.knn_every == (3 if other == framework else Spec().eval.knn_every), other
    (tmp_path / "bad.toml").write_text(f"[{framework}.train]\nepoch = 12\n")
    with pytest.raises(SpecError, match=rf"bad.toml \[{framework}\]: unknown key train.epoch"):
        load_spec(f"{framework}_cifar10", ["profile=bad"])


def test_an_optional_list_is_checked_as_a_list_and_unset_changes_no_identity(tmp_path):
    path = write(tmp_path, GOOD)
    unset = load_spec(path)
    assert unset.eval.linear_milestones is None and "linear_milestones" not in unset.hashed_values()["eval"]
    stepped = load_spec(path, ["eval.linear_milestones=[0.6, 0.8]"])
    assert stepped.eval.linear_milestones == (0.6, 0.8) and run_id(stepped) != run_id(unset)
    with pytest.raises(SpecError, match=r"eval.linear_milestones = 1.5 is out of range; expected in \[0.0, 1.0\]"):
        load_spec(path, ["eval.linear_milestones=[0.6, 1.5]"])
    with pytest.raises(SpecError, match=r"eval.linear_milestones = \[\]: expected at least one value"):
        load_spec(path, ["eval.linear_milestones=[]"])
    with pytest.raises(SpecError, match=r"eval.linear_milestones = 'x': expected a list of float"):
        load_spec(path, ["eval.linear_milestones=x"])


def test_a_value_of_two_kinds_takes_either_and_names_both_when_neither(tmp_path):
    path = write(tmp_path, GOOD)
    assert load_spec(path, ["eval.knn_weighted=cosine"]).eval.knn_weighted == "cosine"
    assert load_spec(path, ["eval.knn_weighted=false"]).eval.knn_weighted is False
    with pytest.raises(SpecError, match=r"eval.knn_weighted = 2 \(int\): expected bool or str"):
        load_spec(path, ["eval.knn_weighted=2"])
    with pytest.raises(SpecError, match=r"eval.knn_weighted = 'exp'; valid: True, False, cosine"):
        load_spec(path, ["eval.knn_weighted=exp"])
