"""The bench as a plan of jobs, and one view of each job that holds its facts: its spec and run spec, its folder,
its record and claim files, the search it waits for, and (once that search is done) its genotype and state
identity. The runner, the sweep's states, the executors and lockstep read these views; no job fact is worked out
anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from nasiam_bench.config.heads import HeadKind, trained_head
from nasiam_bench.config.spec import Spec
from nasiam_bench.eval import label_free
from nasiam_bench.models.heads.genotype import paper_genotype_path
from nasiam_bench.search.decision import PERTURBATION
from nasiam_bench.search.run import finished_search
from nasiam_bench.store.identity import identity, run_id
from nasiam_bench.store.layout import RUN_CLAIM, SEARCH_CLAIM, default_run_dir, default_search_dir, floor_dir
from nasiam_bench.store.resolve import resolve_genotype
from nasiam_bench.store.results import find_record, record_path

SEARCH = "search"  # the kind of a search job (a head job's kind is its head's)


@dataclass(frozen=True)
class Job:
    kind: str  # HeadKind.FLOOR, SEARCH, or a head kind
    seed: int
    strategy: str = ""  # the search strategy of a search or a searched head


@dataclass(frozen=True)
class BenchContext:
    """What every job of one bench shares: its spec, folders, device and whether it shows progress."""

    spec: Spec
    runs: str | Path
    results: str | Path
    device: str = "auto"
    progress: bool = True

    def views(self, lockstep: bool = False) -> list[JobView]:
        return [JobView(self, job) for job in plan(self.spec, lockstep)]

    def view(self, job: Job) -> JobView:
        return JobView(self, job)


def bench_strategies(spec: Spec) -> list[str]:
    """The strategies whose searched head the bench compares: ``bench_strategies``, else ``strategy``."""
    e = spec.experiment
    return [s for s in (e.bench_strategies or (e.strategy,)) if s != "none"]


def plan(spec: Spec, lockstep: bool = False) -> list[Job]:
    """The bench's jobs, seed by seed: the floor, then each head (a searched head after its search); with
    ``lockstep``, every search of a seed before its heads (which then train together)."""
    e = spec.experiment
    strategies = bench_strategies(spec)
    heads = [h for h in e.bench_heads if not (h == HeadKind.NASIAM and not strategies)]
    if HeadKind.PAPER in heads and not paper_genotype_path(e.framework, e.dataset, e.backbone).is_file():
        print(f"no paper genotype for {e.framework} on {e.dataset} with {e.backbone}: the 'paper' head is skipped")
        heads.remove(HeadKind.PAPER)
    jobs = []
    for seed in spec.seeds.values:
        jobs.append(Job(HeadKind.FLOOR, seed))
        for head in heads:
            if head == HeadKind.NASIAM:
                jobs += [j for s in strategies for j in (Job(SEARCH, seed, s), Job(HeadKind.NASIAM, seed, s))]
            else:
                jobs.append(Job(head, seed))
    if lockstep:  # a stable sort: per seed, the floor and the searches first
        jobs.sort(key=lambda j: (spec.seeds.values.index(j.seed), j.kind not in (HeadKind.FLOOR, SEARCH)))
    elif e.plan_by == "head":  # a stable sort: the floors, then each head's seeds (a search before its head)
        heads_in_order = list(dict.fromkeys(_head_of(j) for j in jobs))
        jobs.sort(key=lambda j: (j.kind != HeadKind.FLOOR, heads_in_order.index(_head_of(j))))
    return jobs


def _head_of(job: Job) -> tuple[str, str]:
    """The head a job serves: a search serves its strategy's searched head."""
    return (HeadKind.NASIAM if job.kind == SEARCH else job.kind), job.strategy


def search_of(job: Job) -> Job | None:
    """The job a job waits for: a searched head's search; None for the others."""
    return Job(SEARCH, job.seed, job.strategy) if job.kind == HeadKind.NASIAM else None


def perturbed_twin(spec: Spec) -> Spec:
    """The same search with alpha perturbed at its start (the perturbation check)."""
    return spec.replace(**{"search.alpha_perturbation": PERTURBATION})


