"""Linear probes of a frozen backbone: on precomputed features (the default), or on crop-and-flip images each epoch
with the best test epoch reported (NASiam's code's protocol, after SimSiam's and MoCo's ``main_lincls.py``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasiam_bench.config.spec import EvalSection
from nasiam_bench.core.optim import build_optimizer, scaled_lr
from nasiam_bench.core.progress import progress
from nasiam_bench.core.schedule import lr_schedule
from nasiam_bench.data.augment import random_resized_crop, recolour
from nasiam_bench.eval.features import EvalData, Features, extract


def _classifier(dim: int, classes: int, seed: int) -> nn.Linear:
    classifier = nn.Linear(dim, classes)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier.reset_parameters()
    return classifier


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    return (top5[:, 0] == labels).float().mean().item() * 100, (top5 == labels[:, None]).any(
        dim=1
    ).float().mean().item() * 100


def _optimizer(classifier: nn.Linear, e: EvalSection, steps_per_epoch: int, lr: float):
    """The probe's optimiser and its per-step schedule: a cosine, constant, or x 0.1 at each milestone epoch."""
    optimizer = build_optimizer(e.linear_optimizer, classifier.parameters(), lr, e.linear_weight_decay)
    milestones = tuple(round(m * e.linear_epochs) * steps_per_epoch for m in e.linear_milestones or ())
    per = steps_per_epoch if e.linear_lr_steps == "epoch" else 0
    total = max(1, e.linear_epochs * steps_per_epoch)
    kind = e.linear_schedule or "cosine"
    return optimizer, lr_schedule(optimizer, total, kind=kind, milestones=milestones, steps_per_epoch=per)


def linear_probe(f: Features, e: EvalSection, seed: int) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) of a linear classifier trained on frozen, standardised features."""
    mean, std = f.train.mean(dim=0), f.train.std(dim=0).clamp_min(1e-6)
    train, test = (f.train - mean) / std, (f.test - mean) / std
    generator = torch.Generator().manual_seed(seed)
    classifier = _classifier(train.shape[1], f.num_classes, seed)
    optimizer, schedule = _optimizer(classifier, e, math.ceil(len(train) / e.linear_batch_size), e.linear_lr)
    for _ in range(e.linear_epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), e.linear_batch_size):
            batch = order[start : start + e.linear_batch_size]
            loss = F.cross_entropy(classifier(train[batch]), f.train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        return _accuracy(classifier(test), f.test_labels)


def crop_and_flip(x: torch.Tensor, pad: int, fill: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding=pad) (black padding) and RandomHorizontalFlip, batched, on
    normalised images (``fill``: black, normalised, per channel)."""
    n, c, h, w = x.shape
    padded = F.pad(x - fill, (pad, pad, pad, pad)) + fill
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=g) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    return random_flip(out, g)


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """torchvision's RandomHorizontalFlip (p 0.5), batched: each image mirrored or kept, drawn from ``g``."""
    flip = (torch.rand(len(x), generator=g) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


JITTER = (0.4, 0.4, 0.4, 0.1)  # SimCLR/utils.py, CIFAR_train_transform: ColorJitter(0.4, 0.4, 0.4, 0.1), p 0.8


def probe_augmentation(e: EvalSection) -> str:
    """How the augmented probe augments, as its records say."""
    if e.linear_crop_scale is None:
        crop = "crop and flip"
    else:
        low, high = e.linear_crop_scale
        crop = f"resized crop ({low:.0%}-{high:.0%}) and flip"
    return crop + (", colour jitter and grayscale" if e.linear_color_jitter else "")


def _view(x: torch.Tensor, e: EvalSection, mean: torch.Tensor, std: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A training view of normalised images for the augmented probe: a pad-4 crop (a pad of 1/8 of the side) and
    flip, or RandomResizedCrop over ``linear_crop_scale`` (ratio 3/4-4/3, the two-view recipe's batched crop) and
    flip; then, with ``linear_color_jitter``, the two-view recipe's colour jitter and grayscale."""
    n = len(x)
    if e.linear_crop_scale is None:
        out = crop_and_flip(x, max(1, x.shape[-1] // 8), -mean / std, g)
    else:
        out = random_flip(random_resized_crop(x, x.shape[-1], e.linear_crop_scale, (3 / 4, 4 / 3), g), g)
    if not e.linear_color_jitter:
        return out
    pixels = (out * std + mean).clamp_(0.0, 1.0)  # jitter works on [0, 1] images
    jitter, u, gray = torch.rand(n, generator=g) < 0.8, torch.rand(n, 4, generator=g), torch.rand(n, generator=g) < 0.2
    return (recolour(pixels, jitter, u, gray, JITTER) - mean) / std


@torch.no_grad()
def _images(eval_data: EvalData) -> tuple[torch.Tensor, torch.Tensor]:
    """Every bank image (normalised, half precision, on the CPU: 6 KiB an image at 32 px) and its label."""
    images, labels = zip(*((x.half().cpu(), y.cpu()) for x, y in eval_data.bank), strict=True)
    return torch.cat(images), torch.cat(labels)


def augmented_probe(backbone: nn.Module, eval_data: EvalData, e: EvalSection, seed: int) -> tuple[float, float, int]:
    """A linear classifier on the frozen backbone (eval mode) over augmented training images (``_view``), SGD
    with lr ``linear_lr`` x batch/256 (Adam: as it is), a cosine schedule or steps at ``linear_milestones``;
    returns the top-1 and top-5 (%) of its best test epoch, and that epoch: a figure selected on the test split,
    and labelled so."""
    backbone.eval()
    device = next(backbone.parameters()).device
    test, test_labels = extract(backbone, eval_data.queries, "test features")
    images, labels = _images(eval_data)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (eval_data.mean, eval_data.std))
    classifier = _classifier(test.shape[1], eval_data.num_classes, seed).to(device)
    batch = e.linear_batch_size
    lr = scaled_lr(e.linear_lr, "linear" if e.linear_optimizer == "sgd" else "none", batch)
    optimizer, schedule = _optimizer(classifier, e, math.ceil(len(images) / batch), lr)
    g = torch.Generator().manual_seed(seed)
    best = (-1.0, 0.0, 0)
    for epoch in progress(range(1, e.linear_epochs + 1), "linear probe", unit="epoch", end=False):
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(images), batch):
            chosen = order[start : start + batch]
            x = _view(images[chosen].float(), e, mean, std, g).to(device, memory_format=torch.channels_last)
            with torch.no_grad():
                features = backbone(x).float()
            loss = F.cross_entropy(classifier(features), labels[chosen].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        with torch.no_grad():
            top1, top5 = _accuracy(classifier(test.to(device)).cpu(), test_labels)
        if top1 > best[0]:
            best = (top1, top5, epoch)
    return best
