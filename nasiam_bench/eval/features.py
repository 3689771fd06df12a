"""Features of a frozen encoder over the kNN bank (the run's training images) and the queries (the evaluation split)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nasiam_bench.core.progress import progress
from nasiam_bench.data.datasets import DataError
from nasiam_bench.data.loaders import EvalLoader, LoaderConfig, eval_loader
from nasiam_bench.data.prepare import PreparedDataset
from nasiam_bench.data.splits import stratified_subset


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
    for images, y in progress(loader, desc, unit="batch", end=False):
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
        self.mean, self.std = data.info.mean, data.info.std
        test_indices = None
        if test_subset:
            test_indices = stratified_subset(data.labels(data.eval_split), test_subset, seed)
        self.bank = eval_loader(data, data.train_split, config, bank_indices)
        self.queries = eval_loader(data, data.eval_split, config, test_indices)

    def features(self, backbone: nn.Module) -> Features:
        train, train_labels = extract(backbone, self.bank, "bank features")
        test, test_labels = extract(backbone, self.queries, "test features")
        return Features(train, train_labels, test, test_labels, self.num_classes)