class JobView:
    """One job's facts, each worked out once (``cached_property``). The genotype and the state identity of a
    searched head need its search's result: ask for them once the search is done."""

    def __init__(self, bench: BenchContext, job: Job) -> None:
        self.bench, self.job = bench, job

    def __repr__(self) -> str:
        return f"JobView({self.name})"

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def seed(self) -> int:
        return self.job.seed

    @property
    def is_search(self) -> bool:
        return self.job.kind == SEARCH

    @cached_property
    def name(self) -> str:
        """The job as people read it: ``moco nasiam seed 0 (darts)``."""
        job = self.job
        return f"{self.bench.spec.experiment.framework} {job.kind} seed {job.seed}" + (
            f" ({job.strategy})" if job.strategy else ""
        )

    @cached_property
    def spec(self) -> Spec:
        """The bench's spec with the job's strategy (a search's, or a searched head's)."""
        return self.bench.spec.replace(strategy=self.job.strategy) if self.job.strategy else self.bench.spec

    @cached_property
    def run_spec(self) -> Spec:
        """A floor's or head's run: its head, and that head alone as the bench's heads (a record does not carry
        the list of every head its bench trained: a ground truth's is a hundred long)."""
        head = trained_head(self.job.kind)
        return self.spec.replace(head=head, bench_heads=(head,))

    @cached_property
    def folder(self) -> Path:
        """Where the job works and keeps its logs and status: its search's folder, its run folder, or (the floor
        trains nothing) ``floor-seedN`` beside the baseline's seed folders."""
        runs, seed = self.bench.runs, self.job.seed
        if self.is_search:
            return default_search_dir(self.spec, seed, runs)
        if self.job.kind == HeadKind.FLOOR:
            return floor_dir(self.run_spec, seed, runs)
        return default_run_dir(self.run_spec, seed, runs)

    @cached_property
    def twin_folder(self) -> Path | None:
        """A search's perturbed twin's folder, where the bench checks one; None otherwise."""
        if not (self.is_search and self.spec.experiment.perturbation_check):
            return None
        return default_search_dir(perturbed_twin(self.spec), self.job.seed, self.bench.runs)

    @cached_property
    def record(self) -> Path | None:
        """Where a floor's or head's record is filed (known before its search has run: no genotype in it)."""
        if self.is_search:
            return None
        e = self.spec.experiment
        where = {"dataset": e.dataset, "framework": e.framework, "head": self.job.kind}
        return record_path(self.bench.results, {**where, "run_id": run_id(self.run_spec), "seed": self.job.seed})

    @cached_property
    def claims(self) -> list[Path]:
        """The claim files a live holder of the job holds."""
        if self.is_search:
            twin = default_search_dir(perturbed_twin(self.spec), self.job.seed, self.bench.runs)
            return [self.folder / SEARCH_CLAIM, twin / SEARCH_CLAIM]
        return [self.folder / RUN_CLAIM, self.record.with_suffix(".claim")]

    @cached_property
    def waits_for(self) -> JobView | None:
        """The job it waits for: a searched head's search."""
        before = search_of(self.job)
        return None if before is None else JobView(self.bench, before)

    @cached_property
    def genotype(self) -> dict[str, list[str]] | None:
        """The ops of its heads (None: the framework's baseline heads, or the floor)."""
        if self.job.kind == HeadKind.FLOOR:
            return None
        return resolve_genotype(self.run_spec, self.job.seed, self.bench.runs)

    @cached_property
    def state(self) -> str:
        """Its state identity: the run id, the seed and its heads' ops."""
        return identity("state", self.run_spec, self.job.seed, self.genotype)

    def usable_record(self) -> dict[str, Any] | None:
        """The record of its state, unless the bench remakes records that lack the label-free measures
        (``experiment.remake_without_measures``) and it is a head's record made before they existed."""
        found = find_record(self.record, self.state)
        if found is None or self.job.kind == HeadKind.FLOOR or not self.spec.experiment.remake_without_measures:
            return found
        return found if all(m in found for m in label_free.MEASURES) else None

    def done(self) -> bool:
        """Whether its result is there: a search's (and its perturbed twin's, when the bench checks one), or a
        record of the floor's or head's state."""
        if self.is_search:
            found = finished_search(self.spec, self.job.seed, self.bench.runs)
            if found is None or self.twin_folder is None or found[0].decision is None:
                return found is not None
            return finished_search(perturbed_twin(self.spec), self.job.seed, self.bench.runs) is not None
        if self.waits_for is not None and not self.waits_for.done():
            return False  # its genotype is not known yet
        return self.usable_record() is not None
