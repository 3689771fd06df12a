"""``nasiam-bench search``: build the supernet heads of a framework, run the spec's strategy on the two halves of the
training images, and write the genotype (TOML, with alpha and its history) and a heatmap of alpha."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from nasiam_bench.config.spec import Spec, SpecError
from nasiam_bench.core import distributed
from nasiam_bench.core.io import atomic_write_json
from nasiam_bench.core.machine import machine
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.core.rng import seed_everything
from nasiam_bench.data.loaders import LoaderConfig, eval_loader, ssl_loader
from nasiam_bench.data.prepare import open_prepared
from nasiam_bench.data.splits import search_halves, train_indices
from nasiam_bench.eval.evaluate import spec_knn
from nasiam_bench.eval.features import Features, extract
from nasiam_bench.models.backbones import build_backbone
from nasiam_bench.models.build import build_model
from nasiam_bench.models.heads.genotype import Genotype
from nasiam_bench.models.heads.ops import search_space
from nasiam_bench.models.heads.supernet import SearchHead
from nasiam_bench.search.base import SearchContext, SearchResult, framework_loss
from nasiam_bench.search.decision import decision_summary
from nasiam_bench.search.heatmap import plot_alpha
from nasiam_bench.store.checkpoints import StateMismatch
from nasiam_bench.store.claims import exclusive
from nasiam_bench.store.identity import identity
from nasiam_bench.store.layout import GENOTYPE, SEARCH_CLAIM, SEARCH_SUMMARY, default_search_dir


def _placed(model: torch.nn.Module, device: torch.device, distributed_: bool) -> torch.nn.Module:
    model = model.to(device).to(memory_format=torch.channels_last)
    return distributed.convert_sync_batchnorm(model, device) if distributed_ else model


def supernet_builder(spec: Spec, device: torch.device, distributed_: bool = False):
    """A function that builds the spec's framework with supernet heads (every op of the search space per layer),
    on ``device``; the spec's ``framework`` options apply (the caller sets the search's encoder momentum)."""
    e, s = spec.experiment, spec.search
    framework = FRAMEWORKS.get(e.framework)
    ops = search_space(e.activations)

    def build():
        backbone = build_backbone(e.backbone, cifar_stem=e.cifar_stem, width=e.width)
        cells = framework.search_cells(int(backbone.num_features), s.layers(), spec.framework.given())
        heads = {name: SearchHead(ops, cell, s.paper_bn_eps_quirk) for name, cell in cells.items()}
        return _placed(framework(backbone, heads, spec.framework.given()), device, distributed_)

    return build


def run_search(
    spec: Spec, seed: int, out_dir: str | Path, *, device: str = "auto", progress: bool = True
) -> tuple[SearchResult, Path | None]:
    """Search the heads; returns the result and the genotype file (None for the ``none`` strategy).

    A finished search of the same identity (spec, seed, dataset) in ``out_dir`` is returned as it is; an
    interrupted one resumes from its last saved state; a state or summary of another identity is refused.
    """
    out_dir, e = Path(out_dir), spec.experiment
    search_identity = identity("search_state", spec, seed)
    cached = _finished(out_dir, search_identity)
    if cached is not None:
        return cached
    strategy = SEARCH_STRATEGIES.get(e.strategy)()
    ctx_dist = distributed.setup(device)
    out_dir.mkdir(parents=True, exist_ok=True)
    claimed = exclusive(out_dir / SEARCH_CLAIM, f"the search in {out_dir}")
    with claimed if ctx_dist.is_main else contextlib.nullcontext():
        cached = _finished(out_dir, search_identity)  # finished by the claim's last holder while this one looked
        if cached is not None:
            return cached
        seed_everything(seed)
        result = strategy.run(search_context(spec, seed, out_dir, ctx_dist, search_identity, progress))
        return _written(result, spec, seed, out_dir, search_identity, ctx_dist)


def _written(result: SearchResult, spec: Spec, seed: int, out_dir: Path, search_identity: str, ctx_dist):
    """Write a finished search's genotype, α heatmap and summary (the main process)."""
    e = spec.experiment
    if not ctx_dist.is_main:
        return result, None
    written, result.decision = None, decision_summary(result.alpha)
    if result.genotype is not None:
        source = f"searched by nasiam-bench: {e.strategy}, seed {seed}, search {search_identity} ({e.profile} profile)"
        Genotype(e.framework, result.genotype, e.dataset, e.backbone, source, result.alpha).save(out_dir / GENOTYPE)
        written = out_dir / GENOTYPE
        if result.alpha:
            plot_alpha(result.alpha, out_dir / "alpha.png", title=f"{e.framework} {e.strategy} search, seed {seed}")
    summary = {
        "identity": search_identity,
        "seed": seed,
        "strategy": result.strategy,
        "genotype": result.genotype,
        "scores": result.scores,
        "seconds": result.seconds,
        "steps": result.steps,
        "ended": result.ended,
        "decision": result.decision,
        "alpha": {head: {"ops": a["ops"], "final": a["final"]} for head, a in result.alpha.items()},
        "device": distributed.device_name(ctx_dist.device),
        "machine": machine(ctx_dist.device),
        "world_size": ctx_dist.world_size,
    }
    atomic_write_json(out_dir / SEARCH_SUMMARY, summary)
    return result, written


