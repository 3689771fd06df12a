"""Measure a representation: weighted kNN, a linear probe on frozen features, and collapse metrics.

kNN (Wu et al., 2018, as in SimSiam's and solo-learn's monitors): cosine similarity of L2-normalised backbone
features, the k = 200 nearest training images vote with weight exp(sim / 0.1). The linear probe trains a linear
classifier on frozen, precomputed features of centre-cropped images (no augmentation: cheap enough to run for every
head; it reads a few points below a probe trained with augmentation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from nasiam_bench.checkpoints import load_checkpoint, model_from_checkpoint
from nasiam_bench.data.datasets import DataError
from nasiam_bench.data.loaders import EvalLoader, LoaderConfig, eval_loader
from nasiam_bench.data.prepare import PreparedDataset, open_prepared
from nasiam_bench.data.splits import stratified_subset, train_indices
from nasiam_bench.distributed import setup
from nasiam_bench.models import build_model
from nasiam_bench.rng import seed_everything


@dataclass(frozen=True)
class Features:
    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int


@torch.no_grad()
def extract(backbone: nn.Module, loader: EvalLoader, desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features [N, d] (float32, on the CPU) and labels of every image of ``loader``, in order."""
    was_training = backbone.training
    backbone.eval()
    feats, labels = [], []
    for images, y in tqdm(loader, desc=desc, leave=False, unit="batch"):
        feats.append(backbone(images.contiguous(memory_format=torch.channels_last)).float().cpu())
        labels.append(y.cpu())
    backbone.train(was_training)
    return torch.cat(feats), torch.cat(labels)


class EvalData:
    """The bank (training images) and query (evaluation split) loaders, built once and reused by every monitor."""

    def __init__(
        self,
        data: PreparedDataset,
        bank_indices: np.ndarray | None,
        config: LoaderConfig,
        test_subset: int = 0,
        seed: int = 0,
    ) -> None:
        if data.eval_split == data.train_split:
            raise DataError(
                f"{data.folder}: its evaluation split is its training split, so kNN would query a bank that holds "
                f"the query; prepare it again (a held-out split is made when the source has no test split)"
            )
        self.num_classes = len(data.classes)
        test_indices = None
        if test_subset:
            test_indices = stratified_subset(data.labels(data.eval_split), test_subset, seed)
        self.bank = eval_loader(data, data.train_split, config, bank_indices)
        self.queries = eval_loader(data, data.eval_split, config, test_indices)

    def features(self, backbone: nn.Module) -> Features:
        train, train_labels = extract(backbone, self.bank, "bank features")
        test, test_labels = extract(backbone, self.queries, "test features")
        return Features(train, train_labels, test, test_labels, self.num_classes)


@torch.no_grad()
def knn_top1(f: Features, k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
    """Weighted kNN top-1 accuracy (%) of the test features against the training bank."""
    bank = F.normalize(f.train, dim=1)
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(f.test), chunk):
        query = F.normalize(f.test[start : start + chunk], dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(query), f.num_classes).scatter_add_(1, f.train_labels[idx], weights)
        correct += (votes.argmax(dim=1) == f.test_labels[start : start + chunk]).sum().item()
    return 100.0 * correct / len(f.test)


def linear_probe(f: Features, epochs: int, lr: float, batch_size: int, seed: int) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (%) of a linear classifier trained on frozen, standardised features."""
    mean, std = f.train.mean(dim=0), f.train.std(dim=0).clamp_min(1e-6)
    train, test = (f.train - mean) / std, (f.test - mean) / std
    generator = torch.Generator().manual_seed(seed)
    classifier = nn.Linear(train.shape[1], f.num_classes)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        classifier.reset_parameters()
    steps = max(1, epochs * math.ceil(len(train) / batch_size))
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(classifier(train[batch]), f.train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        logits = classifier(test)
    top5 = logits.topk(min(5, f.num_classes), dim=1).indices
    top1_acc = (top5[:, 0] == f.test_labels).float().mean().item() * 100
    top5_acc = (top5 == f.test_labels[:, None]).any(dim=1).float().mean().item() * 100
    return top1_acc, top5_acc


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


def evaluate(
    backbone: nn.Module,
    eval_data: EvalData,
    *,
    k: int,
    temperature: float,
    linear_epochs: int,
    linear_lr: float,
    linear_batch_size: int,
    seed: int,
) -> dict[str, float]:
    """kNN top-1 and linear top-1/top-5 of ``backbone`` (linear skipped when ``linear_epochs`` is 0)."""
    features = eval_data.features(backbone)
    result = {"knn_top1": knn_top1(features, k, temperature)}
    if linear_epochs > 0:
        top1, top5 = linear_probe(features, linear_epochs, linear_lr, linear_batch_size, seed)
        result.update(linear_top1=top1, linear_top5=top5)
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


def eval_data_for(spec, seed: int, device) -> EvalData:
    """The bank (the run's training images) and query loaders of a spec's evaluation."""
    data = open_prepared(spec.experiment.dataset, spec.data.root or None)
    config = LoaderConfig.from_spec(spec, seed, spec.eval.linear_batch_size, device)
    return EvalData(data, train_indices(data, spec.data.train_subset, seed), config, spec.eval.test_subset, seed)


def untrained_knn(spec, seed: int, eval_data: EvalData, device) -> float:
    """The floor: kNN top-1 of the spec's backbone freshly initialised with ``seed``, as every run starts."""
    seed_everything(seed)
    backbone = build_model(spec).backbone.to(device).eval()
    return knn_top1(eval_data.features(backbone), spec.eval.knn_k, spec.eval.knn_temperature)


def evaluate_checkpoint(checkpoint: str, device: str = "auto", floor: bool = False) -> dict[str, float]:
    """kNN, linear probe and collapse metrics of a trained checkpoint (and of its untrained twin with ``floor``)."""
    state = load_checkpoint(checkpoint)
    spec, model = model_from_checkpoint(state)
    ctx = setup(device)
    model = model.to(ctx.device).eval()
    seed = state["seed"]
    eval_data = eval_data_for(spec, seed, ctx.device)
    e = spec.eval
    settings = dict(
        k=e.knn_k,
        temperature=e.knn_temperature,
        linear_epochs=e.linear_epochs,
        linear_lr=e.linear_lr,
        linear_batch_size=e.linear_batch_size,
        seed=seed,
    )
    result = {
        "epochs": state["epoch"],
        **evaluate(model.backbone, eval_data, **settings),
        **projector_collapse(model.project, eval_data.queries),
    }
    if floor:
        result["untrained_knn_top1"] = untrained_knn(spec, seed, eval_data, ctx.device)
    return result
