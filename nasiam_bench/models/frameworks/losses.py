"""The frameworks' losses as plain functions of their embeddings, so each can be checked by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasiam_bench.core.distributed import gather_with_grad


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """SimSiam's D(p, z) with the stop-gradient on z: minus the mean cosine similarity."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def simsiam_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    return 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))


def byol_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """BYOL: 2 - 2 cos(p, target), symmetrised (mean over the batch, summed over the two directions)."""
    return (2 - 2 * F.cosine_similarity(p1, t2.detach(), dim=-1)).mean() + (
        2 - 2 * F.cosine_similarity(p2, t1.detach(), dim=-1)
    ).mean()


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo: the positive key against the queue's negatives; q, k L2-normalised [n, d], queue [d, K]."""
    positive = (q * k.detach()).sum(dim=1, keepdim=True)
    negatives = q @ queue.detach()
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the global batch: each of the 2N views against the 2N - 1 others; gathered across
    processes with gradients, so the loss of N per process equals that of one process with the whole batch."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = len(z1)
    all1, all2 = gather_with_grad(z1), gather_with_grad(z2)
    total = len(all1)
    rank_offset = _rank() * n
    local = torch.cat([z1, z2])  # [2n, d]
    every = torch.cat([all1, all2])  # [2N, d]
    logits = local @ every.T / temperature
    rows = torch.arange(n, device=z1.device) + rank_offset
    self_index = torch.cat([rows, rows + total])
    positive_index = torch.cat([rows + total, rows])
    logits[torch.arange(2 * n, device=z1.device), self_index] = float("-inf")
    return F.cross_entropy(logits, positive_index)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
