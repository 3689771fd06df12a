"""The catalogue: the profiles, recipes, experiments and genotypes the suite ships, read as package data (they
install with the wheel), under a user's own catalogue folders.

A user's folders come first: ``$NASIAM_CATALOGUE`` (one folder, or several joined by ``os.pathsep``; ``nasiam-bench
--catalogue DIR`` prepends one), each holding any of ``profiles/``, ``recipes/``, ``experiments/`` and
``genotypes/``. An entry is found in the first folder that has it, so a user's ``quick.toml`` shadows the shipped
one. The paper's genotypes are the shipped ones only (``heads.genotype.paper_genotype_path``): a user's genotype is
never called published."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

KINDS = ("profiles", "recipes", "experiments", "genotypes")
ENV = "NASIAM_CATALOGUE"
SHIPPED = Path(str(importlib.resources.files(__name__)))  # a real folder: setuptools installs package data unzipped


def folders() -> list[Path]:
    """Where entries are looked for, first to last: the user's folders, then the shipped catalogue."""
    given = [Path(p).expanduser() for p in os.environ.get(ENV, "").split(os.pathsep) if p]
    return [*given, SHIPPED]


def find(kind: str, name: str) -> Path | None:
    """The file of entry ``name`` (without ``.toml``) of ``kind``, from the first folder that has it."""
    for folder in folders():
        path = folder / kind / f"{name}.toml"
        if path.is_file():
            return path
    return None


def entries(kind: str) -> dict[str, Path]:
    """Every entry of ``kind`` by name, each from the first folder that has it, sorted by name."""
    found: dict[str, Path] = {}
    for folder in folders():
        for path in sorted((folder / kind).glob("*.toml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items()))


def origin(path: Path) -> str:
    """Where an entry comes from, as ``list`` shows it: ``shipped``, or the user's folder."""
    return "shipped" if path.parent.parent == SHIPPED else str(path.parent.parent)


def shown(path: Path) -> str:
    """An entry's file as people read it: ``catalogue/recipes/reference.toml`` (shipped), else its path."""
    return f"catalogue/{path.parent.name}/{path.name}" if origin(path) == "shipped" else str(path)


def shipped(kind: str) -> Path:
    """The shipped folder of ``kind``."""
    return SHIPPED / kind
