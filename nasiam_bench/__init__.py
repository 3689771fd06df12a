"""nasiam-bench: NASiam's searched SSL heads measured against the frameworks' standard heads."""

from nasiam_bench.core.registry import (
    ACTIVATIONS,
    BACKBONES,
    DATASETS,
    FRAMEWORKS,
    REGISTRIES,
    SEARCH_STRATEGIES,
    NasiamBenchError,
    Registry,
)

__version__ = "0.1.0"
__all__ = [
    "ACTIVATIONS",
    "BACKBONES",
    "DATASETS",
    "FRAMEWORKS",
    "REGISTRIES",
    "SEARCH_STRATEGIES",
    "NasiamBenchError",
    "Registry",
    "__version__",
]
