"""Experiment specs: frozen dataclasses read from TOML, overlaid with a profile and ``key=value`` overrides.

Resolution order, later wins: the dataclass defaults, the profile (``catalogue/profiles/<profile>.toml``: the
schedule's scale), the recipe (``catalogue/recipes/<recipe>.toml``: the hyperparameters of the framework chosen, from
its paper or from NASiam's code), the experiment file (what defines the experiment; a value written there is
deliberate), the command-line overrides. So the TOML that ``show`` prints loads back to the same spec. Every value is
checked at load; an error names the file, the key, the bad value and what is valid. The hash of the resolved spec
(without the fields that only say where things live) is its run id (``nasiam_bench.store.identity``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasiam_bench import catalogue
from nasiam_bench.core.registry import NasiamBenchError, registry

# A recipe sets how a framework trains, never the scale of the schedule, which is the profile's.
RECIPE_SECTIONS = ("framework", "search", "train", "eval", "data")
RECIPE_DATA_KEYS = ("crop_scale",)  # of [data], only the augmentation: the rest says where and how much
SCHEDULE_KEYS = (
    "search.epochs",
    "search.batch_size",
    "train.epochs",
    "train.batch_size",
    "eval.linear_epochs",
    "eval.linear_batch_size",
)


HEAD_KINDS = ("baseline", "nasiam", "random", "paper")


class SpecError(NasiamBenchError, ValueError):
    """An experiment spec, profile or override that does not validate."""


def _opt(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple = (),
    prefixes: tuple = (),
    registry: str | None = None,
    hashed: bool = True,
    only: tuple[str, ...] = (),
    unset_means: Any = None,
    read_by: str = "",
    doc: str = "",
) -> Any:
    """A dataclass field carrying its validation rules in metadata; ``only``: the search strategies whose numbers
    it changes (it is part of no other strategy's identity)."""
    meta = {
        "only": only,
        "lo": lo,
        "hi": hi,
        "choices": choices,
        "prefixes": prefixes,
        "registry": registry,
        "hashed": hashed,
        "unset_means": unset_means,  # an optional value given equal to this is the same as unset
        "read_by": read_by,  # "gradient": gradient searches only; "augmented probe": that probe only
        "doc": doc,
        "empty_ok": default == (),  # a list whose default is empty may be given empty
    }
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


def _lr_steps_opt(what: str) -> Any:
    """``what``'s learning-rate steps: every step, or once an epoch as NASiam's code's ``adjust_learning_rate``."""
    return _opt(
        None,
        choices=("step", "epoch"),
        unset_means="step",
        doc=f"{what}: learning rate changed every step, or once an epoch (NASiam's code); unset: every step",
    )


@dataclass(frozen=True)
class ExperimentSection:
    name: str = _opt("", hashed=False, doc="a label for tables; not part of the run id")
    profile: str = _opt("quick", doc="overlay from catalogue/profiles/")
    recipe: str = _opt("reference", doc="overlay from catalogue/recipes/: reference (the papers) | nasiam-code")
    framework: str = _opt("simsiam", registry="frameworks")
    backbone: str = _opt("resnet18", registry="backbones")
    cifar_stem: bool = _opt(True, doc="3x3 stride-1 stem without max-pool, for 32x32 images")
    width: float = _opt(1.0, lo=0.0625, hi=8.0, doc="channel multiplier of the backbone")
    dataset: str = _opt("cifar10", registry="datasets")
    strategy: str = _opt("darts", registry="search_strategies")
    activations: tuple[str, ...] = _opt(("relu", "silu", "hardswish", "elu"), registry="activations")
    bench_heads: tuple[str, ...] = _opt(
        ("baseline", "nasiam", "paper"),
        choices=HEAD_KINDS,
        prefixes=("ops:",),
        hashed=False,
        doc="the heads `bench` pre-trains and compares ('paper' where the paper published a genotype; "
        "ops:<head>=<op>,... a genotype by its ops, as `groundtruth` lists them)",
    )
    bench_strategies: tuple[str, ...] = _opt(
        (),
        registry="search_strategies",
        hashed=False,
        doc="the strategies whose searched head `bench` compares, each a row; empty: experiment.strategy alone",
    )
    perturbation_check: bool = _opt(
        False,
        hashed=False,
        doc="bench: run each gradient search again with alpha perturbed by 1e-6 and record the share of layers "
        "that keep their op",
    )
    head: str = _opt(
        "baseline",
        choices=HEAD_KINDS,
        prefixes=("genotype:", "ops:"),
        doc="baseline | nasiam | random | paper | genotype:<file> | ops:<head>=<op>,<op>,...[;<head>=...]",
    )
    plan_by: str = _opt(
        "seed",
        choices=("seed", "head"),
        hashed=False,
        doc="the order of a bench's jobs: every head of one seed, then the next seed (a first look at every head); "
        "or every seed of one head, then the next head (whole genotypes first: `groundtruth` sets it)",
    )
    wandb: str = _opt(
        "off",
        choices=("off", "offline", "online"),
        hashed=False,
        doc="track pre-training with Weights & Biases (pip install 'nasiam-bench[wandb]'): offline (files in the "
        "run folder, `wandb sync` later) or online",
    )
    remake_without_measures: bool = _opt(
        False,
        hashed=False,
        doc="bench: a head's record made before records kept the label-free measures is made again (its "
        "accuracies checked against the old ones); `groundtruth` sets it",
    )


@dataclass(frozen=True)
class DataSection:
    root: str = _opt("", hashed=False, doc="data root; empty: $NASIAM_DATA, else ./data")
    loader: str = _opt("ffcv", choices=("ffcv", "torch"))
    image_size: int = _opt(32, lo=8, hi=1024)
    train_subset: int = _opt(0, lo=0, doc="class-stratified training subset size; 0: the whole split")
    workers: int = _opt(2, lo=0, hi=256, hashed=False)
    crop_scale: tuple[float, ...] = _opt((0.2, 1.0), lo=0.01, hi=1.0, doc="RandomResizedCrop's area range, both views")


@dataclass(frozen=True)
class SearchSection:
    epochs: int = _opt(10, lo=1)
    batch_size: int = _opt(64, lo=1)
    lr: float = _opt(0.05, lo=0.0, doc="weight learning rate during search")
    arch_lr: float = _opt(3e-4, read_by="gradient", lo=0.0, doc="learning rate of the architecture weights alpha")
    arch_weight_decay: float = _opt(1e-3, read_by="gradient", lo=0.0)
    arch_optimizer: str = _opt("adam", read_by="gradient", choices=("adam", "adamw"))
    arch_betas: tuple[float, ...] = _opt(
        (0.5, 0.999), read_by="gradient", lo=0.0, hi=0.999999, doc="Adam's betas for alpha"
    )
    arch_steps: str = _opt(
        "batch", read_by="gradient", choices=("batch", "epoch"), doc="an alpha step per weight step, or per epoch"
    )
    weight_optimizer: str = _opt("sgd", choices=("sgd", "adam"), doc="the weights' optimiser during the search")
    weight_decay: float = _opt(5e-4, lo=0.0, doc="the weights' weight decay during the search")
    lr_scaling: str = _opt("linear", choices=("linear", "none"), doc="search.lr x batch/256, or as it is")
    schedule: str = _opt("cosine", choices=("cosine", "constant"), doc="the weights' learning rate over the search")
    lr_steps: str | None = _lr_steps_opt("the search's weights")
    encoder_momentum: float | None = _opt(
        None, lo=0.0, hi=1.0, doc="momentum of the key/target encoder during the search; unset: framework.momentum"
    )
    paper_bn_eps_quirk: bool = _opt(
        False,
        read_by="gradient",
        doc="MoCo's search space as NASiam's code builds it: BatchNorm1d(in, out) sets eps = out (a defect)",
    )
    random_samples: int = _opt(4, lo=1, only=("random",), doc="genotypes sampled by the random strategy")
    random_rank: str = _opt(
        "ssl_loss",
        choices=("ssl_loss", "knn"),
        only=("random",),
        doc="how random search ranks its candidates: the framework's loss on the held-out half (label-free, the "
        "signal the alpha step uses), or kNN top-1 of the held-out half against the training half (uses labels)",
    )
    beta_decay: float | None = _opt(
        None,
        unset_means=25.0,
        lo=0.0,
        only=("beta_darts",),
        doc="beta_darts: the beta-decay loss's weight at the search's end (linear from 0); unset: 25",
    )
    tau_max: float = _opt(10.0, lo=1e-3, only=("gdas",), doc="GDAS: Gumbel-softmax temperature at the start")
    tau_min: float = _opt(0.1, lo=1e-3, only=("gdas",), doc="GDAS: ... and at the end (annealed linearly)")
    stop_when_stable: int | None = _opt(
        None,
        read_by="gradient",
        lo=1,
        doc="gradient searches: stop once the genotype has not changed for this many epochs (DARTS+); "
        "search.epochs stays the cap; unset: run every epoch",
    )
    alpha_init_std: float | None = _opt(
        None,
        unset_means=1e-3,
        read_by="gradient",
        lo=0.0,
        doc="gradient searches: alpha starts at this x N(0, 1); 0: zeros, as NASiam's code; unset: 1e-3",
    )
    alpha_perturbation: float | None = _opt(
        None,
        unset_means=0.0,
        read_by="gradient",
        lo=0.0,
        doc="add this x N(0, 1) (a generator of its own) to alpha before the search: the perturbation "
        "check's twin (experiment.perturbation_check); unset: none",
    )
    projector_layers: int = _opt(0, lo=0, hi=32, doc="searched projector layers; 0: the paper's for the framework")
    predictor_layers: int = _opt(0, lo=0, hi=32, doc="searched predictor layers; 0: the paper's")

    def layers(self) -> dict[str, int]:
        return {"projector": self.projector_layers, "predictor": self.predictor_layers}


@dataclass(frozen=True)
class TrainSection:
    epochs: int = _opt(10, lo=1)
    batch_size: int = _opt(128, lo=1)
    optimizer: str = _opt("sgd", choices=("sgd", "adam", "lars"), doc="LARS: timm's, SGD-momentum based")
    lr: float = _opt(0.06, lo=0.0, doc="base learning rate (at batch 256 with lr_scaling = linear)")
    lr_scaling: str = _opt("linear", choices=("linear", "none"), doc="train.lr x batch/256, or as it is")
    schedule: str = _opt("cosine", choices=("cosine", "constant"), doc="after the warm-up")
    lr_steps: str | None = _lr_steps_opt("pre-training")
    momentum: float = _opt(0.9, lo=0.0, hi=1.0)
    weight_decay: float = _opt(5e-4, lo=0.0)
    warmup_epochs: int = _opt(0, lo=0)
    amp: bool = _opt(True, doc="bf16 autocast on CUDA; ignored on the CPU")
    channels_last: bool = _opt(True)
    compile: bool = _opt(
        False,
        hashed=False,
        doc="torch.compile the backbone and heads: the same experiment, its numbers differ by rounding only",
    )


@dataclass(frozen=True)
class EvalSection:
    knn_k: int = _opt(200, lo=1)
    knn_temperature: float = _opt(0.1, lo=1e-6)
    knn_every: int = _opt(1, lo=0, doc="epochs between kNN monitors; 0: only at the end")
    knn_features: str = _opt("backbone", choices=("backbone", "projector"), doc="what kNN compares")
    knn_weighted: bool | str = _opt(
        True,
        choices=(True, False, "cosine"),
        doc="neighbours vote with exp(sim / knn_temperature); false: one vote each; "
        '"cosine": their cosine similarity (NASiam\'s SimSiam code)',
    )
    checkpoint: str = _opt(
        "final", choices=("final", "best-on-test"), doc="evaluate the last epoch, or the epoch of best test kNN"
    )
    linear_protocol: str = _opt(
        "frozen", choices=("frozen", "augmented"), doc="probe precomputed features, or crop+flip images each epoch"
    )
    linear_crop_scale: tuple[float, ...] | None = _opt(
        None,
        read_by="augmented probe",
        lo=0.01,
        hi=1.0,
        doc="the augmented probe's crops: RandomResizedCrop over [min, max] of the image's area (ratio 3/4-4/3) "
        "and flip, as NASiam's main_lincls for CIFAR; unset: a pad-4 random crop and flip",
    )
    linear_color_jitter: bool | None = _opt(
        None,
        unset_means=False,
        read_by="augmented probe",
        doc="the augmented probe's views also get ColorJitter 0.4/0.4/0.4/0.1 (p 0.8) and grayscale (p 0.2), "
        "as NASiam's SimCLR linear.py; unset: none",
    )
    linear_milestones: tuple[float, ...] | None = _opt(
        None,
        lo=0.0,
        hi=1.0,
        doc="the probe's lr x 0.1 from each of these fractions of eval.linear_epochs on (MoCo's main_lincls: "
        "epochs 60 and 80 of 100 are [0.6, 0.8]); unset: a cosine per step",
    )
    linear_schedule: str | None = _opt(
        None,
        unset_means="cosine",
        choices=("cosine", "constant"),
        doc="the probe's learning rate: a cosine to zero (eval.linear_milestones replace it by steps), or "
        "constant (NASiam's SimCLR linear.py); unset: cosine",
    )
    linear_lr_steps: str | None = _lr_steps_opt("the probe")
    linear_weight_decay: float = _opt(1e-4, lo=0.0)
    linear_optimizer: str = _opt("sgd", choices=("sgd", "adam"), doc="the linear probe's optimiser")
    linear_epochs: int = _opt(10, lo=0)
    linear_lr: float = _opt(0.1, lo=0.0)
    linear_batch_size: int = _opt(256, lo=1)
    test_subset: int = _opt(0, lo=0, doc="stratified subset of the evaluation split; 0: all of it")
    monitor_subset: int = _opt(
        0, lo=0, doc="queries of the per-epoch kNN monitor (stratified, of the evaluation split); 0: test_subset's"
    )


@dataclass(frozen=True)
class FrameworkSection:
    """Hyperparameters of the framework; unset ones take the framework's paper defaults."""

    temperature: float | None = _opt(None, lo=1e-4, doc="InfoNCE / NT-Xent temperature (moco, simclr)")
    queue_size: int | None = _opt(None, lo=1, doc="MoCo's queue of negatives")
    momentum: float | None = _opt(None, lo=0.0, hi=1.0, doc="EMA momentum of the key/target encoder (moco, byol)")
    symmetric: bool | None = _opt(None, doc="MoCo: the loss in both directions, both views' keys enqueued")
    projector_hidden: int | None = _opt(None, lo=0, doc="SimSiam's standard projector width; 0: the feature size")
    head_width: float | None = _opt(
        None, lo=0.001, hi=1.0, doc="the heads' hidden and output sizes as a fraction of the paper's (every framework)"
    )
    # A registered framework's own options (its OPTIONS, a plugin's say), as (name, value) pairs: checked against
    # them when the spec is built, written and hashed as keys of [framework] like the fields above.
    plugin: tuple[tuple[str, Any], ...] = _opt((), hashed=False, doc="(a plugin framework's options)")

    def given(self) -> dict[str, Any]:
        named = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "plugin"}
        return {**named, **dict(self.plugin)}


