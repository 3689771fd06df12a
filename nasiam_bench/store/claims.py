"""A run is claimed by the process that runs it, so that benches started side by side (two terminals, several
cluster jobs over one shared folder) split the work instead of repeating it.

A claim is a small JSON file beside what the run writes, holding the host, the pid, the time and a token of its
own. It appears whole or not at all: written to a temporary file, then hard-linked into place (which fails when a
claim is there). While the owner works, a thread touches it every ``HEARTBEAT_S`` seconds. A claim is stale when
its process is gone (same host) or its heartbeat is older than ``STALE_AFTER_S`` (another host, whose processes
cannot be seen from here). A stale claim is taken over by renaming a new claim over it, under an exclusive lock on
the folder's ``.claims.lock`` file, after reading it again under that lock; a process releases only a claim that
holds its own token.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nasiam_bench.core.registry import NasiamBenchError

HEARTBEAT_S = 60.0
STALE_AFTER_S = 10 * HEARTBEAT_S
LOCK = ".claims.lock"  # one a folder


@dataclass(frozen=True)
class Claim:
    host: str
    pid: int
    started: str
    token: str = ""

    def __str__(self) -> str:
        return f"{self.host}:{self.pid} (since {self.started})"


def _mine() -> Claim:
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return Claim(socket.gethostname(), os.getpid(), now, uuid.uuid4().hex)


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


def _read(path: Path) -> tuple[Claim, float] | None:
    """The claim at ``path`` and its heartbeat's age; None when there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
        return Claim(str(data["host"]), int(data["pid"]), str(data["started"]), str(data.get("token", ""))), age
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _live(found: tuple[Claim, float] | None) -> Claim | None:
    if found is None:
        return None
    claim, age = found
    if claim.host == socket.gethostname():
        return claim if alive(claim.pid) and claim.pid != os.getpid() else None
    return claim if age < STALE_AFTER_S else None


def holder(path: Path) -> Claim | None:
    """The live claim on ``path``, or None when there is none or it is stale."""
    return _live(_read(path))


def _unreadable_but_fresh(path: Path) -> bool:
    """A claim file that cannot be read (an older version's, half-written) counts as live while it is fresh."""
    try:
        return _read(path) is None and time.time() - path.stat().st_mtime < STALE_AFTER_S
    except OSError:
        return False


def _written(path: Path, claim: Claim) -> Path:
    """``claim`` written whole to a temporary file beside ``path``."""
    tmp = path.with_name(f"{path.name}.{claim.token}.tmp")
    tmp.write_text(json.dumps(vars(claim)))
    return tmp


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the folder's lock file: who takes a stale claim over, or releases one."""
    with open(path.with_name(LOCK), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _acquire(path: Path, mine: Claim) -> Claim | None:
    """Take the claim: None when it is now this process's, else the live claim of the process that holds it."""
    tmp = _written(path, mine)
    try:
        try:
            os.link(tmp, path)  # atomic, and fails when a claim is there
            return None
        except FileExistsError:
            pass
        with _locked(path):
            found = _read(path)
            other = _live(found) or (Claim("?", -1, "?") if _unreadable_but_fresh(path) else None)
            if other is not None:
                return other
            os.replace(tmp, path)  # the stale claim, replaced whole
            return None
    finally:
        tmp.unlink(missing_ok=True)


def _release(path: Path, mine: Claim) -> None:
    with _locked(path):
        found = _read(path)
        if found is not None and found[0].token == mine.token:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def claim(path: str | Path) -> Iterator[Claim | None]:
    """Claim ``path`` (a ``.claim`` file) for the block: yields None when this process holds it, else the live
    claim of the process that does (the block should then leave the run alone). A stale claim is taken over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = _mine()
    other = _acquire(path, mine)
    if other is not None:
        yield other
        return
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True)
    beat.start()
    try:
        yield None
    finally:
        stop.set()
        beat.join()
        _release(path, mine)


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
