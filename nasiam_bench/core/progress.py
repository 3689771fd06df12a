"""Progress of long work: tqdm's bar on a terminal; in a log (stderr is a file or a pipe), plain lines with no
carriage returns: one when the work ends and, on long work, one every ``LOG_EVERY_S`` seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
LOG_EVERY_S = 30.0


def progress(
    items: Iterable[T], desc: str, unit: str = "it", total: int | None = None, enabled: bool = True, end: bool = True
) -> Iterable[T]:
    """``items``, showing how far the loop over them is. ``end``: in a log, also say when it is done (an epoch
    does; the short inner loops of an evaluation say something only when they take long)."""
    if not enabled:
        return items
    if sys.stderr.isatty():
        return tqdm(items, desc=desc, unit=unit, total=total, leave=False)
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    return _logged(items, desc, unit, total, end)


def _logged(items: Iterable[T], desc: str, unit: str, total: int | None, end: bool) -> Iterator[T]:
    began = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            _line(desc, done, total, unit, now - began)
            last = now
    if end:
        _line(desc, done, total, unit, time.monotonic() - began)


def _line(desc: str, done: int, total: int | None, unit: str, seconds: float) -> None:
    rate = f", {done / seconds:.2f} {unit}/s" if seconds > 0 else ""
    of = f"/{total}" if total is not None else ""
    print(f"{desc}: {done}{of} {unit}s in {seconds:.1f} s{rate}", file=sys.stderr, flush=True)
