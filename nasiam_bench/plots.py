"""Plots (matplotlib, PNG): the architecture weights over a search, and the style every plot shares: one colour per
head and one marker per strategy, the same in every figure, legends outside the axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from nasiam_bench.io import atomic_path

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


def save(fig, path: str | Path, **options: Any) -> Path:
    """Write the figure as a PNG, atomically, and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, **options)
    plt.close(fig)
    return path


def plot_alpha(alpha: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One heatmap per searched layer: softmax(alpha) per op (columns) after each epoch (rows), on the fixed scale
    [0, 1] (so that 0.1426 against 0.1430 looks as undecided as it is), the argmax of each row marked with a dot,
    and the final margin between the first and second op in the layer's title."""
    heads = list(alpha)
    columns = max(len(alpha[h]["final"]) for h in heads)
    fig, axes = plt.subplots(
        len(heads), columns, figsize=(2.0 * columns + 1, 2.8 * len(heads)), squeeze=False, layout="constrained"
    )
    for row, head in enumerate(heads):
        history = np.asarray(alpha[head]["history"])  # [epochs + 1, layers, ops]
        ops = alpha[head]["ops"]
        for layer in range(columns):
            ax = axes[row][layer]
            if layer >= history.shape[1]:
                ax.axis("off")
                continue
            weights = history[:, layer, :]
            image = ax.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            epochs = np.arange(weights.shape[0])
            ax.scatter(weights.argmax(axis=1), epochs, s=10, c="white", edgecolors="black", linewidths=0.5)
            first, second = np.sort(weights[-1])[::-1][:2]
            ax.set_title(f"{head} layer {layer}: margin {first - second:.3f}", fontsize=7)
            ax.set_xticks(range(len(ops)), [o.replace("linear_", "") for o in ops], rotation=90, fontsize=6)
            ax.set_yticks(epochs)
            ax.set_ylabel("epoch" if layer == 0 else "", fontsize=7)
            ax.tick_params(axis="y", labelsize=6)
    label = "softmax(alpha), fixed scale 0-1 (row 0: before the search; dot: the argmax)"
    fig.colorbar(image, ax=axes, shrink=0.6, label=label)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, path, bbox_inches="tight")
