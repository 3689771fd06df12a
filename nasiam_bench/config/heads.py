"""The kinds of head a bench trains, by the names specs and records use (``experiment.head``, a record's ``head``).
A head may also be named by its genotype: ``genotype:<file>`` or ``ops:<head>=<op>,...``."""

from __future__ import annotations

from enum import StrEnum


class HeadKind(StrEnum):
    """A head kind; a member equals its name as a string, so records and specs keep plain strings."""

    FLOOR = "untrained"  # the backbone before training: the kNN floor (it trains nothing)
    BASELINE = "baseline"  # the framework's standard heads
    NASIAM = "nasiam"  # the genotype a search strategy chose
    RANDOM = "random"  # a genotype sampled from the same space with the seed
    PAPER = "paper"  # the paper's published genotype


def trained_head(kind: str) -> str:
    """The head a run of this kind trains: the floor evaluates the baseline's backbone, untrained."""
    return HeadKind.BASELINE if kind == HeadKind.FLOOR else kind
