"""DARTS, first order (Liu et al., 2019), the paper's strategy: softmax(alpha) weights every op of a layer."""

from nasiam_bench.core.registry import SEARCH_STRATEGIES
from nasiam_bench.search.base import GradientStrategy


@SEARCH_STRATEGIES.register("darts")
class DARTS(GradientStrategy):
    name = "darts"
