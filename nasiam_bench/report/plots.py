"""The style every report plot shares (matplotlib, PNG): one colour per head and one marker per strategy, the same
in every figure, legends outside the axes. A search draws its own heatmap (``search.heatmap``)."""

from __future__ import annotations

from typing import Any

import numpy as np

HEAD_COLOURS = {"baseline": "C0", "nasiam": "C1", "random": "C2", "paper": "C3", "untrained": "grey"}
STRATEGY_MARKERS = {"darts": "*", "darts_single": "P", "beta_darts": "X", "gdas": "D", "random": "v", "none": "."}
STRATEGY_COLOURS = {"darts": "C1", "darts_single": "C4", "beta_darts": "C5", "gdas": "C6", "random": "C9"}
HEAD_MARKERS = {"baseline": "o", "random": "^", "paper": "s"}


def strategy_colour(strategy: str) -> str:
    """The colour of a search strategy in the strategy plot (the same in every panel)."""
    return STRATEGY_COLOURS.get(strategy.split(" ")[0], "black")


def head_colour(head: str) -> str:
    """The colour of a head kind in every plot (a ``genotype:FILE`` head: black)."""
    return HEAD_COLOURS.get(head, "black")


def marker(head: str, strategy: str = "-") -> str:
    """A searched head's marker is its strategy's; the other heads have their own."""
    if head == "nasiam":
        return STRATEGY_MARKERS.get(strategy.split(" ")[0], "h")
    return HEAD_MARKERS.get(head, "x")


def legend_outside(fig, axes) -> None:
    """One legend to the right of the panels, where it covers nothing, with every label any panel drew once."""
    merged: dict[str, Any] = {}
    for ax in np.ravel(axes):
        handles, labels = ax.get_legend_handles_labels()
        merged.update(zip(labels, handles, strict=True))
    fig.legend(merged.values(), merged.keys(), loc="outside right upper", fontsize=7)
