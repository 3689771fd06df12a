"""Measure a representation: kNN, a linear probe, and collapse metrics, with the spec's evaluation protocol.

kNN (Wu et al., 2018, as in SimSiam's and solo-learn's monitors): cosine similarity of L2-normalised features (the
backbone's by default, the projector's as NASiam's code), the k = 200 nearest training images vote with weight
exp(sim / 0.1) (or one vote each). The linear probe (``probe.py``) trains on frozen, precomputed features of
centre-cropped images by default (cheap enough to run for every head; it reads a few points below a probe trained
with augmentation), or on crop-and-flip images through the frozen backbone, NASiam's code's protocol.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasiam_bench.config.spec import EvalSection
from nasiam_bench.core.distributed import setup
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.core.rng import seed_everything
from nasiam_bench.data.loaders import EvalLoader, LoaderConfig
from nasiam_bench.data.prepare import open_prepared
from nasiam_bench.data.splits import train_indices
from nasiam_bench.eval.features import EvalData, Features
from nasiam_bench.eval.probe import augmented_probe, linear_probe, probe_augmentation
from nasiam_bench.models.build import build_model
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.store.checkpoints import BEST_CHECKPOINT, load_checkpoint, load_state, model_from_checkpoint


@torch.no_grad()
def knn_top1(
    f: Features, k: int = 200, temperature: float = 0.1, weighted: bool | str = True, chunk: int = 1024
) -> float:
    """kNN top-1 accuracy (%) of the test features against the training bank; the k nearest vote with weight
    exp(sim / temperature), their cosine similarity when ``weighted`` is ``"cosine"``, or one vote each when not
    ``weighted``."""
    bank = F.normalize(f.train, dim=1)
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(f.test), chunk):
        query = F.normalize(f.test[start : start + chunk], dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)
        weights = _vote_weights(sims, temperature, weighted)
        votes = torch.zeros(len(query), f.num_classes).scatter_add_(1, f.train_labels[idx], weights)
        correct += (votes.argmax(dim=1) == f.test_labels[start : start + chunk]).sum().item()
    return 100.0 * correct / len(f.test)


def _vote_weights(sims: torch.Tensor, temperature: float, weighted: bool | str) -> torch.Tensor:
    if weighted == "cosine":
        return sims
    return (sims / temperature).exp() if weighted else torch.ones_like(sims)


@torch.no_grad()
def collapse_metrics(embeddings: torch.Tensor) -> dict[str, float]:
    """How far a batch of embeddings is from collapse.

    ``std_ratio``: the per-dimension std of the L2-normalised embeddings times sqrt(d); about 1 for a spread
    representation, 0 for a collapsed one (SimSiam's Fig. 2). ``effective_rank``: exp of the entropy of the
    normalised singular values (Roy & Vetterli, 2007); 1 for a collapse to a line, up to min(n, d).
    """
    z = F.normalize(embeddings.float(), dim=1)
    std_ratio = z.std(dim=0).mean().item() * math.sqrt(z.shape[1])
    singular = torch.linalg.svdvals(z - z.mean(dim=0))
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum().item()
    return {"std_ratio": std_ratio, "effective_rank": math.exp(entropy)}


def knn_encoder(model: Framework, features: str) -> nn.Module:
    """What kNN compares: the backbone's features, or the projector's outputs (NASiam's code)."""
    return model.backbone if features == "backbone" else nn.Sequential(model.backbone, model.heads["projector"])


def spec_knn(f: Features, e: EvalSection) -> float:
    """kNN top-1 with the spec's protocol."""
    return knn_top1(f, e.knn_k, e.knn_temperature, e.knn_weighted)


def evaluate(model: Framework, eval_data: EvalData, e: EvalSection, seed: int) -> dict[str, Any]:
    """kNN top-1 (the spec's protocol) and linear top-1/top-5 of a trained model (linear skipped at 0 epochs)."""
    features = eval_data.features(knn_encoder(model, e.knn_features))
    result: dict[str, Any] = {"knn_top1": spec_knn(features, e)}
    if e.linear_epochs == 0:
        return result
    if e.linear_protocol == "frozen":
        frozen = features if e.knn_features == "backbone" else eval_data.features(model.backbone)
        top1, top5 = linear_probe(frozen, e, seed)
        result.update(linear_top1=top1, linear_top5=top5, linear_protocol="frozen features, final epoch")
    else:
        top1, top5, epoch = augmented_probe(model.backbone, eval_data, e, seed)
        protocol = f"{probe_augmentation(e)}, best test epoch ({epoch} of {e.linear_epochs}): selected on test"
        result.update(linear_top1=top1, linear_top5=top5, linear_protocol=protocol)
    return result


@torch.no_grad()
def projector_collapse(project: nn.Module, loader: EvalLoader, limit: int = 4096) -> dict[str, float]:
    """Collapse metrics of the projector's output over (up to ``limit``) evaluation images."""
    outputs, seen = [], 0
    for images, _ in loader:
        outputs.append(project(images.contiguous(memory_format=torch.channels_last)).float().cpu())
        seen += len(images)
        if seen >= limit:
            break
    return collapse_metrics(torch.cat(outputs)[:limit])


def eval_data_for(spec, seed: int, device, monitor: bool = False) -> EvalData:
    """The bank (the run's training images) and query loaders of a spec's evaluation, or of its per-epoch monitor
    (``monitor``: the ``monitor_subset`` queries, fewer where the monitor's cost matters)."""
    data = open_prepared(spec.experiment.dataset, spec.data.root or None)
    config = LoaderConfig.from_spec(spec, seed, spec.eval.linear_batch_size, device)
    queries = spec.eval.monitor_subset if monitor and spec.eval.monitor_subset else spec.eval.test_subset
    return EvalData(data, train_indices(data, spec.data.train_subset, seed), config, queries, seed)


def untrained_knn(spec, seed: int, eval_data: EvalData, device) -> float:
    """The floor: kNN top-1 of the spec's model freshly initialised with ``seed``, as every run starts."""
    seed_everything(seed)
    model = build_model(spec).to(device).eval()
    return spec_knn(eval_data.features(knn_encoder(model, spec.eval.knn_features)), spec.eval)


def evaluate_checkpoint(checkpoint: str, device: str = "auto", floor: bool = False) -> dict[str, Any]:
    """kNN, linear probe and collapse metrics of a trained checkpoint (and of its untrained twin with ``floor``).

    With ``eval.checkpoint = "best-on-test"`` the weights are those of the epoch whose test kNN was the best
    (``best.pt`` beside the checkpoint), and the result says so.
    """
    state = load_checkpoint(checkpoint)
    spec, model = model_from_checkpoint(state)
    selection = {"checkpoint_selection": "final", "selected_epoch": state["epoch"]}
    if spec.eval.checkpoint == "best-on-test":
        path = Path(checkpoint).with_name(BEST_CHECKPOINT)
        best = load_state(path, "best", state["identity"], "pre-train the run again (its best epoch is not this run's)")
        if best is None:
            raise NasiamBenchError(f"{path}: not found; eval.checkpoint = 'best-on-test' needs the run's best epoch")
        model.load_state_dict(best["model"])
        selection = {"checkpoint_selection": "best-on-test", "selected_epoch": best["epoch"]}
    ctx = setup(device)
    model = model.to(ctx.device).eval()
    seed = state["seed"]
    eval_data = eval_data_for(spec, seed, ctx.device)
    result = {
        "epochs": state["epoch"],
        **selection,
        **evaluate(model, eval_data, spec.eval, seed),
        **projector_collapse(model.project, eval_data.queries),
    }
    if floor:
        result["untrained_knn_top1"] = untrained_knn(spec, seed, eval_data, ctx.device)
    return result
