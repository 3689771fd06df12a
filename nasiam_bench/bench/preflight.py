"""What a command was given, checked before any work: each refusal is one line that names the bad value and what
would be valid (the command line exits 2), and nothing has been written when it comes. The spec's own values are
checked when it loads (``spec.py``); these are the checks that need the machine or the prepared data."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from nasiam_bench.config.spec import Spec
from nasiam_bench.core.registry import NasiamBenchError

DEVICES = "auto, cpu, cuda or cuda:N"


def check_device(device: str) -> None:
    """``device`` names a device this machine has."""
    if device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        raise NasiamBenchError(f"--device {device}: not a device; give {DEVICES}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise NasiamBenchError(
                f"--device {device}: this machine has no CUDA GPU that torch can see; give cpu or auto"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise NasiamBenchError(f"--device {device}: this machine has {torch.cuda.device_count()} GPUs (0-based)")


def check_folder(path: str | Path, option: str) -> None:
    """``path`` is a folder this process can write, or one it can create: tried for real (``os.access`` says yes
    to root where ``mkdir`` fails, in ``/proc`` say), and what the trial made removed again."""
    path = Path(path)
    existing = next(p for p in [path, *path.parents] if p.exists() or p == Path(p.anchor or "."))
    if not existing.is_dir():
        raise NasiamBenchError(f"{option} {path}: {existing} is a file, not a folder; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NasiamBenchError(f"{option} {path}: this user cannot write in {existing}; give a folder you can write")
    failed = _write_trial(path)
    if failed is not None:
        raise NasiamBenchError(f"{option} {path}: cannot write there ({failed}); give a folder you can write")


def _write_trial(path: Path) -> str | None:
    """Make ``path`` (and its missing parents) and a file in it, then remove what was made; why it failed, or
    None."""
    made: list[Path] = []
    try:
        for folder in reversed([p for p in [path, *path.parents] if not p.exists()]):
            folder.mkdir()
            made.append(folder)
        trial = path / f".nasiam-bench-write-trial-{os.getpid()}"
        trial.touch()
        trial.unlink()
        return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_workers(workers: int, where: str = "data.workers") -> None:
    """No more loader or writer processes than the machine has cores (FFCV's numba threads cannot exceed them)."""
    cores = os.cpu_count() or 1
    if workers > cores:
        raise NasiamBenchError(f"{where} = {workers}: this machine has {cores} CPU cores; give at most {cores}")


def check_machine(spec: Spec, device: str, folders: dict[str, str | Path]) -> None:
    """A run of ``spec`` on ``device`` writing into ``folders`` (option name: path) can start on this machine."""
    check_device(device)
    check_workers(spec.data.workers)
    for option, path in folders.items():
        check_folder(path, option)


def check_data(spec: Spec) -> None:
    """The prepared dataset has as many images as the spec's subsets ask for."""
    from nasiam_bench.data.prepare import open_prepared

    data = open_prepared(spec.experiment.dataset, spec.data.root or None)
    asked = [
        ("data.train_subset", spec.data.train_subset, data.train_split),
        ("eval.test_subset", spec.eval.test_subset, data.eval_split),
        ("eval.monitor_subset", spec.eval.monitor_subset, data.eval_split),
    ]
    for key, wanted, split in asked:
        count = data.split(split).count
        if wanted > count:
            raise NasiamBenchError(
                f"{key} = {wanted}: {spec.experiment.dataset}'s {split} split has {count:,} images; give at most "
                f"{count} (0: all of them)"
            )
