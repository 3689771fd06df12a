"""Genotypes: plain data (one op name per layer per head), stored as TOML, never evaluated as code."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nasiam_bench import catalogue
from nasiam_bench.core.io import atomic_write_text
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.models.heads.ops import build_op, every_op
from nasiam_bench.models.heads.supernet import Cell

# The paper's published genotypes, shipped with the suite (a user's catalogue never adds to them); a user's saved
# ones live apart (saved_genotypes_dir).
GENOTYPES_DIR = catalogue.shipped("genotypes")
SAVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
OPS_PREFIX = "ops:"  # a head written as its ops: ops:projector=linear_relu,identity,...;predictor=...


class GenotypeError(NasiamBenchError):
    """A genotype file that does not describe heads this suite can build."""


@dataclass(frozen=True)
class Genotype:
    framework: str
    heads: dict[str, list[str]]
    dataset: str = ""
    backbone: str = ""
    source: str = ""
    alpha: dict[str, Any] = field(default_factory=dict)  # per head: ops, final alpha, history per epoch

    def to_toml(self) -> str:
        import tomli_w

        data: dict[str, Any] = {
            "framework": self.framework,
            "dataset": self.dataset,
            "backbone": self.backbone,
            "source": self.source,
            "heads": self.heads,
        }
        if self.alpha:
            data["alpha"] = self.alpha
        return tomli_w.dumps(data)

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, self.to_toml())
        return Path(path)


def load_genotype(path: str | Path) -> Genotype:
    """Read and check a genotype file: every op must be in the search space of the registered activations."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GenotypeError(f"genotype file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise GenotypeError(f"{path}: not valid TOML: {exc}") from None
    heads = data.get("heads")
    if not isinstance(data.get("framework"), str) or not isinstance(heads, dict) or not heads:
        raise GenotypeError(f'{path}: a genotype needs framework = "..." and a [heads] table of op lists')
    valid = every_op()
    for head, ops in heads.items():
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise GenotypeError(f"{path}: heads.{head} must be a list of op names")
        for layer, op in enumerate(ops):
            if op not in valid:
                raise GenotypeError(f"{path}: heads.{head} layer {layer}: unknown op {op!r}; valid: {', '.join(valid)}")
    return Genotype(
        data["framework"],
        {k: list(v) for k, v in heads.items()},
        data.get("dataset", ""),
        data.get("backbone", ""),
        data.get("source", ""),
        data.get("alpha", {}),
    )


def ops_head(heads: dict[str, list[str]]) -> str:
    """A genotype as an ``experiment.head`` value: ``ops:projector=linear_relu,identity,...`` (heads apart by ``;``)."""
    return OPS_PREFIX + ";".join(f"{head}={','.join(ops)}" for head, ops in heads.items())


def parse_ops_head(text: str) -> dict[str, list[str]]:
    """The genotype an ``ops:`` head names, its ops checked against the registered ones."""
    heads: dict[str, list[str]] = {}
    for part in text.removeprefix(OPS_PREFIX).split(";"):
        head, sep, ops = part.partition("=")
        if not sep or not head or not ops or head in heads:
            raise GenotypeError(
                f"experiment.head = {text!r}: write ops:HEAD=OP,OP,...[;HEAD=OP,...], each head once "
                f"(e.g. ops:projector=linear_relu,identity,avgpool_3x3,linear_elu)"
            )
        heads[head] = ops.split(",")
        unknown = [op for op in heads[head] if op not in every_op()]
        if unknown:
            raise GenotypeError(
                f"experiment.head = {text!r}: unknown op {unknown[0]!r}; valid: {', '.join(every_op())}"
            )
    return heads


def paper_genotype_path(framework: str, dataset: str, backbone: str) -> Path:
    return GENOTYPES_DIR / f"{framework}_{dataset}_{backbone}.toml"


def build_head(ops: list[str], cell: Cell) -> nn.Sequential:
    """A head holding exactly the chosen ops, layer by layer, then the cell's tail."""
    layers = [build_op(op, i, o) for op, i, o in zip(ops, cell.dims[:-1], cell.dims[1:], strict=True)]
    return nn.Sequential(*layers, *([cell.tail()] if cell.tail else []))


def build_heads(genotype: Genotype, cells: dict[str, Cell], where: str = "genotype") -> dict[str, nn.Module]:
    """The heads a genotype describes, on the framework's cells; the layer counts must agree."""
    if set(genotype.heads) != set(cells):
        raise GenotypeError(
            f"{where}: names heads {', '.join(sorted(genotype.heads))}; {genotype.framework} "
            f"searches {', '.join(sorted(cells))}"
        )
    heads = {}
    for name, cell in cells.items():
        ops = genotype.heads[name]
        if len(ops) != cell.layers:
            raise GenotypeError(
                f"{where}: heads.{name} has {len(ops)} layers; this {genotype.framework} cell has "
                f"{cell.layers} (search.{name}_layers)"
            )
        heads[name] = build_head(ops, cell)
    return heads


def sample_genotype(ops: list[str], layers: dict[str, int], rng: np.random.Generator) -> dict[str, list[str]]:
    """One op per layer, uniformly from the search space."""
    return {head: [str(rng.choice(ops)) for _ in range(n)] for head, n in layers.items()}


def published_genotypes() -> list[str]:
    """The names of the paper's genotypes shipped in ``catalogue/genotypes/``."""
    return sorted(p.stem for p in GENOTYPES_DIR.glob("*.toml"))


def saved_genotypes_dir() -> Path:
    """Where ``search --save-as`` keeps a user's genotypes: ``$NASIAM_GENOTYPES``, else ``./genotypes``."""
    return Path(os.environ.get("NASIAM_GENOTYPES") or "genotypes")


def saved_genotype_path(name: str, force: bool = False) -> Path:
    """Where ``search --save-as NAME`` saves: NAME.toml in the saved-genotypes folder. A name that would leave the
    folder is refused, and so is an existing one unless ``force``."""
    if not SAVED_NAME.fullmatch(name) or ".." in name:
        raise GenotypeError(
            f"--save-as {name!r}: a name is letters, digits, '_', '-' and '.', not a path (it is saved in "
            f"{saved_genotypes_dir()}/)"
        )
    target = saved_genotypes_dir() / f"{name.removesuffix('.toml')}.toml"
    if target.exists() and not force:
        raise GenotypeError(f"--save-as {name!r}: {target} exists; choose another name, or --force to replace it")
    return target
