"""A framework's model as a spec describes it: a fresh timm backbone with the baseline heads or a genotype's."""

from __future__ import annotations

from nasiam_bench.config.spec import Spec
from nasiam_bench.core.registry import FRAMEWORKS
from nasiam_bench.models.backbones import build_backbone
from nasiam_bench.models.frameworks.base import Framework
from nasiam_bench.models.heads.genotype import Genotype, build_heads


def build_model(spec: Spec, genotype: dict[str, list[str]] | None = None) -> Framework:
    """The framework's model around a fresh backbone: its baseline heads, or the heads a genotype describes."""
    e = spec.experiment
    backbone = build_backbone(e.backbone, cifar_stem=e.cifar_stem, width=e.width)
    framework = FRAMEWORKS.get(e.framework)
    heads = None
    if genotype is not None:
        cells = framework.search_cells(int(backbone.num_features), spec.search.layers(), spec.framework.given())
        heads = build_heads(Genotype(e.framework, genotype), cells, where=f"{e.framework} genotype")
    return framework(backbone, heads, spec.framework.given())
