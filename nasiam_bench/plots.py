"""Plots (matplotlib, PNG): the architecture weights over a search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from nasiam_bench.io import atomic_path


def plot_alpha(alpha: dict[str, dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """One heatmap per searched layer: softmax(alpha) per op (columns) after each epoch (rows)."""
    heads = list(alpha)
    columns = max(len(alpha[h]["final"]) for h in heads)
    fig, axes = plt.subplots(
        len(heads), columns, figsize=(2.0 * columns + 1, 2.8 * len(heads)), squeeze=False, layout="constrained"
    )
    low = min(np.min(alpha[h]["history"]) for h in heads)
    high = max(np.max(alpha[h]["history"]) for h in heads)  # a shared scale that shows small moves too
    for row, head in enumerate(heads):
        history = np.asarray(alpha[head]["history"])  # [epochs + 1, layers, ops]
        ops = alpha[head]["ops"]
        for layer in range(columns):
            ax = axes[row][layer]
            if layer >= history.shape[1]:
                ax.axis("off")
                continue
            image = ax.imshow(
                history[:, layer, :], aspect="auto", cmap="viridis", vmin=low, vmax=high, interpolation="nearest"
            )
            ax.set_title(f"{head} layer {layer}", fontsize=8)
            ax.set_xticks(range(len(ops)), [o.replace("linear_", "") for o in ops], rotation=90, fontsize=6)
            ax.set_yticks(range(history.shape[0]))
            ax.set_ylabel("epoch" if layer == 0 else "", fontsize=7)
            ax.tick_params(axis="y", labelsize=6)
    fig.colorbar(image, ax=axes, shrink=0.6, label="softmax(alpha) (0 = before the search)")
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
