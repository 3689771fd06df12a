"""Genotypes: plain data (one op name per layer per head), stored as TOML, never evaluated as code."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from nasiam_bench.heads.ops import build_op, every_op, search_space
from nasiam_bench.heads.supernet import Cell
from nasiam_bench.io import atomic_write_text
from nasiam_bench.layout import default_search_dir
from nasiam_bench.registry import FRAMEWORKS, NasiamBenchError
from nasiam_bench.spec import Spec, SpecError

GENOTYPES_DIR = Path(__file__).resolve().parent.parent.parent / "registry" / "genotypes"


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


def searched_layers(spec: Spec) -> dict[str, int]:
    """The searched heads of the spec's framework and their layer counts."""
    cells = FRAMEWORKS.get(spec.experiment.framework).search_cells(1, spec.search.layers())
    return {head: cell.layers for head, cell in cells.items()}


def resolve_genotype(spec: Spec, seed: int, runs: str | Path = "runs") -> dict[str, list[str]] | None:
    """The ops of the heads ``experiment.head`` asks for; None for the framework's baseline heads.

    ``genotype:<file>``: a genotype file; ``paper``: the paper's for this framework, dataset and backbone;
    ``nasiam``: what ``nasiam-bench search`` found for this spec and seed; ``random``: one sampled with the seed.
    """
    e = spec.experiment
    kind = e.head
    if kind == "baseline":
        return None
    if kind == "random":
        rng = np.random.default_rng([seed, 1])  # not the random search's own stream
        return sample_genotype(search_space(e.activations), searched_layers(spec), rng)
    if kind == "paper":
        path = paper_genotype_path(e.framework, e.dataset, e.backbone)
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in path.parent.glob("*.toml"))) or "none"
            raise SpecError(
                f"experiment.head = 'paper': the paper published no genotype for {e.framework} on "
                f"{e.dataset} with {e.backbone}; it did for: {known}"
            )
    elif kind == "nasiam":
        path = default_search_dir(spec, seed, runs) / "genotype.toml"
        if not path.is_file():
            raise SpecError(
                f"experiment.head = 'nasiam': no search result at {path}; run "
                f"`nasiam-bench search` with this spec first"
            )
    else:
        path = Path(kind.removeprefix("genotype:"))
    genotype = load_genotype(path)
    if genotype.framework != e.framework:
        raise SpecError(f"{path}: a genotype of {genotype.framework} heads, not {e.framework}")
    return genotype.heads
