import pytest
import torch

from nasiam_bench.core.registry import BACKBONES, UnknownEntryError
from nasiam_bench.models.backbones import build_backbone, feature_dim


def _stem(model, x):
    return model.maxpool(model.act1(model.bn1(model.conv1(x))))


@pytest.mark.parametrize(("name", "dim"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_cifar_stem_keeps_resolution_and_reports_feature_dim(name, dim):
    model = build_backbone(name, cifar_stem=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert _stem(model, x).shape[-2:] == (32, 32)  # no downsampling in the stem
        assert model.forward_features(x).shape[-2:] == (4, 4)  # only the three strided stages: 32 / 8
        out = model(x)
    assert feature_dim(model) == dim and out.shape == (2, dim)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)


def test_imagenet_stem_downsamples_by_four():
    model = build_backbone("resnet18").eval()
    with torch.no_grad():
        assert _stem(model, torch.randn(1, 3, 64, 64)).shape[-2:] == (16, 16)


def test_width_multiplier_scales_channels():
    half = build_backbone("resnet18", cifar_stem=True, width=0.5)
    full = build_backbone("resnet18", cifar_stem=True)
    assert feature_dim(half) == 256 and half.layer1[0].conv1.out_channels == 32
    n_half = sum(p.numel() for p in half.parameters())
    n_full = sum(p.numel() for p in full.parameters())
    assert n_half == pytest.approx(n_full / 4, rel=0.02)  # conv weights scale with width squared
    assert half(torch.randn(2, 3, 32, 32)).shape == (2, 256)


def test_timm_resnet_family_is_registered():
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2"} <= set(BACKBONES.list())
    assert BACKBONES.list("resnet1?") == ["resnet18"]


def test_unknown_backbone_suggests():
    with pytest.raises(UnknownEntryError, match="did you mean 'resnet18'"):
        build_backbone("resnt18")
