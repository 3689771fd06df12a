"""No search: the framework's baseline heads (the comparison every searched head must beat)."""

from nasiam_bench.core.registry import SEARCH_STRATEGIES
from nasiam_bench.search.base import SearchContext, SearchResult, SearchStrategy


@SEARCH_STRATEGIES.register("none")
class NoSearch(SearchStrategy):
    name = "none"
    reads = ()

    def run(self, ctx: SearchContext) -> SearchResult:
        return SearchResult(self.name, None)
