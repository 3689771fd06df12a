"""Search strategies, one module each, registered in ``SEARCH_STRATEGIES``; ``run.py`` drives a search."""
