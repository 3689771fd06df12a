import pytest

from nasiam_bench import doctor
from nasiam_bench.cli import main
from nasiam_bench.registry import FRAMEWORKS
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


def test_doctor_refuses_an_unknown_device(capsys):
    assert main(["doctor", "--device", "tpu"]) == 2
    assert "--device 'tpu': valid: auto, cpu, cuda" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.usefixtures("cifar10_data")
def test_doctor_passes_on_cuda(capsys):
    assert main(["doctor", "--device", "cuda", "--steps", "3", *ROOT]) == 0
    assert "bf16" in capsys.readouterr().out