def finished_search(spec: Spec, seed: int, runs: str | Path = "runs") -> tuple[SearchResult, Path | None] | None:
    """The finished search of ``spec`` and ``seed`` in its default folder under ``runs``; None when it is not."""
    return _finished(default_search_dir(spec, seed, runs), identity("search_state", spec, seed))


def _finished(out_dir: Path, search_identity: str) -> tuple[SearchResult, Path | None] | None:
    """The result of the finished search of ``search_identity`` in ``out_dir``; None when it has none; an error
    when the folder holds another search's result."""
    path = out_dir / SEARCH_SUMMARY
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    if summary.get("identity") != search_identity:
        raise StateMismatch(
            f"{path} is the result of search {summary.get('identity', '(none: an older version)')}, not "
            f"{search_identity}: use another --out, or remove the folder to search afresh"
        )
    result = SearchResult(
        summary["strategy"], summary["genotype"], scores=summary["scores"], seconds=summary["seconds"],
        steps=summary["steps"], ended=summary["ended"], decision=summary["decision"], alpha=summary.get("alpha", {}),
    )  # fmt: skip
    return result, out_dir / GENOTYPE if summary["genotype"] is not None else None


def search_context(spec: Spec, seed: int, out_dir: Path, ctx_dist, search_identity: str, progress: bool):
    """What the strategy may use: the two halves' loaders, builders of the models, the kNN score."""
    e, s = spec.experiment, spec.search
    data = open_prepared(e.dataset, spec.data.root or None)
    labels = data.labels(data.train_split)
    weights_half, arch_half = search_halves(labels, train_indices(data, spec.data.train_subset, seed), seed)
    if s.batch_size % ctx_dist.world_size:
        raise SpecError(f"search.batch_size = {s.batch_size} does not split over {ctx_dist.world_size} processes")
    config = LoaderConfig.from_spec(
        spec, seed, s.batch_size // ctx_dist.world_size, ctx_dist.device, ctx_dist.distributed
    )
    if len(weights_half) < config.batch_size:
        raise SpecError(f"search.batch_size = {s.batch_size} exceeds the {len(weights_half)} images of a search half")
    # The key/target encoder may follow the online one at another momentum during the search (NASiam's MoCo code).
    model_spec = spec if s.encoder_momentum is None else spec.replace(**{"framework.momentum": s.encoder_momentum})
    amp = spec.train.amp and ctx_dist.device.type == "cuda"  # bf16 autocast, as pre-training
    return SearchContext(
        search=s,
        seed=seed,
        ops=search_space(e.activations),
        build_supernet=supernet_builder(model_spec, ctx_dist.device, ctx_dist.distributed),
        build_model=lambda genotype: _placed(build_model(model_spec, genotype), ctx_dist.device, ctx_dist.distributed),
        train_loader=ssl_loader(data, data.train_split, config, weights_half),
        val_loader=(val_loader := ssl_loader(data, data.train_split, config, arch_half)),
        knn_score=_knn_scorer(spec, seed, data, weights_half, arch_half, ctx_dist.device),
        held_out_loss=_held_out_loss(val_loader, amp),
        heads={h: c.layers for h, c in FRAMEWORKS.get(e.framework).search_cells(8, s.layers()).items()},
        out_dir=out_dir,
        progress=progress and ctx_dist.is_main,
        amp=amp,
        identity=search_identity,
        device=ctx_dist.device,
    )


def _held_out_loss(val_loader, amp: bool):
    """The framework's mean loss over one pass of the held-out half (epoch 0's views, so every candidate is scored
    on the same batches), without gradients: the label-free score of random search."""

    @torch.no_grad()
    def held_out_loss(model) -> float:
        val_loader.set_epoch(0)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            losses = [framework_loss(model, v1, v2).float() for v1, v2, _ in val_loader]
        return distributed.all_reduce_mean(torch.stack(losses).mean()).item()

    return held_out_loss


def _knn_scorer(spec: Spec, seed: int, data, weights_half, arch_half, device):
    """kNN top-1 of the held-out half against the training half; its loaders are built on first use (only the
    random strategy scores by kNN)."""
    eval_config = LoaderConfig.from_spec(spec, seed, spec.eval.linear_batch_size, device)
    loaders: dict[str, object] = {}

    def knn_score(backbone) -> float:
        if not loaders:
            loaders["bank"] = eval_loader(data, data.train_split, eval_config, weights_half)
            loaders["queries"] = eval_loader(data, data.train_split, eval_config, arch_half)
        bank, bank_labels = extract(backbone, loaders["bank"], "bank features")
        queries, query_labels = extract(backbone, loaders["queries"], "held-out features")
        return spec_knn(Features(bank, bank_labels, queries, query_labels, len(data.classes)), spec.eval)

    return knn_score
