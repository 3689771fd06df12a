import pytest

from nasiam_bench.bench import doctor
from nasiam_bench.cli import main
from nasiam_bench.core.registry import FRAMEWORKS
from tests.conftest import TEST_DATA_ROOT

ROOT = [f"data.root={TEST_DATA_ROOT}"]


@pytest.mark.usefixtures("cifar10_data")
def test_doctor_passes_on_the_cpu_and_checks_every_registered_framework(capsys):
    assert main(["doctor", "--device", "cpu", "--steps", "1", *ROOT]) == 0
    table = capsys.readouterr().out
    for framework in FRAMEWORKS:
        assert f"| train {framework} | ok |" in table
    for check in ("loader ffcv", "loader torch", "search darts (moco)", "search gdas (moco)", "evaluate kNN"):
        assert f"| {check} | ok |" in table
    assert "images/s" in table and "peak memory MiB" in table
    assert table.startswith("doctor on CPU (") and ": device cpu, torch " in table.splitlines()[0]  # where it ran
    for kind, note in (("ffcv", "it compiles the pipeline"), ("torch", "it starts its workers")):
        row = next(line for line in table.splitlines() if line.startswith(f"| loader {kind} |"))
        assert "first epoch " in row and note in row  # a whole epoch once running; the start-up apart


@pytest.mark.usefixtures("cifar10_data")
def test_a_failing_check_is_reported_and_fails_the_command(monkeypatch, capsys):
    def broken(*_args, **_kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(doctor, "check_evaluation", broken)
    assert main(["doctor", "--device", "cpu", "--steps", "1", *ROOT]) == 1
    captured = capsys.readouterr()
    assert "| evaluate kNN | FAILED |" in captured.out and "RuntimeError: planted failure" in captured.out
    assert "1 check(s) failed: evaluate kNN" in captured.err
    assert "| train moco | ok |" in captured.out  # the other checks still ran


def test_the_doctor_says_when_it_prepares_the_data_first(tmp_path, capsys):
    unprepared = doctor._spec("moco", doctor.torch.device("cpu"), [f"data.root={tmp_path}"])
    assert doctor.say_if_unprepared(unprepared)
    assert "cifar10 is not prepared yet: preparing it first, once" in capsys.readouterr().out


def test_doctor_refuses_an_unknown_device(capsys):
    assert main(["doctor", "--device", "tpu"]) == 2
    assert "--device tpu: not a device; give auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.usefixtures("cifar10_data")
def test_doctor_passes_on_cuda(capsys):
    assert main(["doctor", "--device", "cuda", "--steps", "3", *ROOT]) == 0
    assert "bf16" in capsys.readouterr().out
