"""Which machine made a figure: the CPU model or the GPU's name, the instruction set torch's CPU kernels use, the
host and torch's version. CPUs of different kinds round differently, so training takes different paths on them
(a record says where it ran; the ground-truth analysis flags pairs that ran apart)."""

from __future__ import annotations

import functools
import platform
import re
import socket

import torch


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | str = "cpu") -> dict[str, str]:
    """The facts a record keeps of the machine that made it."""
    device = torch.device(device)
    facts = {
        "cpu": cpu_model(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "host": socket.gethostname(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def machine_kind(facts: dict[str, str] | None) -> str:
    """What two runs must share to take the same path: the GPU, or the CPU model and its instruction set."""
    if not facts:
        return "unrecorded"
    return facts.get("gpu") or f"{facts.get('cpu')} ({facts.get('cpu_isa')})"


def machine_slug(facts: dict[str, str]) -> str:
    """The kind of machine as a folder name: ``amd-epyc-avx512``."""
    return re.sub(r"[^a-z0-9]+", "-", machine_kind(facts).lower()).strip("-")
