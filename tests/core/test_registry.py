import sys

import pytest

from nasiam_bench.core.registry import (
    ACTIVATIONS,
    DuplicateEntryError,
    NasiamBenchError,
    Registry,
    UnknownEntryError,
    registry,
)
from tests.conftest import write_plugin


def test_register_names_default_to_dunder_name():
    reg = Registry("toys")

    @reg.register()
    def ball():
        return "ball"

    @reg.register
    def kite():
        return "kite"

    @reg.register("yo-yo")
    def yoyo():
        return "yoyo"

    assert reg.list() == ["ball", "kite", "yo-yo"]
    assert reg.get("yo-yo") is yoyo
    assert "ball" in reg and "yoyo" not in reg
    assert len(reg) == 3


def test_wildcard_listing():
    reg = Registry("toys")
    for name in ("resnet18", "resnet50", "resnext50", "vit_tiny"):
        reg.add(name, object())
    assert reg.list("resnet*") == ["resnet18", "resnet50"]
    assert reg.list("res*") == ["resnet18", "resnet50", "resnext50"]
    assert reg.list("*50") == ["resnet50", "resnext50"]
    assert reg.list("none*") == []


def test_duplicate_name_raises_but_same_object_is_idempotent():
    reg = Registry("toys")

    def a():
        pass

    def b():
        pass

    reg.add("x", a)
    reg.add("x", a)
    with pytest.raises(DuplicateEntryError, match=r"toys: 'x' is already registered"):
        reg.add("x", b)


def test_unknown_key_names_registry_key_close_matches_and_valid_keys():
    reg = Registry("frameworks")
    for name in ("moco", "simsiam", "simclr"):
        reg.add(name, object())
    with pytest.raises(UnknownEntryError) as err:
        reg.get("mocco")
    message = str(err.value)
    assert "frameworks" in message and "'mocco'" in message
    assert "did you mean 'moco'" in message
    assert "Valid: moco, simclr, simsiam" in message
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownEntryError, match=r"Valid: moco, simclr, simsiam$"):
        reg.get("zzzz")  # no close match: no suggestion, still the valid keys


def test_unknown_registry_suggests():
    with pytest.raises(UnknownEntryError, match="did you mean 'activations'"):
        registry("activation")


PLUGIN = """
    IMPORTED = True

    def sparkle():
        return "sparkle"

    def ball():
        return "plugin ball"
"""


def test_entry_points_load_lazily_on_first_lookup(tmp_path, monkeypatch):
    site = write_plugin(tmp_path, "toy-plugin", PLUGIN, {"nasiam_bench.toys": {"sparkle": "toy_plugin:sparkle"}})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "toy_plugin", raising=False)
    reg = Registry("toys")
    assert "toy_plugin" not in sys.modules  # creating the registry imports nothing
    assert reg.get("sparkle")() == "sparkle"
    assert "toy_plugin" in sys.modules
    assert reg.list() == ["sparkle"]


def test_entry_point_clashing_with_a_builtin_is_a_duplicate(tmp_path, monkeypatch):
    site = write_plugin(
        tmp_path, "clash-plugin", PLUGIN.replace("toy", "clash"), {"nasiam_bench.toys": {"relu": "clash_plugin:ball"}}
    )
    monkeypatch.syspath_prepend(str(site))
    module = tmp_path / "toys_builtin.py"
    module.write_text("def relu():\n    return 'relu'\n")
    reg = Registry("toys", modules=("toys_builtin_reg",))
    (tmp_path / "toys_builtin_reg.py").write_text(
        "import toys_builtin\nfrom tests.core.test_registry import CLASH\nCLASH.add('relu', toys_builtin.relu)\n"
    )
    globals()["CLASH"] = reg
    monkeypatch.delitem(sys.modules, "toys_builtin_reg", raising=False)
    with pytest.raises(DuplicateEntryError, match=r"toys: 'relu' is already registered \(by toys_builtin.relu\)"):
        reg.list()


def test_broken_entry_point_names_itself(tmp_path, monkeypatch):
    site = write_plugin(
        tmp_path,
        "broken-plugin",
        "raise ImportError('no such thing')\n",
        {"nasiam_bench.toys": {"bad": "broken_plugin:nope"}},
    )
    monkeypatch.syspath_prepend(str(site))
    reg = Registry("toys")
    with pytest.raises(NasiamBenchError, match=r"entry point 'bad' = 'broken_plugin:nope'.*broken-plugin"):
        reg.list()


def test_builtin_registries_are_filled_by_import():
    assert set(ACTIVATIONS.list()) >= {"relu", "silu", "hardswish", "elu"}
