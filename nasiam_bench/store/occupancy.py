"""How many runs share a device at once (``bench --jobs``, or benches started side by side): while a job works on
a device (its set-up, training, evaluation, a floor, a search) it holds a claim (``claims.claim``) in a per-machine
folder of that device. A thread samples the live claims every ``SAMPLE_S`` seconds and integrates the job's share of
the device over time, dt / (runs on it); a phase's device time is that integral over the phase, and a record names
the mean count over its epochs (``device_shared_by``), so the device-hours of runs that shared a device add up to
the device's time rather than to a multiple of it. A process holds one claim a device: nested phases share it."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from nasiam_bench.store.claims import claim, holder

LEDGER = Path(os.environ.get("NASIAM_DEVICE_LEDGER", Path(tempfile.gettempdir()) / "nasiam-bench-devices"))
SAMPLE_S = 0.25  # how often the runs on a device are counted


def device_key(device: torch.device | str) -> str:
    """A name for the physical device, the same in every process of this machine (a GPU's UUID: the same whatever
    CUDA_VISIBLE_DEVICES maps it to)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda-{torch.cuda.get_device_properties(index).uuid}"
    return f"{device.type}-{socket.gethostname()}"


_HELD: dict[str, Occupancy] = {}  # this process's occupancy of each device, while a phase holds it
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def occupying(device: torch.device | str | None) -> Iterator[Occupancy]:
    """Occupy ``device`` for the block (None: count nothing, a share of 1); inside another block of the same
    device, the same occupancy."""
    if device is None:
        yield Occupancy(None)
        return
    key = device_key(device)
    with _HELD_LOCK:
        held = _HELD.get(key)
    if held is not None:
        yield held
        return
    folder = LEDGER / key
    name = f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}.claim"
    with claim(folder / name):
        occupancy = Occupancy(folder)
        with _HELD_LOCK:
            _HELD[key] = occupancy
        try:
            yield occupancy
        finally:
            with _HELD_LOCK:
                _HELD.pop(key, None)
            occupancy.stop()


class Occupancy:
    """The runs on a device now, this one included, and this process's share of the device's time so far."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._last, self._share, self._count = time.perf_counter(), 0.0, self.count()
        self._stop = threading.Event()
        self._sampler = None
        if folder is not None:
            self._sampler = threading.Thread(target=self._sample, daemon=True, name="occupancy")
            self._sampler.start()

    def count(self) -> int:
        if self.folder is None:
            return 1
        return 1 + sum(holder(path) is not None for path in self.folder.glob("*.claim"))  # not this process's own

    def device_seconds(self) -> float:
        """This process's device time since the occupancy began: the integral of dt / (runs on the device)."""
        with self._lock:
            now = time.perf_counter()
            self._share += (now - self._last) / self._count
            self._last = now
            return self._share

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            count = self.count()
            with self._lock:
                now = time.perf_counter()
                self._share += (now - self._last) / self._count
                self._last, self._count = now, count

    def stop(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()


@contextlib.contextmanager
def device_time(device: torch.device | str | None) -> Iterator[list[float]]:
    """The block's wall and device seconds, ``[wall, device]``, filled in when it ends (the device's time shared
    with the other runs on it)."""
    spent = [0.0, 0.0]
    with occupying(device) as occupancy:
        began, share = time.perf_counter(), occupancy.device_seconds()
        try:
            yield spent
        finally:
            spent[0], spent[1] = time.perf_counter() - began, occupancy.device_seconds() - share
