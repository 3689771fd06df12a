import os
import subprocess
import sys
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "mocco"], "bench mocco: unknown frameworks entry 'mocco'; did you mean 'moco'?"),
        (
            ["bench", "moco", "--dataset", "cifar11"],
            "--dataset cifar11: unknown datasets entry 'cifar11'; did you mean",
        ),
        (["bench", "no/such/spec.toml"], "spec file 'no/such/spec.toml' not found"),
    ],
)
def test_bench_names_an_unknown_framework_or_dataset(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bench_takes_a_spec_path_as_given(tmp_path):
    from nasiam_bench.config.spec import bench_spec

    path = tmp_path / "mine.toml"
    path.write_text('[experiment]\nname = "mine"\nframework = "byol"\n')
    spec = bench_spec(str(path), None, ["profile=smoke"])
    assert spec.source == str(path) and spec.experiment.framework == "byol" and spec.experiment.name == "mine"
    assert bench_spec(str(path), "imagenette").experiment.dataset == "imagenette"


def test_bench_takes_a_registered_framework_without_a_spec_file_and_says_the_recipe_sets_nothing(capsys):
    from nasiam_bench.config.spec import bench_spec
    from nasiam_bench.core.registry import FRAMEWORKS
    from nasiam_bench.models.frameworks.moco import MoCo

    class Plugged(MoCo):
        """A framework a plugin registered: no spec file, no recipe section."""

    FRAMEWORKS.register("plugged")(Plugged)
    try:
        spec = bench_spec("plugged", None, ["profile=smoke"])
        again = bench_spec("plugged", None, ["profile=smoke", "train.epochs=2"])
    finally:
        FRAMEWORKS._entries.pop("plugged")
    assert spec.experiment.framework == "plugged" and spec.experiment.dataset == "cifar10"
    assert again.train.epochs == 2
    err = capsys.readouterr().err
    assert err.count("recipe 'reference' sets nothing for 'plugged': its own defaults apply") == 1


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["bench", "--help"]])
def test_help_and_list_start_without_importing_torch(argv):
    import subprocess
    import sys

    code = (
        "import sys\nfrom nasiam_bench.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({'torch', 'timm', 'ffcv', 'pandas'} & set(sys.modules))\nassert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


FRAMEWORK_PLUGIN = """
from nasiam_bench.models.frameworks.simclr import SimCLR


class LambdaCLR(SimCLR):
    OPTIONS = {**SimCLR.OPTIONS, "lambd": 0.005}  # an option of its own, beside SimCLR's temperature
"""


def test_a_plugin_frameworks_own_option_is_set_from_a_spec_and_the_command_line(tmp_path):
    site = write_plugin(
        tmp_path / "site",
        "nasiam-plugin-fw",
        FRAMEWORK_PLUGIN,
        {"nasiam_bench.frameworks": {"lambdaclr": "nasiam_plugin_fw:LambdaCLR"}},
    )
    spec = tmp_path / "lambda.toml"
    spec.write_text('[experiment]\nframework = "lambdaclr"\n\n[framework]\nlambd = 0.01\n')
    shown = run_cli("show", str(spec), "profile=smoke", extra_path=site)
    assert shown.returncode == 0, shown.stderr
    assert "lambd = 0.01" in shown.stdout
    other = run_cli("show", str(spec), "profile=smoke", "framework.lambd=0.02", extra_path=site)
    assert "lambd = 0.02" in other.stdout

    def run_id(out: str) -> str:
        return out.split("run id ")[1].split()[0].rstrip(",")

    assert run_id(shown.stdout) != run_id(other.stdout)  # the option joins the identity
    bad = run_cli("show", str(spec), "framework.lambd=true", extra_path=site)
    assert bad.returncode == 2 and "framework.lambd = True (bool): lambdaclr's option takes a float" in bad.stderr
    typo = run_cli("show", str(spec), "framework.lamdb=0.1", extra_path=site)
    assert typo.returncode == 2 and "(did you mean lambd?)" in typo.stderr
    reached = subprocess.run(
        [sys.executable, "-c", "from nasiam_bench.models.build import build_model; "
         f"from nasiam_bench.config.spec import load_spec; "
         f"print(build_model(load_spec({str(spec)!r}, ['profile=smoke'])).options['lambd'])"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)}, timeout=120,
    )  # fmt: skip
    assert reached.stdout.strip() == "0.01", reached.stderr  # the option reaches the framework
