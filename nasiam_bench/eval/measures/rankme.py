"""RankMe (Garrido, Balestriero, Najman and LeCun, "RankMe: Assessing the downstream performance of pretrained
self-supervised representations by their rank", ICML 2023, eq. 1): the exponential of the Shannon entropy of the
embeddings' singular values normalised to sum to one, each plus a small epsilon. Between 1 (every embedding on one
line) and min(n, d); computed on the raw embeddings (no centring, no normalisation), as the paper does."""

from __future__ import annotations

import math

import torch

EPSILON = 1e-7  # the paper's


@torch.no_grad()
def rankme(embeddings: torch.Tensor, epsilon: float = EPSILON) -> float:
    """RankMe of ``embeddings`` [n, d] (n should exceed d; the paper uses at least 2,048 of them)."""
    singular = torch.linalg.svdvals(embeddings.double())
    p = singular / singular.sum().clamp_min(1e-300) + epsilon
    return math.exp(-(p * p.log()).sum().item())
