"""Label-free measures of a network, each in its own module with the paper that defines it: RankMe of a trained
representation, and the zero-cost proxies of an untrained one (synflow, grad_norm, NASWOT). Pure functions of a
module and a batch; ``nasiam_bench.eval.label_free`` computes them for a run."""
