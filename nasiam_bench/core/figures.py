"""Figures written as files: matplotlib without a display (Agg), each PNG written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nasiam_bench.core.io import atomic_path


def save(fig, path: str | Path, **options: Any) -> Path:
    """Write the figure as a PNG, atomically, and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, **options)
    plt.close(fig)
    return path
