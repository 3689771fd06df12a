"""Backbones: timm's ResNet family, headless, with an optional CIFAR stem and a width multiplier.

Every model of timm's ``resnet`` module (resnet18/34/50/101/152, their c/d/s/t variants, resnext, wide_resnet,
seresnet, ...) is registered under timm's own name. The built model is timm's, with ``num_classes=0``: its forward
returns pooled features of size ``model.num_features``.
"""

from __future__ import annotations

from functools import partial

import timm
import torch
from timm.models.resnet import ResNet
from torch import nn

from nasiam_bench.core.registry import BACKBONES, NasiamBenchError


def build_backbone(name: str, *, cifar_stem: bool = False, width: float = 1.0) -> nn.Module:
    """A headless backbone by registered name; ``model.num_features`` is its feature dimension."""
    if not width > 0:
        raise NasiamBenchError(f"backbone width must be > 0, got {width!r}")
    return BACKBONES.get(name)(cifar_stem=cifar_stem, width=width)


def feature_dim(backbone: nn.Module) -> int:
    """Size of the pooled feature vector a backbone returns."""
    return int(backbone.num_features)


def timm_resnet(model_name: str, *, cifar_stem: bool = False, width: float = 1.0) -> nn.Module:
    """Build timm's ``model_name`` without a classifier, optionally narrowed and with a stride-1 3x3 stem."""
    kwargs: dict = {}
    if width != 1.0:
        with torch.device("meta"):  # read the default widths without allocating weights
            reference = timm.create_model(model_name, pretrained=False, num_classes=0)
        stages = (reference.layer1, reference.layer2, reference.layer3, reference.layer4)
        kwargs["channels"] = tuple(_scaled(_block_width(stage[0]), width) for stage in stages)
        # timm honours stem_width only in deep stems; a plain 7x7 stem stays 64 wide, so the first block of a
        # narrowed plain-stem ResNet carries a 1x1 projection (0.5% of a half-width ResNet-18's weights).
        kwargs["stem_width"] = _scaled(_stem_width(reference), width)
    model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
    if not isinstance(model, ResNet):
        raise NasiamBenchError(f"backbone {model_name!r} is not a timm ResNet; cifar_stem and width need one")
    if cifar_stem:
        # CIFAR stem (SimCLR/solo-learn): 3x3 conv, stride 1, no max-pool, so 32x32 inputs keep their resolution.
        stem_out = model.bn1.num_features
        model.conv1 = nn.Conv2d(3, stem_out, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _block_width(block: nn.Module) -> int:
    # timm's `channels` argument is the block's planes; a bottleneck expands them by 4 at its output.
    return block.conv3.out_channels // block.expansion if hasattr(block, "conv3") else block.conv2.out_channels


def _stem_width(model: ResNet) -> int:
    first = model.conv1[0] if isinstance(model.conv1, nn.Sequential) else model.conv1
    return first.out_channels


for _name in timm.list_models(module="resnet"):
    BACKBONES.add(_name, partial(timm_resnet, _name))
