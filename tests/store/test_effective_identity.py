"""Identities of what runs (issue 32): every spec key, set to its default, leaves every identity as it was; set to
another value, it changes the identities of the runs that read it and of no other."""

from __future__ import annotations

import dataclasses

import pytest

from nasiam_bench.config.spec import SpecError, bench_spec
from nasiam_bench.core.registry import FRAMEWORKS, registry
from nasiam_bench.store.identity import identity

BASE = ["profile=quick"]
# Keys a bench does not vary this way: what the spec is about (tested through every registry), or not hashed.
ABOUT = {"experiment.framework", "experiment.dataset", "experiment.backbone", "experiment.head",
         "experiment.strategy", "experiment.profile", "experiment.recipe"}  # fmt: skip


def _ids(spec) -> dict[str, str]:
    """The identities a change may move: each head kind's run, a darts and a random search, the comparison."""
    ids = {"comparison": identity("comparison", spec)}
    for head in ("baseline", "random", "paper", "nasiam"):
        ids[f"run {head}"] = identity("run", spec.replace(head=head))
    for strategy in ("darts", "random"):
        ids[f"search {strategy}"] = identity("search", spec.replace(strategy=strategy))
        ids[f"run nasiam {strategy}"] = identity("run", spec.replace(head="nasiam", strategy=strategy))
    return ids


def _keys():
    spec = bench_spec(FRAMEWORKS.list()[0], None, BASE)
    for section in ("experiment", "data", "search", "train", "eval", "framework"):
        for f in dataclasses.fields(getattr(spec, section)):
            key = f"{section}.{f.name}"
            if f.metadata.get("hashed", True) and key not in ABOUT:
                yield key, f


KEYS = dict(_keys())


def _default(key, f, framework):
    """The value a user would write for 'the default': the field's default, what its unset means, the framework's
    own value of its option, the framework's momentum for the search's, or a stopping rule as long as the search."""
    options = FRAMEWORKS.get(framework).resolve_options({})
    if key.startswith("framework."):
        return options.get(key.partition(".")[2])
    if key == "search.encoder_momentum":
        return options.get("momentum")
    if key == "search.stop_when_stable":
        return bench_spec(framework, None, BASE).search.epochs
    if f.default is not None:
        return list(f.default) if isinstance(f.default, tuple) else f.default
    return f.metadata.get("unset_means")


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
@pytest.mark.parametrize("key", sorted(KEYS))
def test_a_key_written_at_its_default_leaves_every_identity_as_it_was(key, framework):
    spec = bench_spec(framework, None, BASE)
    value = _default(key, KEYS[key], framework)
    current = getattr(getattr(spec, key.split(".")[0]), key.split(".")[1])
    if value is None or (
        current is not None
        and current != KEYS[key].default
        and key.startswith(("eval", "train", "data", "experiment", "search.arch"))
    ):
        pytest.skip(f"{key}: no default to write for {framework}, or the profile sets it")
    assert _ids(spec.replace(**{key: value})) == _ids(spec)


OTHER = {"eval.linear_crop_scale": [0.08, 1.0], "eval.linear_milestones": [0.5], "framework.head_width": 0.5,
         "framework.projector_hidden": 64, "search.encoder_momentum": 0.9, "search.stop_when_stable": 2}  # fmt: skip


def _another(key, f, current):
    """A valid value other than ``current``."""
    if key in OTHER:
        return OTHER[key]
    meta = f.metadata
    if meta.get("choices"):
        return next(c for c in meta["choices"] if c != current)
    if meta.get("registry"):
        names = registry(meta["registry"]).list()
        return [n for n in names if n not in (current or ())][:2] if isinstance(current, tuple) else None
    if isinstance(current, bool) or ((current is None and "jitter" in key) or key.endswith(("quirk", "symmetric"))):
        return not current
    if isinstance(current, tuple):
        return [min(v * 1.5, meta.get("hi") or 1e9) if v else 0.5 for v in current[:2]][: len(current)] or [0.5]
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(current, int):
        return current + 1 if hi is None or current + 1 <= hi else current - 1
    if isinstance(current, float):
        changed = current * 0.5 if current else 0.5
        return changed if lo is None or changed >= lo else current * 2
    return None


SEARCH_ONLY = {"search.epochs", "search.batch_size", "search.lr", "search.weight_optimizer", "search.weight_decay",
               "search.lr_scaling", "search.schedule", "search.lr_steps", "search.encoder_momentum"}  # fmt: skip


@pytest.mark.parametrize("framework", FRAMEWORKS.list())
@pytest.mark.parametrize("key", sorted(KEYS))
def test_another_value_changes_exactly_the_identities_of_the_runs_that_read_it(key, framework):
    spec = bench_spec(framework, None, BASE)
    section, name = key.split(".")
    f = KEYS[key]
    current = getattr(getattr(spec, section), name)
    value = _another(key, f, current if current is not None else f.metadata.get("unset_means"))
    if value is None:
        pytest.skip(f"{key}: no other value to try generically")
    try:
        changed = spec.replace(**{key: value})
    except SpecError as exc:
        pytest.skip(f"{key} = {value!r}: {exc}")
    before, after = _ids(spec), _ids(changed)
    moved = {k for k in before if before[k] != after[k]}
    read_by, only = f.metadata.get("read_by"), f.metadata.get("only")
    if section == "search":
        assert "run baseline" not in moved and "comparison" not in moved  # a search's settings: its runs only
        assert not moved & {"run random", "run paper"} or name.endswith("_layers")
        if read_by == "gradient":
            assert "search random" not in moved and "run nasiam random" not in moved
            assert "search darts" in moved
        elif only:
            assert moved <= {f"search {s}" for s in only} | {f"run nasiam {s}" for s in only}
        elif key in SEARCH_ONLY:
            assert {"search darts", "search random"} <= moved
    elif read_by == "augmented probe":
        assert not moved  # the frozen probe reads none of them
    else:
        assert "run baseline" in moved and "comparison" in moved  # a run's setting moves every run of it
        darts_reads = {"train.amp"}
        assert ("search darts" in moved) == (key in darts_reads or section in ("data", "framework", "experiment"))


def test_layer_counts_of_the_frameworks_own_value_or_of_an_unsearched_head_change_nothing():
    spec = bench_spec("moco", None, BASE)
    for key, value in (("search.projector_layers", 4), ("search.predictor_layers", 3)):
        assert _ids(spec.replace(**{key: value})) == _ids(spec), key
    three = _ids(spec.replace(**{"search.projector_layers": 3}))
    assert three["run baseline"] == _ids(spec)["run baseline"]  # the baseline has no searched layer
    assert three["run random"] != _ids(spec)["run random"]


def test_the_augmented_probes_options_count_under_the_augmented_probe():
    spec = bench_spec("moco", None, [*BASE, "eval.linear_protocol=augmented"])
    assert _ids(spec.replace(**{"eval.linear_color_jitter": True}))["run baseline"] != _ids(spec)["run baseline"]
    assert _ids(spec.replace(**{"eval.linear_color_jitter": False})) == _ids(spec)


def test_a_stopping_rule_that_cannot_stop_is_no_rule():
    spec = bench_spec("moco", None, BASE)
    epochs = spec.search.epochs
    assert _ids(spec.replace(**{"search.stop_when_stable": epochs})) == _ids(spec)
    assert _ids(spec.replace(**{"search.stop_when_stable": epochs - 1}))["search darts"] != _ids(spec)["search darts"]
