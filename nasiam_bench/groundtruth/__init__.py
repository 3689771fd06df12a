"""The ground truth of a head search space (a tabular benchmark, as NAS-Bench-201 for cells): ``plan`` says which
heads it trains, ``table`` reads its records back and answers queries, ``queries`` runs query strategies against
it at no training cost, and ``report`` judges every predictor and search against it."""
