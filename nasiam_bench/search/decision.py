"""Has a search decided? Measures of softmax(alpha) at a search's end, per searched layer, and the agreement of
genotypes (across seeds, or with the same search under a rounding-level perturbation).

A layer is *decided* when its chosen op leads the second by at least ``DECIDED_MARGIN`` of softmax(alpha) and has
been the argmax for the last ``DECIDED_EPOCHS`` epochs (every epoch of a shorter search). With 7 ops a uniform
softmax is 0.143 each: a margin of 0.05 is a lead the next few steps are unlikely to undo, and an argmax that
changed in the last epochs is not yet a choice.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

DECIDED_MARGIN = 0.05
DECIDED_EPOCHS = 2
PERTURBATION = 1e-6  # the perturbation check's, of alpha, whose start is 1e-3 x N(0, 1): the level of rounding


def layer_decisions(alpha: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per searched layer (head, layer): the chosen op, the margin between the first and second op of the final
    softmax(alpha), its entropy (nats; ln 7 = 1.95 is uniform over 7 ops), the epoch since which the argmax has not
    changed (1 = the first epoch's end), and whether the layer is decided."""
    out = []
    for head, a in alpha.items():
        history = np.asarray(a["history"], dtype=float)  # [epochs + 1, layers, ops]; row 0 before the search
        epochs = history.shape[0] - 1
        for layer in range(history.shape[1]):
            final = history[-1, layer]
            first, second = np.sort(final)[::-1][:2]
            choices = history[1:, layer].argmax(axis=1)
            stable = _stable_since(choices) if epochs else 0
            out.append(
                {
                    "head": head,
                    "layer": layer,
                    "op": a["ops"][int(final.argmax())],
                    "margin": float(first - second),
                    "entropy": float(-(final * np.log(np.clip(final, 1e-12, None))).sum()),
                    "stable_since": stable,
                    "decided": bool(
                        epochs
                        and first - second >= DECIDED_MARGIN
                        and epochs - stable + 1 >= min(DECIDED_EPOCHS, epochs)
                    ),
                }
            )
    return out


def _stable_since(choices: np.ndarray) -> int:
    """The first epoch (1-based) from which every later choice equals the last one."""
    since = len(choices)
    while since > 1 and choices[since - 2] == choices[-1]:
        since -= 1
    return since


def unchanged_for(alpha: dict[str, dict[str, Any]], epochs: int) -> bool:
    """Whether every layer's argmax has been the same at the ends of the last ``epochs`` + 1 epochs (the genotype
    unchanged for ``epochs`` epochs: DARTS+'s stopping rule)."""
    done = len(next(iter(alpha.values()))["history"]) - 1
    return done > epochs and all(layer["stable_since"] <= done - epochs for layer in layer_decisions(alpha))


def decision_summary(alpha: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The layers' measures and the share of decided layers; None for a search without alpha (random search)."""
    if not alpha:
        return None
    layers = layer_decisions(alpha)
    return {
        "decided_share": sum(layer["decided"] for layer in layers) / len(layers),
        "mean_margin": float(np.mean([layer["margin"] for layer in layers])),
        "threshold": {"margin": DECIDED_MARGIN, "epochs": DECIDED_EPOCHS},
        "layers": layers,
    }


def agreement(a: dict[str, list[str]], b: dict[str, list[str]]) -> float:
    """The share of layers whose op two genotypes of the same heads agree on."""
    pairs = [(x, y) for head in a for x, y in zip(a[head], b[head], strict=True)]
    return sum(x == y for x, y in pairs) / len(pairs)


def mean_pairwise_agreement(genotypes: list[dict[str, list[str]]]) -> float:
    """The mean over pairs of genotypes (of seeds, say) of their agreement; NaN with fewer than two."""
    pairs = list(itertools.combinations(genotypes, 2))
    return float(np.mean([agreement(a, b) for a, b in pairs])) if pairs else math.nan


def prefix(alpha: dict[str, dict[str, Any]], epochs: int) -> dict[str, dict[str, Any]]:
    """alpha as it stood after ``epochs`` epochs of the search (its history cut there)."""
    out = {}
    for head, a in alpha.items():
        history = a["history"][: epochs + 1]
        out[head] = {**a, "history": history, "final": history[-1]}
    return out


def genotype_of(alpha: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The argmax op of every layer of alpha's final softmax."""
    return {head: [a["ops"][int(np.argmax(layer))] for layer in a["final"]] for head, a in alpha.items()}


def by_epoch(alpha: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]] | None = None) -> list[dict]:
    """After each epoch of a search (its schedule set for all of them): the share of decided layers, and with
    ``other`` (the same search perturbed, say) the share of layers whose argmax the two agree on."""
    epochs = len(next(iter(alpha.values()))["history"]) - 1
    rows = []
    for epoch in range(1, epochs + 1):
        now = prefix(alpha, epoch)
        row = {"epoch": epoch, "decided": decision_summary(now)["decided_share"]}
        if other is not None:
            row["agreement"] = agreement(genotype_of(now), genotype_of(prefix(other, epoch)))
        rows.append(row)
    return rows
