import textwrap

import pytest

from nasiam_bench.cli import main, parse
from tests.conftest import run_cli, write_plugin


def test_list_registries_and_entries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "activations" in out and "backbones" in out
    assert main(["list", "activations"]) == 0
    assert {"relu", "silu", "hardswish", "elu", "gelu"} <= set(capsys.readouterr().out.split())
    assert main(["list", "backbones", "resnet*"]) == 0
    names = capsys.readouterr().out.split()
    assert "resnet18" in names and all(n.startswith("resnet") for n in names)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "activation"], "unknown registry 'activation'; did you mean 'activations'"),
        (["list", "activations", "zz*"], "no activations entry matches 'zz*'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: command"),
        (["show", "missing.toml"], "spec file 'missing.toml' not found"),
        (["show", "moco_cifar10", "--bogus"], "unrecognized arguments: --bogus"),
        (["data", "prepare", "cifar10", "--source", "x", "epochs=2"], "unrecognized arguments: epochs=2"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nasiam-bench: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_show_prints_resolved_toml(tmp_path, capsys):
    spec = tmp_path / "exp.toml"
    spec.write_text('[experiment]\nframework = "moco"\n')
    assert main(["show", str(spec), "profile=smoke", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# resolved spec, run id ")
    assert 'framework = "moco"' in out and 'profile = "smoke"' in out and "epochs = 2" in out


PLUGIN = """
    from torch import nn

    def squareplus():
        return nn.Softplus(beta=2.0)
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A third-party distribution adding an activation."""
    return write_plugin(
        tmp_path_factory.mktemp("site"),
        "nasiam-plugin-demo",
        PLUGIN,
        {
            "nasiam_bench.activations": {"squareplus": "nasiam_plugin_demo:squareplus"},
        },
    )


def test_entry_point_plugin_adds_an_activation_without_editing_the_package(plugin_site):
    result = run_cli("list", "activations", extra_path=plugin_site)
    assert result.returncode == 0, result.stderr
    assert "squareplus" in result.stdout.split() and "relu" in result.stdout.split()


def test_misspelt_framework_exits_2_and_suggests(plugin_site, tmp_path):
    spec = tmp_path / "typo.toml"
    spec.write_text(
        textwrap.dedent("""
        [experiment]
        framework = "mocco"
    """)
    )
    result = run_cli("show", str(spec), extra_path=plugin_site)
    assert result.returncode == 2
    assert "did you mean 'moco'" in result.stderr and "typo.toml" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    ok = run_cli("show", str(spec), "framework=moco", extra_path=plugin_site)
    assert ok.returncode == 0, ok.stderr
    assert 'framework = "moco"' in ok.stdout


def test_overrides_may_follow_the_options():
    args = parse(["bench", "moco", "profile=smoke", "--seeds", "3", 'experiment.bench_strategies=["darts"]'])
    assert args.seeds == 3 and args.overrides == ["profile=smoke", 'experiment.bench_strategies=["darts"]']
