"""The label-free measures a head's record keeps, each seconds to compute: at initialisation (before any training,
from the run's seed) the zero-cost proxies synflow, grad_norm and NASWOT; after training, RankMe of the backbone's
features and of the projector's outputs, and the framework's SSL loss on held-out (test) images.

Every run is measured on the same images: ``HELD_OUT`` test images (class-stratified with a fixed seed), their two
views drawn with a fixed seed, so that across heads and seeds only the model differs. The proxies read the first
batch of those views; RankMe and the held-out loss all of them."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from nasiam_bench.config.spec import Spec
from nasiam_bench.core.registry import ACTIVATIONS
from nasiam_bench.core.rng import seed_everything
from nasiam_bench.data.loaders import LoaderConfig, eval_loader, ssl_loader
from nasiam_bench.data.prepare import open_prepared
from nasiam_bench.data.splits import stratified_subset
from nasiam_bench.eval.measures.grad_norm import grad_norm
from nasiam_bench.eval.measures.naswot import naswot
from nasiam_bench.eval.measures.rankme import rankme
from nasiam_bench.eval.measures.synflow import synflow
from nasiam_bench.models.activations import build_activation
from nasiam_bench.models.build import build_model
from nasiam_bench.models.frameworks.base import Framework

HELD_OUT = 4096  # test images (fewer where eval.test_subset is): above RankMe's 2,048 and every head's width
VIEWS_SEED = 0  # the held-out subset and its views: the same for every run


def online_path(model: Framework) -> nn.Module:
    """The network a proxy scores: the backbone, then the heads (projector, then predictor where there is one)."""
    return nn.Sequential(model.backbone, *model.heads.values())


def activation_types() -> tuple[type[nn.Module], ...]:
    """The module types of every registered activation, and ReLU (timm's backbones use it)."""
    return tuple({nn.ReLU, *(type(build_activation(name)) for name in ACTIVATIONS.list())})


def _held_out(spec: Spec, device: torch.device):
    data = open_prepared(spec.experiment.dataset, spec.data.root or None)
    size = min(HELD_OUT, spec.eval.test_subset or HELD_OUT)  # a smoke profile's few test images: as many here
    indices = stratified_subset(data.labels(data.eval_split), size, VIEWS_SEED)
    config = LoaderConfig.from_spec(spec, VIEWS_SEED, spec.train.batch_size, device)
    views = ssl_loader(data, data.eval_split, config, indices)
    views.set_epoch(0)
    plain = eval_loader(data, data.eval_split, LoaderConfig.from_spec(spec, VIEWS_SEED, 256, device), indices)
    return views, plain


def at_init(spec: Spec, seed: int, genotype: dict[str, list[str]] | None, device: torch.device) -> dict[str, float]:
    """The zero-cost proxies of the run's model as its training starts (seeded alike), on one held-out batch."""
    views, _ = _held_out(spec, device)
    view1, view2, _ = next(iter(views))
    seed_everything(seed)
    model = build_model(spec, genotype).to(device).train()
    path = online_path(model)
    return {
        "init_synflow": synflow(path, tuple(view1.shape[1:])),
        "init_grad_norm": grad_norm(model, lambda m: m(view1, view2)["loss"]),
        "init_naswot": naswot(path, view1, activation_types()),
    }


@torch.no_grad()
def after_training(model: Framework, spec: Spec, device: torch.device) -> dict[str, Any]:
    """RankMe of the backbone's features and of the projector's outputs, and the mean SSL loss over the held-out
    views (the model in evaluation mode; a copy, as MoCo's loss enqueues)."""
    views, plain = _held_out(spec, device)
    model = copy.deepcopy(model).to(device).eval()
    features, projected = [], []
    for images, _ in plain:
        f = model.backbone(images.contiguous(memory_format=torch.channels_last))
        features.append(f.float().cpu())
        projected.append(model.heads["projector"](f).float().cpu())
    losses = [model(v1, v2)["loss"].float() for v1, v2, _ in views]
    features = torch.cat(features)
    return {
        "rankme_backbone": rankme(features),
        "rankme_projector": rankme(torch.cat(projected)),
        "held_out_ssl_loss": torch.stack(losses).mean().item(),
        "label_free_images": len(features),
    }


MEASURES = ("init_synflow", "init_grad_norm", "init_naswot", "rankme_backbone", "rankme_projector", "held_out_ssl_loss")
