"""How many runs share a device at once (``bench --jobs``, or benches started side by side): while a run's loop
trains it holds a claim (``claims.claim``) in a per-machine folder of its device, and it counts the live claims of
that device at each epoch's start and end. Its device time for the epoch is the wall time divided by the mean of
the two counts, and its record names the mean count (``device_shared_by``), so the device-hours of runs that shared
a device add up to the device's time rather than to a multiple of it."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from nasiam_bench.claims import claim, holder

LEDGER = Path(os.environ.get("NASIAM_DEVICE_LEDGER", Path(tempfile.gettempdir()) / "nasiam-bench-devices"))


def device_key(device: torch.device | str) -> str:
    """A name for the physical device, the same in every process of this machine (a GPU's UUID: the same whatever
    CUDA_VISIBLE_DEVICES maps it to)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda-{torch.cuda.get_device_properties(index).uuid}"
    return f"{device.type}-{socket.gethostname()}"


@contextlib.contextmanager
def occupying(device: torch.device | str | None) -> Iterator[Occupancy]:
    """Hold a claim on ``device`` for the block (None: count nothing, a share of 1)."""
    if device is None:
        yield Occupancy(None)
        return
    folder = LEDGER / device_key(device)
    name = f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}.claim"
    with claim(folder / name):
        yield Occupancy(folder)


class Occupancy:
    """The runs on a device now, this one included."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def count(self) -> int:
        if self.folder is None:
            return 1
        return 1 + sum(holder(path) is not None for path in self.folder.glob("*.claim"))  # not this process's own
