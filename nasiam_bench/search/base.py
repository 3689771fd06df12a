"""What a search strategy is, and the shared loop of the gradient-based ones (after NNI's one-shot strategies).

A strategy is loss-agnostic: it calls ``loss_fn(model, view1, view2, features)``, the framework's own loss. The
gradient strategies alternate an architecture step on a batch of the held-out half (the backbone runs without
autograd there: only alpha needs gradients) and a weight step on a batch of the training half. The architecture
step changes alpha and its optimiser's state only: every buffer the forward pass moves (BatchNorm statistics,
MoCo's queue, the momentum encoders') is put back as it was, so held-out batches never reach the weight step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasiam_bench.config.spec import SearchSection
from nasiam_bench.core import distributed
from nasiam_bench.core.optim import build_optimizer, scaled_lr
from nasiam_bench.core.rng import rng_state, set_rng_state
from nasiam_bench.core.schedule import lr_schedule
from nasiam_bench.engine.loop import Callback, Epoch, TrainingDiverged, run_epochs, search_diverged
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.models.heads.supernet import ALPHA_INIT_STD, SearchHead
from nasiam_bench.search.decision import unchanged_for
from nasiam_bench.store.checkpoints import load_state, save_state
from nasiam_bench.store.layout import SEARCH_STATE

LossFn = Callable[..., torch.Tensor]


def framework_loss(
    model: Framework, view1: torch.Tensor, view2: torch.Tensor, features: tuple[torch.Tensor, ...] | None = None
) -> torch.Tensor:
    return model(view1, view2, features)["loss"]


@dataclass
class SearchContext:
    """What a strategy may use: how to build models, the two halves' loaders, a kNN score, where to write."""

    search: SearchSection
    seed: int
    ops: list[str]
    build_supernet: Callable[[], Framework]
    build_model: Callable[[dict[str, list[str]]], Framework]
    train_loader: Any  # SSLLoader over the weights' half
    val_loader: Any  # SSLLoader over the architecture's half
    knn_score: Callable[[nn.Module], float]  # kNN top-1 of the held-out half against the training half
    heads: dict[str, int]  # searched heads and their layer counts
    out_dir: Path
    progress: bool = True
    amp: bool = False  # bf16 autocast of the forward passes, as pre-training (train.amp, on CUDA only)
    identity: str = ""  # the search's identity (seed included): the only state it resumes from
    held_out_loss: Callable[[nn.Module], float] | None = None  # the framework's mean loss on the held-out half
    device: Any = None  # where its steps run (whose other runs occupancy.py counts)


@dataclass
class SearchResult:
    strategy: str
    genotype: dict[str, list[str]] | None  # None: the framework's baseline heads
    alpha: dict[str, Any] = field(default_factory=dict)
    scores: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    ended: str = ""  # what ended a gradient search: its epoch cap, or its stopping rule
    decision: dict[str, Any] | None = None  # search.decision.decision_summary of its alpha (None: no alpha)
    perturbation_agreement: float | None = None  # the share of layers its perturbed twin chose alike


class SearchStrategy:
    name = "strategy"
    # The values outside [search], [data], [framework] and [experiment] the strategy's numbers depend on: they are
    # part of its search identity (nasiam_bench.store.identity), and no other value of [train] or [eval] is.
    reads: tuple[str, ...] = ("train.amp",)
    # Whether it learns alpha: only then do the [search] options marked read_by="gradient" change its numbers.
    gradient = False
    # Host reads of device values a step makes by design (the loop itself makes none between its read points).
    reads_per_step = 0

    def run(self, ctx: SearchContext) -> SearchResult:
        raise NotImplementedError


def search_epochs(ctx: SearchContext, epochs: range, step, callbacks: list[Callback], desc: str, strategy: str) -> None:
    """A search's epochs over its weights' half, through the one training loop."""
    words = search_diverged(strategy)
    kwargs = {"desc": desc, "progress": ctx.progress, "diverged": words, "device": ctx.device}
    run_epochs(ctx.train_loader, epochs, step, callbacks, **kwargs)