@dataclass(frozen=True)
class SeedsSection:
    # Not in the run id: a run is (run id, seed), so seed 0 of `--seeds 1` is seed 0 of `--seeds 3`.
    values: tuple[int, ...] = _opt((0,), lo=0, hashed=False, doc="one run per seed")


@dataclass(frozen=True)
class Spec:
    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    data: DataSection = field(default_factory=DataSection)
    search: SearchSection = field(default_factory=SearchSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    framework: FrameworkSection = field(default_factory=FrameworkSection)
    seeds: SeedsSection = field(default_factory=SeedsSection)
    source: str = field(default="", compare=False, metadata={"hashed": False})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved spec as plain TOML-able data (sections only; a plugin's options as [framework] keys)."""
        out = {s.name: _plain(dataclasses.asdict(getattr(self, s.name))) for s in _sections()}
        out["framework"].pop("plugin", None)
        out["framework"].update({k: _plain(v) for k, v in self.framework.plugin})
        return out

    def hashed_values(self, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """The resolved values that can change a result (fields marked ``hashed``), but the ``skip``ped sections
        and ``section.key``s and the fields of other search strategies (``only``); ``nasiam_bench.store.identity``
        hashes them."""
        return {
            sec.name: {
                f.name: _plain(getattr(getattr(self, sec.name), f.name))
                for f in dataclasses.fields(sec.type_cls)
                if f.metadata.get("hashed", True)
                and (not f.metadata.get("only") or self.experiment.strategy in f.metadata["only"])
                and f"{sec.name}.{f.name}" not in skip
                and sec.name not in skip
                and getattr(getattr(self, sec.name), f.name) is not None
            }
            for sec in _sections()
            if sec.name not in skip
        } | ({} if "framework" in skip else {"framework": self._framework_values()})

    def _framework_values(self) -> dict[str, Any]:
        """The [framework] values a result depends on: the given ones, a plugin's options with them."""
        return {k: _plain(v) for k, v in self.framework.given().items()}

    def replace(self, **overrides: Any) -> Spec:
        """A copy with ``section.key`` (or unique short key) overrides applied and validated."""
        raw = self.to_dict()
        for key, value in overrides.items():
            section, name = _resolve_key(key.replace("__", "."), where="replace()")
            raw[section][name] = value
        return _build(raw, where="replace()", source=self.source)


@dataclass(frozen=True)
class _SectionInfo:
    name: str
    type_cls: type


def _sections() -> list[_SectionInfo]:
    hints = typing.get_type_hints(Spec)
    return [_SectionInfo(f.name, hints[f.name]) for f in dataclasses.fields(Spec) if f.name != "source"]


def _section_fields(section: str) -> dict[str, dataclasses.Field]:
    cls = {s.name: s.type_cls for s in _sections()}[section]
    return {f.name: f for f in dataclasses.fields(cls)}


def changes_results(key: str, strategy: str) -> bool:
    """Whether ``section.key`` is one of the values a result of ``strategy`` depends on (a field marked hashed,
    of every strategy or of this one); a key this version does not know counts (a record of another version)."""
    section, _, name = key.partition(".")
    try:
        field = _section_fields(section)[name]
    except KeyError:
        return True
    only = field.metadata.get("only")
    return field.metadata.get("hashed", True) and (not only or strategy in only)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # unset optional values are left out (TOML has no null)
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


# ---------------------------------------------------------------------------------------------------- loading


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = (), profile: str | None = None) -> Spec:
    """Read an experiment TOML (a path, or the name of a file in ``catalogue/experiments/``) and resolve it."""
    path = resolve_spec_path(path)
    return _resolve(_read_toml(path), str(path), overrides, profile)


def bench_spec(target: str, dataset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """The spec ``bench TARGET`` runs: a spec file when ``TARGET`` is a path (as given; ``dataset`` overrides its
    dataset), else the framework ``TARGET`` on ``dataset`` (default cifar10): its file in ``catalogue/experiments/``
    when there is one, else the defaults with that framework (one a plugin registered, say)."""
    if target.endswith(".toml") or os.sep in target or Path(target).is_file():
        given = [f"experiment.dataset={dataset}"] if dataset else []
        return load_spec(Path(target), [*given, *overrides])
    frameworks, datasets = registry("frameworks"), registry("datasets")
    dataset = dataset or "cifar10"
    if target not in frameworks:
        raise SpecError(f"bench {target}: {frameworks.unknown_message(target)} (or give a spec file's path)")
    if dataset not in datasets:
        raise SpecError(f"--dataset {dataset}: {datasets.unknown_message(dataset)}")
    named = catalogue.find("experiments", f"{target}_{dataset}")
    if named is not None:
        return load_spec(named, overrides)
    raw = {"experiment": {"name": f"{target}-{dataset}", "framework": target, "dataset": dataset}}
    where = f"{target} on {dataset} (the defaults: no {target}_{dataset}.toml in the catalogue)"
    return _resolve(raw, where, overrides, None)


def _resolve(raw: dict[str, Any], where: str, overrides, profile: str | None) -> Spec:
    """An experiment table resolved: the profile, the recipe, the table, then the overrides, checked."""
    parsed = [parse_override(o) for o in overrides]
    experiment_table = raw.get("experiment", {}) if isinstance(raw.get("experiment", {}), dict) else {}

    def chosen(key: str) -> Any:  # the command line, else the experiment file, else the default
        given = next((v for k, v in parsed if k in (f"experiment.{key}", key)), None)
        return given if given is not None else experiment_table.get(key, getattr(ExperimentSection, key))

    profile = profile or chosen("profile")
    recipe = chosen("recipe")
    merged = _merge({}, load_profile(profile, chosen("framework")), where=str(_profile_path(profile)))
    merged = _merge(merged, load_recipe(recipe, chosen("framework")), where=str(_recipe_path(recipe)))
    merged = _merge(merged, raw, where=where)
    merged = _merge(merged, {"experiment": {"profile": profile, "recipe": recipe}}, where="profile")
    for key, value in parsed:
        section, name = _resolve_key(key, where="command line")
        merged.setdefault(section, {})[name] = value
    return _build(merged, where=where, source=where)


def resolve_spec_path(path: str | Path) -> Path:
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    named = catalogue.find("experiments", candidate.stem if candidate.suffix == ".toml" else candidate.name)
    if named is not None and candidate.parent == Path("."):
        return named
    known = ", ".join(catalogue.entries("experiments")) or "(none)"
    raise SpecError(f"spec file {str(path)!r} not found; give a path or one of the catalogue's experiments: {known}")


def available_recipes() -> list[str]:
    return list(catalogue.entries("recipes"))


def _recipe_path(name: str) -> Path:
    return catalogue.find("recipes", name) or catalogue.shipped("recipes") / f"{name}.toml"


def load_recipe(name: str, framework: str) -> dict[str, Any]:
    """The sections a recipe sets for ``framework``; a recipe marked ``strict`` must cover the framework."""
    if not isinstance(name, str) or not _recipe_path(name).is_file():
        raise SpecError(f"experiment.recipe: unknown recipe {name!r}; valid: {', '.join(available_recipes())}")
    path = _recipe_path(name)
    data = _read_toml(path)
    about = data.pop("recipe", {})
    if framework not in data:
        if about.get("strict", True):
            covered = ", ".join(sorted(data)) or "none"
            raise SpecError(f"recipe {name!r} has no values for {framework!r}; it covers: {covered}")
        if framework in registry("frameworks"):  # an unknown one is refused when the spec is built
            _say_once(f"recipe {name!r} sets nothing for {framework!r}: its own defaults apply (it covers "
                      f"{', '.join(sorted(data)) or 'none'})")  # fmt: skip
        return {}  # a framework registered later: its own defaults are its paper's
    overlay = data[framework]
    for section, table in overlay.items():
        if section not in RECIPE_SECTIONS:
            raise SpecError(f"{path}: [{framework}.{section}]: a recipe sets only {', '.join(RECIPE_SECTIONS)}")
        for key in table:
            if section == "data" and key not in RECIPE_DATA_KEYS:
                raise SpecError(
                    f"{path}: {framework}.data.{key}: of [data] a recipe sets {', '.join(RECIPE_DATA_KEYS)}"
                )
            if f"{section}.{key}" in SCHEDULE_KEYS:
                raise SpecError(f"{path}: {framework}.{section}.{key} is the schedule's scale: a profile sets it")
    return overlay


@functools.cache
def _say_once(message: str) -> None:
    print(message, file=sys.stderr)


def recipe_keys(spec: Spec) -> list[str]:
    """The keys the spec's recipe sets for its framework (what ``show`` reports)."""
    overlay = load_recipe(spec.experiment.recipe, spec.experiment.framework)
    return [f"{section}.{key}" for section, table in overlay.items() for key in table]


def available_profiles() -> list[str]:
    return list(catalogue.entries("profiles"))


def _profile_path(name: str) -> Path:
    return catalogue.find("profiles", name) or catalogue.shipped("profiles") / f"{name}.toml"


def load_profile(name: str, framework: str | None = None) -> dict[str, Any]:
    """A profile overlay as raw sections, with its ``[<framework>.<section>]`` tables for ``framework`` laid over
    them (a schedule sized per framework); an unknown profile lists the valid ones."""
    if not isinstance(name, str) or not _profile_path(name).is_file():
        raise SpecError(f"experiment.profile: unknown profile {name!r}; valid: {', '.join(available_profiles())}")
    path = _profile_path(name)
    overlay = _read_toml(path)
    frameworks = registry("frameworks")
    per_framework = {key: overlay.pop(key) for key in list(overlay) if key in frameworks}
    if "profile" in overlay.get("experiment", {}):
        raise SpecError(f"{path}: a profile may not set experiment.profile")
    own = per_framework.get(framework, {})
    return _merge(_merge({}, overlay, where=str(path)), own, where=f"{path} [{framework}]") if own else overlay


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` with a TOML value (``5``, ``0.1``, ``true``, ``["a", "b"]``); a bare word is a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"override {text!r} is not key=value (e.g. train.epochs=5 or framework=moco)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key, parsed


def _resolve_key(key: str, where: str) -> tuple[str, str]:
    """``section.key``, or a bare key that names exactly one field across the sections."""
    sections = [s.name for s in _sections()]
    if "." in key:
        section, _, name = key.partition(".")
        if section not in sections:
            raise SpecError(f"{where}: unknown section {section!r} in {key!r}; valid: {', '.join(sections)}")
        fields = _section_fields(section)
        if name not in fields and section != "framework":  # a framework's own options are checked when built
            raise SpecError(f"{where}: unknown key {key!r}; valid in [{section}]: {', '.join(fields)}")
        return section, name
    owners = [s for s in sections if key in _section_fields(s)]
    if len(owners) == 1:
        return owners[0], key
    if owners:
        raise SpecError(f"{where}: key {key!r} is ambiguous; write one of {', '.join(f'{o}.{key}' for o in owners)}")
    every = [f"{s}.{k}" for s in sections for k in _section_fields(s)]
    raise SpecError(f"{where}: unknown key {key!r}; valid: {', '.join(every)}")


def _merge(base: dict[str, Any], overlay: dict[str, Any], where: str) -> dict[str, Any]:
    sections = [s.name for s in _sections()]
    out = {k: dict(v) for k, v in base.items()}
    for section, table in overlay.items():
        if section not in sections:
            raise SpecError(f"{where}: unknown section [{section}]; valid: {', '.join(sections)}")
        if not isinstance(table, dict):
            raise SpecError(f"{where}: {section} must be a table ([{section}]), got {table!r}")
        fields = _section_fields(section)
        for key, value in table.items():
            if key not in fields and section != "framework":  # a framework's own options: checked when built
                raise SpecError(f"{where}: unknown key {section}.{key}; valid in [{section}]: {', '.join(fields)}")
            out.setdefault(section, {})[key] = value
    return out


def _build(raw: dict[str, Any], where: str, source: str) -> Spec:
    sections = {}
    for info in _sections():
        values = raw.get(info.name, {})
        hints = typing.get_type_hints(info.type_cls)
        kwargs = {}
        fields = _section_fields(info.name)
        for name, f in fields.items():
            value = values.get(name, f.default)  # defaults too: a registry name may be missing from this install
            if name == "plugin":  # a framework's own options: the keys no field names (checked below)
                value = tuple(sorted((k, v) for k, v in values.items() if k not in fields)) or value
                kwargs[name] = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in value)
            elif value is not None:
                kwargs[name] = _check(f"{info.name}.{name}", value, hints[name], f.metadata, where)
        sections[info.name] = info.type_cls(**kwargs)
    spec = Spec(**sections, source=source)
    if len(spec.search.arch_betas) != 2:
        raise SpecError(f"{where}: search.arch_betas = {list(spec.search.arch_betas)}: expected two values")
    for key, pair in (
        ("data.crop_scale", spec.data.crop_scale),
        ("eval.linear_crop_scale", spec.eval.linear_crop_scale),
    ):
        if pair is None:
            continue
        if len(pair) != 2:
            raise SpecError(f"{where}: {key} = {list(pair)}: expected two values")
        if pair[0] > pair[1]:
            raise SpecError(f"{where}: {key} = {list(pair)}: the smaller area first ({list(pair[::-1])})")
    _consistent(spec, where)
    seeds = spec.seeds.values
    if len(set(seeds)) != len(seeds):
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        raise SpecError(f"{where}: seeds.values = {list(seeds)} names {twice} twice; give each seed once")
    _framework_options(spec, where)
    return spec


def _framework_options(spec: Spec, where: str) -> None:
    """Every [framework] key is an option of the spec's framework (a plugin's own ones too, of its defaults'
    type); an unknown one is named with the close ones."""
    framework = registry("frameworks").get(spec.experiment.framework)
    options = framework.option_names()
    for key in spec.framework.given():
        if key not in options:
            close = difflib.get_close_matches(key, options, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise SpecError(
                f"{where}: framework.{key} does not apply to {spec.experiment.framework}{hint}; "
                f"its options: {', '.join(options) or 'none'}"
            )
    for key, value in spec.framework.plugin:
        default = framework.OPTIONS.get(key, framework.COMMON_OPTIONS.get(key))
        if (
            default is not None
            and not _is_kind(value, type(default))
            and not (isinstance(default, float) and _is_kind(value, int))
        ):
            raise SpecError(
                f"{where}: framework.{key} = {value!r} ({type(value).__name__}): {spec.experiment.framework}'s "
                f"option takes a {type(default).__name__} (its default: {default!r})"
            )


def _consistent(spec: Spec, where: str) -> None:
    """Values each valid alone that contradict each other: refused rather than read one way silently."""
    e, t, s = spec.eval, spec.train, spec.search
    milestones = list(e.linear_milestones or ())
    if milestones != sorted(set(milestones)):
        raise SpecError(
            f"{where}: eval.linear_milestones = {milestones}: give them once each, in increasing order "
            f"({sorted(set(milestones))})"
        )
    if milestones and e.linear_schedule == "constant":
        raise SpecError(
            f"{where}: eval.linear_milestones = {milestones} with eval.linear_schedule = 'constant': the milestones "
            f"step a schedule; unset one of them"
        )
    if s.tau_min > s.tau_max:
        raise SpecError(f"{where}: search.tau_min = {s.tau_min} > search.tau_max = {s.tau_max}: GDAS anneals down")
    if t.warmup_epochs > t.epochs:
        raise SpecError(
            f"{where}: train.warmup_epochs = {t.warmup_epochs} > train.epochs = {t.epochs}: the warm-up would "
            f"outlast the run"
        )


def _check(key: str, value: Any, annotation: Any, meta: typing.Mapping[str, Any], where: str) -> Any:
    if isinstance(annotation, types.UnionType):  # X | None: TOML has no null, so a value given is an X
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = next((a for a in kinds if _is_kind(value, a)), kinds[0])
        if len(kinds) > 1 and not _is_kind(value, annotation):
            expected = " or ".join(a.__name__ for a in kinds)
            raise SpecError(f"{where}: {key} = {value!r} ({type(value).__name__}): expected {expected}")
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: {key} = {value!r}: expected a list of {typing.get_args(annotation)[0].__name__}")
        if not value and not meta.get("empty_ok"):
            raise SpecError(f"{where}: {key} = []: expected at least one value")
        item_type = typing.get_args(annotation)[0]
        twice = sorted({v for v in value if isinstance(v, str) and list(value).count(v) > 1})
        if twice:  # a name given twice: an op twice in the space, a head or strategy benched twice
            raise SpecError(f"{where}: {key} = {list(value)} names {twice} twice; give each once")
        return tuple(_check(key, v, item_type, meta, where) for v in value)
    value = _check_type(key, value, annotation, where)
    _check_value(key, value, meta, where)
    return value


def _is_kind(value: Any, kind: type) -> bool:
    """``value`` is a ``kind`` as TOML means it: a bool is not a number, a list is a tuple."""
    if typing.get_origin(kind) is tuple:
        return isinstance(value, (list, tuple))
    return isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))


def _check_type(key: str, value: Any, expected: type, where: str) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (expected in (int, float) and isinstance(value, bool)) or not isinstance(value, expected):
        raise SpecError(f"{where}: {key} = {value!r} ({type(value).__name__}): expected {expected.__name__}")
    return value


def _check_value(key: str, value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{where}: {key} = {value!r}: expected a finite number")
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = (
            f"in [{lo}, {hi}]" if lo is not None and hi is not None else (f">= {lo}" if lo is not None else f"<= {hi}")
        )
        raise SpecError(f"{where}: {key} = {value!r} is out of range; expected {bounds}")
    choices, prefixes = meta.get("choices", ()), meta.get("prefixes", ())
    if choices and value not in choices and not any(value.startswith(p) and value != p for p in prefixes):
        valid = ", ".join([*map(str, choices), *(f"{p}<...>" for p in prefixes)])
        raise SpecError(f"{where}: {key} = {value!r}; valid: {valid}")
    if meta.get("registry"):
        reg = registry(meta["registry"])
        if value not in reg:
            raise SpecError(f"{where}: {key}: {reg.unknown_message(value)}")


def spec_from_dict(raw: dict[str, Any], where: str = "checkpoint") -> Spec:
    """A spec from the sections ``Spec.to_dict`` wrote (a checkpoint's or a run record's), validated again."""
    return _build(_merge({}, raw, where=where), where=where, source=where)


def spec_to_toml(spec: Spec, run_id: str = "") -> str:
    """The resolved spec as TOML, with its run id (``nasiam_bench.store.identity``, when given) in a comment."""
    import tomli_w

    header = "# resolved spec" + (f", run id {run_id}" if run_id else "")
    header += (f", from {spec.source}" if spec.source else "") + "\n"
    e = spec.experiment
    keys = recipe_keys(spec)
    header += f"# recipe {e.recipe!r} ({catalogue.shown(_recipe_path(e.recipe))}) for {e.framework}: "
    header += (f"sets {', '.join(keys)}" if keys else "sets nothing (the defaults)") + "\n"
    return header + tomli_w.dumps(spec.to_dict())
