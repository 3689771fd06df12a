"""From records to tables and figures: the comparison tables, the strategy table, the plots' style, statistics."""
