"""Random search: K genotypes sampled with the seed, each trained briefly with the framework's loss on the training
half, the best by kNN (held-out half against training half) kept. The baseline any NAS claim must beat."""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from nasiam_bench.registry import SEARCH_STRATEGIES
from nasiam_bench.search.base import SearchContext, SearchResult, SearchStrategy


def sample_genotype(ops: list[str], layers: dict[str, int], rng: np.random.Generator) -> dict[str, list[str]]:
    """One op per layer, uniformly from the search space."""
    return {head: [str(rng.choice(ops)) for _ in range(n)] for head, n in layers.items()}


@SEARCH_STRATEGIES.register("random")
class RandomSearch(SearchStrategy):
    name = "random"

    def run(self, ctx: SearchContext) -> SearchResult:
        rng = np.random.default_rng(ctx.seed)
        candidates = [sample_genotype(ctx.ops, ctx.heads, rng) for _ in range(ctx.search.random_samples)]
        scores, began, steps = [], time.perf_counter(), 0
        for k, genotype in enumerate(candidates):
            torch.manual_seed(ctx.seed)
            model = ctx.build_model(genotype)
            steps += self._train(model, ctx, f"random {k + 1}/{len(candidates)}")
            scores.append({"genotype": genotype, "knn_top1": ctx.knn_score(model.backbone)})
        best = max(scores, key=lambda s: s["knn_top1"])
        return SearchResult(
            self.name, best["genotype"], scores=scores, seconds=time.perf_counter() - began, steps=steps
        )

    @staticmethod
    def _train(model, ctx: SearchContext, label: str) -> int:
        from nasiam_bench.train import train_step

        lr = ctx.search.lr * ctx.search.batch_size / 256
        optimizer = torch.optim.SGD(model.param_groups(), lr=lr, momentum=0.9, weight_decay=5e-4)
        total = max(1, len(ctx.train_loader) * ctx.search.epochs)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
        step = 0
        model.train()
        for epoch in range(ctx.search.epochs):
            ctx.train_loader.set_epoch(epoch)
            for view1, view2, _ in tqdm(ctx.train_loader, desc=label, leave=False, disable=not ctx.progress):
                step += 1
                train_step(model, view1, view2, optimizer, scheduler, step / total)
        return step
