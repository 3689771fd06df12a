"""Benchmarks report ratios against a reference measured in the same run; the figures are printed at the end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

FIGURES: list[str] = []


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its live children (loader workers)."""
    me = psutil.Process(os.getpid())
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def measure(fn: Callable[[], int]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and the count ``fn`` returns, for one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    count = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, count


@dataclass(frozen=True)
class Size:
    """The size a benchmark runs at: its full size when measured (``make benchmark``), its smoke size when
    pytest-benchmark is disabled (``make test``: each benchmark runs once, unmeasured, to show it still works)."""

    full: bool

    def pick(self, full: Any, smoke: Any) -> Any:
        return full if self.full else smoke


@pytest.fixture
def size(request) -> Size:
    return Size(not request.config.getoption("benchmark_disable"))


@pytest.fixture
def report():
    """``report(line)`` adds a line to the summary printed after the run."""
    return FIGURES.append


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("benchmark figures (ratios against a reference measured in the same run)")
        for line in FIGURES:
            terminalreporter.write_line(line)