def search_heads(model: nn.Module) -> dict[str, SearchHead]:
    """The online searched heads of a model (not the momentum copies)."""
    return {name: head for name, head in model.heads.items() if isinstance(head, SearchHead)}


def weight_optimizer(
    groups: list[dict], search: SearchSection, batch_size: int, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser of the weights during a search, and its per-step schedule (fixed-lr groups kept; changing
    once an epoch of ``total_steps / search.epochs`` steps with ``search.lr_steps = "epoch"``)."""
    lr = scaled_lr(search.lr, search.lr_scaling, batch_size)
    optimizer = build_optimizer(search.weight_optimizer, groups, lr, search.weight_decay)
    per = max(1, total_steps // search.epochs) if search.lr_steps == "epoch" else 0
    return optimizer, lr_schedule(optimizer, total_steps, kind=search.schedule, steps_per_epoch=per)


@contextlib.contextmanager
def buffers_restored(model: nn.Module) -> Iterator[None]:
    """Run a block, then put every buffer of ``model`` back as it was before it (values, in place)."""
    saved = [(b, b.clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


class GradientStrategy(SearchStrategy):
    """Alternating first-order updates of alpha (Adam/AdamW on the held-out half) and of the weights (SGD).

    ``held_out``: whether alpha learns from the held-out half (bilevel); a single-level strategy sets it False and
    the loop then draws no held-out batches."""

    gradient = True

    held_out = True

    def __init__(self) -> None:
        self.model: Framework | None = None
        self.heads: dict[str, SearchHead] = {}
        self.arch_optimizer: torch.optim.Optimizer | None = None
        self.weight_optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.progress = 0.0

    # -- the interface: attach, step, genotype, state_dict
    def attach(
        self, model: Framework, search: SearchSection, total_steps: int, batch_size: int, amp: bool = False
    ) -> None:
        """Take ``model``'s searched heads and build the optimisers; ``amp``: run the forward passes under bf16
        autocast on CUDA, as pre-training does with ``train.amp``."""
        self.model, self.heads, self.amp = model, search_heads(model), amp
        alphas = [h.alpha for h in self.heads.values()]
        arch_cls = torch.optim.AdamW if search.arch_optimizer == "adamw" else torch.optim.Adam
        self.arch_optimizer = arch_cls(
            alphas, lr=search.arch_lr, betas=tuple(search.arch_betas), weight_decay=search.arch_weight_decay
        )
        self.arch_every_batch = search.arch_steps == "batch"
        alpha_ids = {id(a) for a in alphas}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in alpha_ids]} for g in model.param_groups()]
        self.weight_optimizer, self.scheduler = weight_optimizer(groups, search, batch_size, total_steps)
        self.total_steps = max(1, total_steps)
        self.steps = 0

    def step(
        self,
        train_batch: tuple[torch.Tensor, torch.Tensor],
        val_batch: tuple[torch.Tensor, torch.Tensor] | None,
        loss_fn: LossFn = framework_loss,
    ) -> dict[str, torch.Tensor | None]:
        """One search step, its losses left on the device (the loop reads them at its read points): the
        architecture of the step (``begin_step``), then alpha (unless ``val_batch`` is None:
        ``search.arch_steps = "epoch"`` steps alpha on the epoch's first batch only), then the weights."""
        self.begin_step()
        arch_loss = self.arch_step(val_batch, loss_fn) if val_batch is not None else None
        loss = self.weight_step(train_batch, loss_fn)
        return {"loss": loss, "arch_loss": arch_loss}

    def begin_step(self) -> None:
        """Decide the architecture every forward pass of this step uses (GDAS draws its sample here)."""

    def arch_step(self, val_batch: tuple[torch.Tensor, torch.Tensor], loss_fn: LossFn = framework_loss) -> torch.Tensor:
        """Update alpha on a held-out batch; the model's weights and buffers are left as they were."""
        model = self.model
        v1, v2 = val_batch
        alphas = [h.alpha for h in self.heads.values()]
        with buffers_restored(model):
            with self.autocast():
                with torch.inference_mode():  # cheaper than no_grad; the clones below make them usable by autograd
                    features = tuple(model.backbone(v) for v in (v1, v2)[: model.online_views])
                features = tuple(f.clone() for f in features)
                arch_loss = loss_fn(model, v1, v2, features)
            grads = torch.autograd.grad(arch_loss + self.arch_penalty(), alphas)
        for alpha, grad in zip(alphas, grads, strict=True):
            alpha.grad = distributed.all_reduce_mean(grad)
        self.arch_optimizer.step()
        self.arch_optimizer.zero_grad(set_to_none=True)
        return arch_loss.detach()

    def autocast(self) -> torch.autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def arch_penalty(self) -> torch.Tensor | float:
        """A regulariser of alpha added to the architecture loss (β-DARTS' β-decay); none by default."""
        return 0.0

    def weight_step(
        self, train_batch: tuple[torch.Tensor, torch.Tensor], loss_fn: LossFn = framework_loss, alpha_too: bool = False
    ) -> torch.Tensor:
        """Update the weights on a training batch, then the framework's per-step work. ``alpha_too``: alpha learns
        from the same backward pass (single-level search); otherwise it is fixed."""
        model = self.model
        alphas = [h.alpha for h in self.heads.values()]
        for alpha in alphas:
            alpha.requires_grad_(alpha_too)
        t1, t2 = train_batch
        with self.autocast():
            loss = loss_fn(model, t1, t2)
        self.weight_optimizer.zero_grad(set_to_none=True)
        self.arch_optimizer.zero_grad(set_to_none=True)
        (loss + self.arch_penalty() if alpha_too else loss).backward()
        for alpha in alphas:
            alpha.requires_grad_(True)
        distributed.average_gradients(model)
        self.weight_optimizer.step()
        if alpha_too:
            self.arch_optimizer.step()
            self.arch_optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.steps += 1
        model.after_step(self.steps / self.total_steps)
        return loss.detach()

    def genotype(self) -> dict[str, list[str]]:
        return {name: head.derive() for name, head in self.heads.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "weight_optimizer": self.weight_optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "steps": self.steps,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.weight_optimizer.load_state_dict(state["weight_optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps = state["steps"]
        set_rng_state(state["rng"])

    def on_epoch(self, epoch: int, epochs: int) -> None:
        """Per-epoch schedule of the strategy (GDAS anneals its temperature)."""

    def alpha_weights(self) -> dict[str, list[list[float]]]:
        return {name: torch.softmax(h.alpha.detach(), dim=-1).tolist() for name, h in self.heads.items()}

    # -- the search, through the one training loop
    def run(self, ctx: SearchContext) -> SearchResult:
        model = ctx.build_supernet()
        epochs = ctx.search.epochs
        self.attach(model, ctx.search, len(ctx.train_loader) * epochs, ctx.search.batch_size, ctx.amp)
        self.init_alpha(ctx.search.alpha_init_std)
        self.perturb(ctx.search.alpha_perturbation, ctx.seed)
        progress = _SearchProgress(self, ctx)
        progress.restore()

        def step(epoch: int, i: int, batch) -> dict[str, Any]:
            wants_alpha = self.held_out and (self.arch_every_batch or i == 0)
            return self.step(batch[:2], progress.next_val_batch() if wants_alpha else None)

        epochs_left = range(progress.epoch, progress.epoch if progress.should_stop else epochs)
        search_epochs(ctx, epochs_left, step, [progress], f"search {self.name} epoch", self.name)
        return SearchResult(
            self.name,
            self.genotype(),
            progress.alpha(),
            seconds=progress.seconds,
            steps=self.steps,
            ended=progress.ended(),
        )

    def init_alpha(self, std: float | None) -> None:
        """Start alpha at ``std`` x N(0, 1) (0: zeros), rescaling the supernet's draw so that every other draw of
        the search stays the same; None keeps the supernet's ``ALPHA_INIT_STD``."""
        if std is None:
            return
        with torch.no_grad():
            for head in self.heads.values():
                head.alpha.mul_(std / ALPHA_INIT_STD)

    def perturb(self, scale: float | None, seed: int) -> None:
        """Add ``scale`` x N(0, 1) to alpha, from a generator of its own (the search's other draws stay as they
        are): the perturbation check's twin search."""
        if not scale:
            return
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for head in self.heads.values():
                head.alpha.add_(scale * torch.randn(head.alpha.shape, generator=generator))


class _SearchProgress(Callback):
    """A gradient search's epochs: the strategy's per-epoch schedule and the held-out batches, alpha's history,
    a check that alpha is finite, and the search state (through the checkpointer, under the search's identity)."""

    def __init__(self, strategy: GradientStrategy, ctx: SearchContext) -> None:
        self.strategy, self.ctx = strategy, ctx
        self.path = ctx.out_dir / SEARCH_STATE
        self.history: list[dict[str, list[list[float]]]] = [strategy.alpha_weights()]
        self.epoch, self.seconds, self.val_batches = 0, 0.0, None

    def restore(self) -> None:
        way_out = "use another --out, or remove it to search afresh"
        state = load_state(self.path, "search", self.ctx.identity, way_out)
        if state is not None:
            self.strategy.load_state_dict(state["strategy"])
            self.epoch, self.history, self.seconds = state["epoch"], state["history"], state["seconds"]
            self.should_stop = self._stable()

    def alpha(self) -> dict[str, dict[str, Any]]:
        """alpha's final softmax and its history per head, as a search result carries it."""
        ops = self.ctx.ops
        return {
            name: {"ops": ops, "final": self.history[-1][name], "history": [h[name] for h in self.history]}
            for name in self.strategy.heads
        }

    def _stable(self) -> bool:
        """The stopping rule (``search.stop_when_stable`` = K): the genotype unchanged for K epochs."""
        k = self.ctx.search.stop_when_stable
        return bool(k) and unchanged_for(self.alpha(), k)

    def ended(self) -> str:
        """What ended the search: the stopping rule when it stopped before its cap, else the cap."""
        k, cap = self.ctx.search.stop_when_stable, self.ctx.search.epochs
        if self.should_stop and self.epoch < cap:
            return f"stopping rule: genotype unchanged for {k} epochs, at epoch {self.epoch} of {cap}"
        return f"epoch cap: {self.epoch} epochs"

    def epoch_start(self, epoch: int) -> None:
        self.strategy.on_epoch(epoch, self.ctx.search.epochs)
        self.strategy.model.train()
        self.ctx.val_loader.set_epoch(epoch)
        # one iterator over the held-out half for the whole epoch (none for a single-level strategy)
        self.val_batches = iter(self.ctx.val_loader) if self.strategy.held_out else None

    def next_val_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            v1, v2, _ = next(self.val_batches)
        except StopIteration:
            self.val_batches = iter(self.ctx.val_loader)
            v1, v2, _ = next(self.val_batches)
        return v1, v2

    def epoch_end(self, epoch: Epoch) -> None:
        alphas = {name: head.alpha for name, head in self.strategy.heads.items()}
        broken = [name for name, alpha in alphas.items() if not torch.isfinite(alpha).all()]
        if broken:
            raise TrainingDiverged(
                f"search {self.strategy.name}: alpha of {', '.join(broken)} is not finite after epoch "
                f"{epoch.index + 1}; no genotype is written (lower search.arch_lr or search.lr, or set train.amp=false)"
            )
        self.seconds += epoch.device_seconds
        self.epoch = epoch.index + 1
        self.history.append(self.strategy.alpha_weights())
        self.should_stop = self._stable()
        if distributed.is_main_process():
            state = {"strategy": self.strategy.state_dict(), "epoch": self.epoch, "history": self.history}
            save_state(self.path, "search", self.ctx.identity, {**state, "seconds": self.seconds})
