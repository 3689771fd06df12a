"""``python -m nasiam_bench.bench.held_signal COMMAND ...``: run COMMAND with the preemption signal blocked, so that a
signal SLURM sends while the job still starts (Python importing torch and submitit, before any handler exists) is
held pending instead of killing it; ``release`` in the job, once its handlers are in place, delivers it then. A
SLURM job's interpreter is this wrapper around Python (``executors.submit_slurm``); the mask survives the exec."""

from __future__ import annotations

import os
import signal
import sys


def preemption_signal() -> signal.Signals:
    """The signal submitit treats as preemption or time-out (``SUBMITIT_PREEMPT_SIGNAL``, default USR2)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def release() -> None:
    """Unblock the preemption signal: one that came during start-up is delivered now, to the handlers in place."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {preemption_signal()})


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m nasiam_bench.bench.held_signal COMMAND [ARGS...]")
    signal.pthread_sigmask(signal.SIG_BLOCK, {preemption_signal()})
    os.execvp(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
