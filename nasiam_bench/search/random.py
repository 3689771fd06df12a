"""Random search: K genotypes sampled with the seed, each trained briefly with the framework's loss on the training
half, the best kept. The baseline any NAS claim must beat. By default (``search.random_rank = "ssl_loss"``) the best
is the one with the lowest framework loss on the held-out half, a label-free signal (the one the alpha step of the
gradient strategies learns from), so that it competes with them on equal terms; ``"knn"`` ranks by kNN top-1 of the
held-out half against the training half, which uses labels (and the tables say so).

Each candidate starts from the seed (its weights, its data order), so a candidate's score does not depend on the
ones before it; the scores are saved after each candidate, and a resumed search trains only those not yet scored.
"""

from __future__ import annotations

import time

import numpy as np

from nasiam_bench.core import distributed
from nasiam_bench.core.registry import SEARCH_STRATEGIES
from nasiam_bench.core.rng import seed_everything
from nasiam_bench.engine.loop import Callback, Epoch
from nasiam_bench.engine.train import train_step
from nasiam_bench.models.heads.genotype import sample_genotype
from nasiam_bench.search.base import SearchContext, SearchResult, SearchStrategy, search_epochs, weight_optimizer
from nasiam_bench.store.checkpoints import load_state, save_state
from nasiam_bench.store.layout import SEARCH_STATE

# search.random_rank: the score each candidate gets, and +1 where higher is better, -1 where lower is
RANKS = {"knn": ("knn_top1", 1.0), "ssl_loss": ("held_out_loss", -1.0)}


@SEARCH_STRATEGIES.register("random")
class RandomSearch(SearchStrategy):
    name = "random"

    reads = ("train.amp", "eval.knn_k", "eval.knn_temperature", "eval.knn_weighted", "eval.linear_batch_size")

    def run(self, ctx: SearchContext) -> SearchResult:
        rng = np.random.default_rng(ctx.seed)
        candidates = [sample_genotype(ctx.ops, ctx.heads, rng) for _ in range(ctx.search.random_samples)]
        state_path = ctx.out_dir / SEARCH_STATE
        way_out = "use another --out, or remove it to search afresh"
        state = load_state(state_path, "search", ctx.identity, way_out) or {"scores": [], "seconds": 0.0, "steps": 0}
        for k, genotype in enumerate(candidates[len(state["scores"]) :], start=len(state["scores"])):
            began = time.perf_counter()
            seed_everything(ctx.seed)
            model = ctx.build_model(genotype)
            timer = _DeviceTime()
            steps = self._train(model, ctx, f"random {k + 1}/{len(candidates)}, epoch", timer)
            state["scores"].append({"genotype": genotype, **self._score(model, ctx)})
            # the loop's epochs at their share of the device, the rest (building, scoring) at the last share
            rest = time.perf_counter() - began - timer.wall
            state["seconds"] += timer.device + rest / timer.shared_by
            state["steps"] += steps
            if distributed.is_main_process():
                save_state(state_path, "search", ctx.identity, state)
        key, sign = RANKS[ctx.search.random_rank]
        best = max(state["scores"], key=lambda s: sign * s[key])
        return SearchResult(
            self.name, best["genotype"], scores=state["scores"], seconds=state["seconds"], steps=state["steps"]
        )

    @staticmethod
    def _score(model, ctx: SearchContext) -> dict[str, float]:
        """The candidate's score: its held-out SSL loss (label-free, by default), or kNN top-1 (uses labels)."""
        if ctx.search.random_rank == "knn":
            return {"knn_top1": ctx.knn_score(model.backbone)}
        return {"held_out_loss": ctx.held_out_loss(model)}

    @staticmethod
    def _train(model, ctx: SearchContext, label: str, timer: Callback) -> int:
        """A candidate's brief training, through the one training loop."""
        per_epoch = len(ctx.train_loader)
        total = max(1, per_epoch * ctx.search.epochs)
        optimizer, scheduler = weight_optimizer(model.param_groups(), ctx.search, ctx.search.batch_size, total)
        model.train()

        def step(epoch: int, i: int, batch) -> dict:
            done = epoch * per_epoch + i + 1
            return train_step(model, batch[0], batch[1], optimizer, scheduler, done / total, ctx.amp)

        search_epochs(ctx, range(ctx.search.epochs), step, [timer], label, RandomSearch.name)
        return per_epoch * ctx.search.epochs


class _DeviceTime(Callback):
    """A candidate's epochs: their wall time, their share of the device's, and the last epoch's sharing."""

    def __init__(self) -> None:
        self.wall, self.device, self.shared_by = 0.0, 0.0, 1.0

    def epoch_end(self, epoch: Epoch) -> None:
        self.wall += epoch.seconds
        self.device += epoch.device_seconds
        self.shared_by = epoch.shared_by
