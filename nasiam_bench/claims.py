"""A run is claimed by the process that runs it, so that benches started side by side (two terminals, several
cluster jobs over one shared folder) split the work instead of repeating it.

A claim is a small JSON file created exclusively (``O_CREAT | O_EXCL``) beside what the run writes, holding the
host, the pid and the time. While the owner works, a thread touches it every ``HEARTBEAT_S`` seconds. A claim is
stale when its process is gone (same host) or its heartbeat is older than ``STALE_AFTER_S`` (another host, whose
processes cannot be seen from here); a stale claim is taken over.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nasiam_bench.registry import NasiamBenchError

HEARTBEAT_S = 60.0
STALE_AFTER_S = 10 * HEARTBEAT_S


@dataclass(frozen=True)
class Claim:
    host: str
    pid: int
    started: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} (since {self.started})"


def _mine() -> Claim:
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return Claim(socket.gethostname(), os.getpid(), now)


def alive(pid: int) -> bool:
    if pid <= 0:  # no pid recorded; and os.kill(-1 or 0, ...) would ask about a whole group, which always exists
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def holder(path: Path) -> Claim | None:
    """The live claim on ``path``, or None when there is none or it is stale."""
    try:
        data = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
        claim = Claim(str(data["host"]), int(data["pid"]), str(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # gone meanwhile, or half-written by a process that died: not a live claim
    if claim.host == socket.gethostname():
        return claim if alive(claim.pid) and claim.pid != os.getpid() else None
    return claim if age < STALE_AFTER_S else None


def _create(path: Path, claim: Claim) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump({"host": claim.host, "pid": claim.pid, "started": claim.started}, fh)
    return True


@contextlib.contextmanager
def claim(path: str | Path) -> Iterator[Claim | None]:
    """Claim ``path`` (a ``.claim`` file) for the block: yields None when this process holds it, else the live
    claim of the process that does (the block should then leave the run alone). A stale claim is taken over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = _mine()
    if not _create(path, mine):
        other = holder(path)
        if other is not None:
            yield other
            return
        path.unlink(missing_ok=True)  # stale: its owner is gone
        if not _create(path, mine):  # another process took it over first
            yield holder(path) or Claim("?", -1, "?")
            return
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True)
    beat.start()
    try:
        yield None
    finally:
        stop.set()
        beat.join()
        path.unlink(missing_ok=True)


class RunClaimed(NasiamBenchError):
    """Another live process is running this run or search."""


@contextlib.contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Run the block under this process's claim on ``path``; ``RunClaimed`` when another live process holds it."""
    with claim(path) as other:
        if other is not None:
            raise RunClaimed(f"{what} is being run by {other}; wait for it, or stop that process")
        yield


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_S):
        with contextlib.suppress(OSError):
            os.utime(path)
