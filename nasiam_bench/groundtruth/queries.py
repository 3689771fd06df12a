"""Search strategies run against a ground-truth table instead of training (as NAS-Bench-201 benchmarks them): each
asks for genotypes of the table one at a time and sees one seed's accuracy of each (a noisy evaluation, as a real
search would get); after every query its incumbent is the genotype it saw do best. Its regret after n queries is the
best mean accuracy of the table minus the incumbent's mean accuracy.

A strategy is registered in ``QUERY_STRATEGIES`` and run by ``regret_curves``; a new one is benchmarked (and
tested) by being registered. A table is a sample of the space, not all of it: a strategy chooses among its
genotypes (evolution's mutation moves to the nearest genotype of the table)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nasiam_bench.core.registry import QUERY_STRATEGIES


@dataclass
class Table:
    """What a query strategy may use: the table's genotypes (``ops`` per key, flattened over heads), one seed's
    accuracy per query (``observe``, counted), and the zero-cost proxies of every genotype (free: they need no
    training)."""

    ops: dict[str, tuple[str, ...]]
    seeds: dict[str, np.ndarray]  # per key, the accuracy of each seed
    proxies: pd.DataFrame  # per key, each proxy at initialisation (mean over seeds)
    rng: np.random.Generator
    history: list[tuple[str, float]]  # each query and what it saw

    def observe(self, key: str) -> float:
        """One seed's accuracy of ``key`` (drawn at random): one query."""
        seen = float(self.rng.choice(self.seeds[key]))
        self.history.append((key, seen))
        return seen

    @property
    def queried(self) -> list[str]:
        return [key for key, _ in self.history]

    def unqueried(self) -> list[str]:
        seen = set(self.queried)
        return [k for k in self.ops if k not in seen]


class QueryStrategy:
    """Queries the table until ``budget`` queries are spent (or nothing is left to ask)."""

    def run(self, table: Table, budget: int) -> None:
        raise NotImplementedError


@QUERY_STRATEGIES.register("random")
class RandomQueries(QueryStrategy):
    """Random search: genotypes of the table in a random order, without repeats."""

    def run(self, table: Table, budget: int) -> None:
        for key in table.rng.permutation(table.unqueried())[:budget]:
            table.observe(str(key))


@QUERY_STRATEGIES.register("evolution")
class RegularisedEvolution(QueryStrategy):
    """Regularised (ageing) evolution (Real, Aggarwal, Huang and Le, AAAI 2019): a population of ``population``
    genotypes, first random; each step the best of ``sample`` drawn from it is mutated (one layer's op changed; here
    the nearest unqueried genotype of the table to that mutant) and the oldest member dies."""

    population, sample = 10, 3

    def run(self, table: Table, budget: int) -> None:
        alive: list[tuple[str, float]] = []
        for key in table.rng.permutation(table.unqueried())[: min(self.population, budget)]:
            alive.append((str(key), table.observe(str(key))))
        while len(table.queried) < budget and table.unqueried():
            drawn = table.rng.choice(len(alive), size=min(self.sample, len(alive)), replace=False)
            parent = max((alive[i] for i in drawn), key=lambda pair: pair[1])[0]
            child = _nearest(table, _mutant(table, parent))
            alive.append((child, table.observe(child)))
            alive.pop(0)


def _mutant(table: Table, key: str) -> tuple[str, ...]:
    ops = list(table.ops[key])
    choices = sorted({op for genotype in table.ops.values() for op in genotype})
    layer = int(table.rng.integers(len(ops)))
    ops[layer] = str(table.rng.choice([op for op in choices if op != ops[layer]]))
    return tuple(ops)


def _nearest(table: Table, ops: tuple[str, ...]) -> str:
    """The unqueried genotype of the table that differs from ``ops`` in the fewest layers (ties at random)."""
    left = table.unqueried()
    distance = np.array([sum(a != b for a, b in zip(table.ops[k], ops, strict=True)) for k in left])
    closest = np.flatnonzero(distance == distance.min())
    return left[int(table.rng.choice(closest))]


class ProxyPick(QueryStrategy):
    """The zero-cost-proxy pick (Abdelfattah et al., ICLR 2021): the genotypes in the order of a proxy computed at
    initialisation (highest first), each queried in turn."""

    proxy = ""

    def run(self, table: Table, budget: int) -> None:
        noise = table.rng.random(len(table.proxies))  # ties broken at random
        order = table.proxies.assign(_tie=noise).sort_values([self.proxy, "_tie"], ascending=False).index
        for key in [k for k in order if k in table.ops][:budget]:
            table.observe(key)


for _proxy in ("synflow", "naswot", "grad_norm"):
    QUERY_STRATEGIES.add(f"zc_{_proxy}", type(f"ProxyPick_{_proxy}", (ProxyPick,), {"proxy": f"init_{_proxy}"}))


def regret_curves(
    name: str,
    ops: dict[str, tuple[str, ...]],
    seeds: dict[str, np.ndarray],
    proxies: pd.DataFrame,
    budget: int,
    repeats: int = 50,
) -> np.ndarray:
    """Regret after each of ``budget`` queries, for ``repeats`` runs of the strategy (seeded 0..repeats-1): an
    array [repeats, budget] (a run that stopped early keeps its last regret)."""
    truth = {k: float(np.mean(v)) for k, v in seeds.items()}
    best = max(truth.values())
    curves = np.empty((repeats, budget))
    for repeat in range(repeats):
        table = Table(ops, seeds, proxies, np.random.default_rng([repeat, 47]), [])
        QUERY_STRATEGIES.get(name)().run(table, budget)
        curves[repeat] = _regrets(table.history[:budget], truth, best, budget)
    return curves


def _regrets(history: list[tuple[str, float]], truth: dict[str, float], best: float, budget: int) -> np.ndarray:
    """The regret of the incumbent (the best seen so far) after each query."""
    out, incumbent, seen_best = np.full(budget, np.nan), None, -np.inf
    for n, (key, seen) in enumerate(history):
        if seen > seen_best:
            incumbent, seen_best = key, seen
        out[n] = best - truth[incumbent]
    last = out[len(history) - 1] if history else np.nan
    out[len(history) :] = last
    return out
