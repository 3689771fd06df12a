"""Claims that no two processes hold: processes meet at a barrier, then claim one file at once, round after round,
on a fresh claim and on a stale one (whose process is gone), and never two of them hold it together."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import time

import pytest

from nasiam_bench.store.claims import claim, holder

HOLD_S = 0.02


def _contend(path: str, rounds: int, barrier, holding, most, wins) -> None:
    for _ in range(rounds):
        barrier.wait()
        with claim(path) as other:
            if other is None:
                with holding.get_lock():
                    holding.value += 1
                    most.value = max(most.value, holding.value)
                time.sleep(HOLD_S)
                with holding.get_lock():
                    holding.value -= 1
                with wins.get_lock():
                    wins.value += 1
        barrier.wait()  # everyone is out before the next round's stale claim is laid


def _dead_pid() -> int:
    ctx = mp.get_context("fork")
    p = ctx.Process(target=lambda: None)
    p.start()
    p.join()
    return p.pid


@pytest.mark.parametrize("processes, rounds", [(2, 150), (4, 60)])
@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_no_two_processes_ever_hold_one_claim(tmp_path, processes, rounds, stale):
    ctx = mp.get_context("fork")
    path = tmp_path / "run.claim"
    barrier = ctx.Barrier(processes, action=(lambda: _lay_stale(path)) if stale else None)
    holding, most, wins = ctx.Value("i", 0), ctx.Value("i", 0), ctx.Value("i", 0)
    workers = [
        ctx.Process(target=_contend, args=(str(path), rounds, barrier, holding, most, wins)) for _ in range(processes)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert all(w.exitcode == 0 for w in workers)
    assert most.value == 1  # never two holders at once
    assert wins.value >= rounds  # and someone held it every round
    assert not path.exists() or holder(path) is None


DEAD = None


def _lay_stale(path) -> None:
    """Before a round (the barrier's action): a claim left by a process that is gone."""
    global DEAD
    DEAD = DEAD or _dead_pid()
    if not path.exists():
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": DEAD, "started": "then", "token": "old"}))


def test_a_process_releases_only_its_own_claim(tmp_path):
    path = tmp_path / "run.claim"
    with claim(path) as other:
        assert other is None
        mine = json.loads(path.read_text())
        # another process took it over meanwhile (this one stalled past its staleness): not ours to remove
        path.write_text(json.dumps({**mine, "pid": os.getppid(), "token": "theirs"}))
    assert json.loads(path.read_text())["token"] == "theirs"
