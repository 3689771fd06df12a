"""The figure a search leaves in its folder: how softmax(alpha) of each searched layer moved, epoch by epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nasiam_bench.core.figures import plt, save


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
