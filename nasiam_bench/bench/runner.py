"""``nasiam-bench bench``: search, pre-train every head under the same seeds, data and schedule, evaluate each,
record each run, and regenerate the tables. Finished runs are skipped (by spec hash and seed); an interrupted one
resumes from its checkpoint."""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasiam_bench.bench.preflight import check_data, check_folder, check_machine
from nasiam_bench.config.spec import Spec, SpecError, bench_spec
from nasiam_bench.core import distributed
from nasiam_bench.core.distributed import device_name
from nasiam_bench.core.machine import machine
from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.data.datasets import DataError
from nasiam_bench.data.prepare import open_prepared, prepare
from nasiam_bench.engine import tracking
from nasiam_bench.engine.lockstep import Member, pretrain_lockstep
from nasiam_bench.engine.train import pretrain
from nasiam_bench.eval import label_free
from nasiam_bench.eval.evaluate import eval_data_for, evaluate_checkpoint, untrained_knn
from nasiam_bench.models.heads.genotype import OPS_PREFIX, paper_genotype_path
from nasiam_bench.report.tables import FLOOR, write_tables
from nasiam_bench.search.decision import PERTURBATION, agreement
from nasiam_bench.search.run import SUMMARY, finished_search, run_search
from nasiam_bench.store.checkpoints import load_checkpoint, model_from_checkpoint, read_state
from nasiam_bench.store.claims import RunClaimed, claim
from nasiam_bench.store.identity import dataset_digest, identity, record_identities, run_id, search_id
from nasiam_bench.store.layout import default_results, default_run_dir, default_search_dir
from nasiam_bench.store.occupancy import device_time, occupying
from nasiam_bench.store.resolve import resolve_genotype
from nasiam_bench.store.results import (
    device_hours,
    find_record,
    git_commit,
    record_path,
    write_record,
    write_search_record,
)

SOURCES = "NASIAM_SOURCES"  # folders of offline dataset archives (<dataset>.tar.gz), joined by os.pathsep


@dataclass(frozen=True)
class Job:
    kind: str  # "floor", "search", or a head kind
    seed: int
    strategy: str = ""  # the search strategy of a "search" or "nasiam" job


def ensure_data(spec: Spec, source: str | Path | None = None) -> None:
    """Prepare the spec's dataset if it is not: from ``source``, an offline archive ``<dataset>.tar.gz`` in a
    folder of ``$NASIAM_SOURCES`` (the Makefile gives ``../shared/datasets``), or a torchvision download (CIFAR)."""
    name, root = spec.experiment.dataset, spec.data.root or None
    try:
        open_prepared(name, root)
        return
    except DataError:
        pass
    if source is None:
        folders = [Path(p) for p in os.environ.get(SOURCES, "").split(os.pathsep) if p]
        source = next((f / f"{name}.tar.gz" for f in folders if (f / f"{name}.tar.gz").is_file()), None)
    prepare(name, source, download=source is None, root=root, workers=spec.data.workers)


def bench_strategies(spec: Spec) -> list[str]:
    """The strategies whose searched head the bench compares: ``bench_strategies``, else ``strategy``."""
    e = spec.experiment
    return [s for s in (e.bench_strategies or (e.strategy,)) if s != "none"]


def plan(spec: Spec, lockstep: bool = False) -> list[Job]:
    """The bench's jobs, seed by seed: the floor, then each head (a searched head after its search); with
    ``lockstep``, every search of a seed before its heads (which then train together)."""
    e = spec.experiment
    strategies = bench_strategies(spec)
    heads = [h for h in e.bench_heads if not (h == "nasiam" and not strategies)]
    if "paper" in heads and not paper_genotype_path(e.framework, e.dataset, e.backbone).is_file():
        print(f"no paper genotype for {e.framework} on {e.dataset} with {e.backbone}: the 'paper' head is skipped")
        heads.remove("paper")
    jobs = []
    for seed in spec.seeds.values:
        jobs.append(Job(FLOOR, seed))
        for head in heads:
            if head == "nasiam":
                jobs += [j for s in strategies for j in (Job("search", seed, s), Job("nasiam", seed, s))]
            else:
                jobs.append(Job(head, seed))
    if lockstep:  # a stable sort: per seed, the floor and the searches first
        jobs.sort(key=lambda j: (spec.seeds.values.index(j.seed), j.kind not in (FLOOR, "search")))
    elif e.plan_by == "head":  # a stable sort: the floors, then each head's seeds (a search before its head)
        heads_in_order = list(dict.fromkeys(_head_of(j) for j in jobs))
        jobs.sort(key=lambda j: (j.kind != FLOOR, heads_in_order.index(_head_of(j))))
    return jobs


def _head_of(job: Job) -> tuple[str, str]:
    """The head a job serves: a search serves its strategy's searched head."""
    return ("nasiam" if job.kind == "search" else job.kind), job.strategy


def record_base(spec: Spec, seed: int) -> dict[str, Any]:
    """What every record of a run of ``spec`` and ``seed`` says first (the table's columns of its shape)."""
    e = spec.experiment
    return {
        "dataset": e.dataset,
        "framework": e.framework,
        "backbone": e.backbone,
        "width": e.width,
        "profile": e.profile,
        "recipe": e.recipe,
        "seed": seed,
        "epochs": spec.train.epochs,
        "batch_size": spec.train.batch_size,
        "train_subset": spec.data.train_subset,
    }


def bench(
    framework: str,
    overrides: list[str],
    *,
    dataset: str | None = None,
    runs: str | Path = "runs",
    results: str | Path | None = None,
    source: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    lockstep: bool = False,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run (or finish) the comparison of ``framework``'s heads; returns the records of this bench. ``lockstep``:
    the heads of a seed still to train are pre-trained together, then evaluated and recorded one by one. ``jobs``:
    that many processes take the runs concurrently (one per GPU when several are visible), then this one finishes
    what they left and writes the tables. ``results``: by default ``layout.default_results``."""
    if jobs < 1:
        raise SpecError(f"--jobs {jobs}: give 1 or more")
    spec = bench_spec(framework, dataset, overrides)
    if results is None:
        results = default_results(spec, runs)
        print(f"records, tables and plots -> {results} (the {spec.experiment.profile} profile; --results to choose)")
    ready_to_bench(spec, runs, results, device, source)
    if jobs > 1:
        _concurrently(jobs, framework, overrides, dataset, runs, results, device, lockstep)
    records, _, _ = _pass(spec, runs, results, device, progress, lockstep)
    if distributed.setup(device).is_main:
        for path in write_tables(results):
            if path.suffix == ".md" and path.stem == spec.experiment.dataset:
                print(path.read_text())
    return records


def ready_to_bench(spec: Spec, runs, results, device: str, source=None, on_this_machine: bool = True) -> None:
    """Before any run of a bench: its folders (and, when it runs ``on_this_machine``, the device and the loader's
    workers) checked, the code's commit read, the dataset prepared and its subsets checked."""
    for head in spec.experiment.bench_heads:  # a genotype written out, checked before the floor runs
        if head.startswith(OPS_PREFIX):
            resolve_genotype(spec.replace(head=head), 0)
    folders = {"--runs": runs, "--results": results}
    if on_this_machine:
        check_machine(spec, device, folders)
    else:  # cluster nodes: their devices and cores, not this login node's
        for option, path in folders.items():
            check_folder(path, option)
    git_commit()  # the code this bench runs, read now, before anyone edits the checkout
    ensure_data(spec, source)
    check_data(spec)


def _pass(spec: Spec, runs, results, device: str, progress: bool, lockstep: bool) -> tuple[list, int, int]:
    """One walk through the plan: the records (found or made), how many it made, how many it left to others."""
    jobs = plan(spec, lockstep)
    ctx = distributed.setup(device)
    records, searches, together, made, left = [], {}, set(), 0, 0
    for number, job in enumerate(jobs, 1):
        if lockstep and job.kind not in (FLOOR, "search") and job.seed not in together:
            together.add(job.seed)
            heads = [j for j in jobs if j.seed == job.seed and j.kind not in (FLOOR, "search")]
            _lockstep(heads, spec, runs, results, device, progress, searches)
        job_spec = spec_of(spec, job)
        label = f"[{number}/{len(jobs)}] {job_name(spec, job)}"
        if job.kind == "search":
            searches[(job.seed, job.strategy)] = found = _search(
                job_spec, job.seed, label, runs, results, device, progress
            )
            left += found is None
            continue
        if _search_pending(job, searches):
            print(f"{label}: its search is running elsewhere; skipped (bench again once it is done)", flush=True)
            left += 1
            continue
        record, new = _job_record(job, job_spec, label, runs, results, device, progress, searches, ctx)
        if record is None:
            left += 1
        else:
            records.append(record)
            made += new
    return records, made, left


def job_name(spec: Spec, job: Job) -> str:
    """A job as people read it: ``moco nasiam seed 0 (darts)``."""
    name = f"{spec.experiment.framework} {job.kind} seed {job.seed}"
    return name + (f" ({job.strategy})" if job.strategy else "")


def _search_pending(job: Job, searches: dict) -> bool:
    """A searched head whose search this walk has no result of (``searches``: by seed and strategy; None while
    another process runs it): it cannot be trained yet."""
    return job.kind == "nasiam" and searches.get((job.seed, job.strategy)) is None


def search_of(job: Job) -> Job | None:
    """The job a job waits for: a searched head's search; None for the others."""
    return Job("search", job.seed, job.strategy) if job.kind == "nasiam" else None


def run_job(spec: Spec, job: Job, runs, results, device: str = "auto", progress: bool = True):
    """One job of the plan on its own (a cluster job): a search's result, or a floor's or head's record; None when
    another live process holds it. A searched head takes its finished search (or runs it, when it is not)."""
    label = job_name(spec, job)
    searches = {}
    if job.kind in ("search", "nasiam"):
        search_job = search_of(job) or job
        found = _search(spec_of(spec, search_job), job.seed, label, runs, results, device, progress)
        if job.kind == "search" or found is None:
            return found
        searches[(job.seed, job.strategy)] = found
    ctx = distributed.setup(device)
    return _job_record(job, spec_of(spec, job), label, runs, results, device, progress, searches, ctx)[0]


def job_done(spec: Spec, job: Job, runs, results) -> bool:
    """Whether the job's result is there: a search's (and its perturbed twin's, when the bench checks one), or a
    record of the floor's or head's identity."""
    if job.kind == "search":
        job_spec = spec_of(spec, job)
        found = finished_search(job_spec, job.seed, runs)
        if found is None or not (job_spec.experiment.perturbation_check and found[0].decision is not None):
            return found is not None
        return finished_search(perturbed_twin(job_spec), job.seed, runs) is not None
    if job.kind == "nasiam" and not job_done(spec, search_of(job), runs, results):
        return False  # its genotype is not known yet
    _, _, state, path = _target(job, spec_of(spec, job), runs, results)
    return usable_record(spec, job, path, state) is not None


def _concurrently(jobs: int, framework, overrides, dataset, runs, results, device: str, lockstep: bool) -> None:
    """``jobs`` worker processes, each walking the plan and taking what no other holds (the claims), until a walk
    leaves nothing or makes nothing; one GPU each, round robin, when several are visible."""
    gpus = torch.cuda.device_count() if device != "cpu" else 0
    context = mp.get_context("spawn")
    workers = []
    for k in range(jobs):
        visible = str(k % gpus) if gpus > 1 else None
        args = (framework, list(overrides), dataset, str(runs), str(results), device, lockstep, visible, os.getpid())
        workers.append(context.Process(target=_worker, args=args, name=f"bench-worker-{k}"))
    for w in workers:
        w.start()
    ended = signal.signal(signal.SIGTERM, _exit_on_term)  # a terminated parent ends its workers (below)
    try:
        for w in workers:
            w.join()
    finally:
        signal.signal(signal.SIGTERM, ended)
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join()
    failed = [f"{w.name} (exit {w.exitcode})" for w in workers if w.exitcode != 0]
    if failed:
        raise NasiamBenchError(f"bench --jobs {jobs}: {', '.join(failed)} failed; its output above says why")


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _end_with_parent(parent: int) -> None:
    """Linux: this process gets SIGTERM when its parent dies, however it dies (SIGKILL included), so a killed
    ``bench --jobs N`` leaves no worker running on."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the line above: nothing would signal this one
        raise SystemExit(1)


PR_SET_PDEATHSIG = 1


def _worker(framework, overrides, dataset, runs, results, device, lockstep, visible, parent: int) -> None:
    _end_with_parent(parent)
    if visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible  # before this process touches CUDA
    spec = bench_spec(framework, dataset, overrides)
    while True:
        _, made, left = _pass(spec, runs, results, device, False, lockstep)
        if not left or not made:  # all done, or what is left is another process's to finish
            return
        time.sleep(1.0)


def _target(job: Job, spec: Spec, runs, results) -> tuple[Spec, Any, str, Path]:
    """What a floor or head job makes: its run spec, genotype, state identity and record path."""
    run_spec = _run_spec(spec, job)
    genotype = None if job.kind == FLOOR else resolve_genotype(run_spec, job.seed, runs)
    state = identity("state", run_spec, job.seed, genotype)
    return run_spec, genotype, state, record_file(spec, job, results)


def _run_spec(spec: Spec, job: Job) -> Spec:
    """The spec of one run: its head, and that head alone as the bench's heads (a record does not carry the list
    of every head its bench trained: a ground truth's is a hundred long)."""
    head = "baseline" if job.kind == FLOOR else job.kind
    return spec.replace(head=head, bench_heads=(head,))


def record_file(spec: Spec, job: Job, results) -> Path:
    """Where a floor's or head's record is filed (known before its search has run: no genotype in it)."""
    e = spec.experiment
    where = {"dataset": e.dataset, "framework": e.framework, "head": job.kind, "run_id": run_id(_run_spec(spec, job))}
    return record_path(results, {**where, "seed": job.seed})


def spec_of(spec: Spec, job: Job) -> Spec:
    """The spec of a job: the bench's, with the job's strategy for a search or a searched head."""
    return spec.replace(strategy=job.strategy) if job.strategy else spec


def _lockstep(heads: list[Job], spec: Spec, runs, results, device: str, progress: bool, searches) -> None:
    """Pre-train together the heads of one seed that have no record yet (their records follow, one by one)."""
    members = []
    for job in heads:
        if _search_pending(job, searches):
            continue
        run_spec, genotype, state, path = _target(job, spec_of(spec, job), runs, results)
        if usable_record(spec, job, path, state) is None:
            out = default_run_dir(run_spec, job.seed, runs)
            set_aside_other_state(out, state)
            members.append(Member(run_spec, out, genotype))
    if len(members) < 2:
        return
    print(f"lockstep seed {heads[0].seed}: {', '.join(m.spec.experiment.head for m in members)}", flush=True)
    try:
        pretrain_lockstep(members, heads[0].seed, device=device, progress=progress)
    except (RunClaimed, SpecError) as exc:  # a head run elsewhere, or checkpoints at different epochs
        print(f"lockstep seed {heads[0].seed}: not together ({exc}); the heads train one by one", flush=True)


def _job_record(job: Job, spec: Spec, label: str, runs, results, device: str, progress: bool, searches, ctx):
    """The record of a floor or head job, and whether this call made it: found (of this identity), or made under
    this process's claim; None when another live process has claimed the run."""
    run_spec, genotype, state, path = _target(job, spec, runs, results)
    done = usable_record(spec, job, path, state)
    if done is not None:
        print(f"{label}: done before, skipped", flush=True)
        return done, False
    old = find_record(path, state)
    if old is not None:
        print(f"{label}: its record predates the label-free measures: made again", flush=True)
    with claim(path.with_suffix(".claim")) as other:
        if other is not None:
            print(f"{label}: claimed by {other}; skipped", flush=True)
            return None, False
        done = usable_record(spec, job, path, state)  # made by the claim's last holder while this one looked
        if done is not None:
            print(f"{label}: done meanwhile, skipped", flush=True)
            return done, False
        print(f"{label}: {'kNN of the untrained backbone' if job.kind == FLOOR else 'pre-train'}", flush=True)
        try:
            with device_time(ctx.device) as job_time:  # every phase: set-up, training, evaluation, measures
                if job.kind == FLOOR:
                    record = _floor(run_spec, job.seed, ctx)
                else:
                    search = searches.get((job.seed, job.strategy))
                    record = _run_head(run_spec, job.seed, genotype, runs, device, progress, search, ctx)
        except RunClaimed as exc:  # its run folder is another bench's (one with other results)
            print(f"{label}: skipped: {exc}", flush=True)
            return None, False
        record["job_device_hours"] = device_hours(job_time[1], ctx.world_size)
        record = {**record_base(run_spec, job.seed), **record, "dataset_digest": dataset_digest(run_spec)}
        record.update(record_identities(record))  # the ids rekey would give it: one way to say what it is
        if old is not None:
            record["replaced"] = _replaced(old, record, label)
        write_record(results, record)
        if record.get("wandb_id"):  # the record as its W&B run's summary
            tracking.log_record(run_spec, default_run_dir(run_spec, job.seed, runs), record["wandb_id"], record)
        return record, True


def usable_record(spec: Spec, job: Job, path: Path, state: str) -> dict[str, Any] | None:
    """The record of a job's state at ``path``, unless the bench remakes records that lack the label-free
    measures (``experiment.remake_without_measures``) and it is a head's record made before they existed."""
    record = find_record(path, state)
    if record is None or job.kind == FLOOR or not spec.experiment.remake_without_measures:
        return record
    return record if all(m in record for m in label_free.MEASURES) else None


def _replaced(old: dict[str, Any], new: dict[str, Any], label: str) -> dict[str, Any]:
    """What a re-made record keeps of the one it replaced, and a word when its accuracies moved (training is
    deterministic on one kind of machine: another kind, or other code, takes another path)."""
    kept = ("knn_top1", "linear_top1", "created", "git_commit", "device", "pretrain_seconds")
    moved = [k for k in ("knn_top1", "linear_top1") if old.get(k) != new.get(k)]
    if moved:
        print(f"{label}: the re-made record differs from the old in {', '.join(moved)}: "
              + ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in moved), flush=True)  # fmt: skip
    return {k: old.get(k) for k in kept}


def _search(spec: Spec, seed: int, label: str, runs, results, device: str, progress: bool):
    """The search of a job; None when another live process is running it."""
    out = default_search_dir(spec, seed, runs)
    found = _searched(spec, seed, out, f"{label}: {spec.experiment.strategy} search", device, progress)
    if found is None:
        return None
    result, genotype_file = found
    write_search_record(results, spec, seed, json.loads((out / SUMMARY).read_text()))
    if spec.experiment.perturbation_check and result.decision is not None:
        result.perturbation_agreement = _perturbation_check(spec, seed, result, label, runs, device, progress)
        if result.perturbation_agreement is None:  # its twin runs elsewhere: the search is not done until it is
            return None
    if genotype_file is not None and (out / "alpha.png").is_file():
        plots = Path(results) / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        e = spec.experiment
        name = f"alpha_{e.framework}_{e.dataset}_{e.strategy}_{search_id(spec)}_seed{seed}.png"  # one per search
        shutil.copyfile(out / "alpha.png", plots / name)
    return result


def _searched(spec: Spec, seed: int, out: Path, what: str, device: str, progress: bool):
    """``run_search`` into ``out``, saying so; None (and why) when another live process holds the folder."""
    print(f"{what} -> {out}", flush=True)
    try:
        with occupying(distributed.setup(device).device):  # its set-up counted as on the device too
            return run_search(spec, seed, out, device=device, progress=progress)
    except RunClaimed as exc:
        print(f"{what}: skipped: {exc}", flush=True)
        return None


def _perturbation_check(spec: Spec, seed: int, result, label: str, runs, device: str, progress: bool) -> float | None:
    """The share of layers whose op the same search keeps with alpha perturbed by ``PERTURBATION`` at its start;
    None when another live process runs the twin."""
    twin = perturbed_twin(spec)
    what = f"{label}: the same search with alpha perturbed by {PERTURBATION:g}"
    found = _searched(twin, seed, default_search_dir(twin, seed, runs), what, device, progress)
    return None if found is None else agreement(result.genotype, found[0].genotype)


def perturbed_twin(spec: Spec) -> Spec:
    return spec.replace(**{"search.alpha_perturbation": PERTURBATION})


def _floor(spec: Spec, seed: int, ctx) -> dict[str, Any]:
    with device_time(ctx.device) as spent:
        knn = untrained_knn(spec, seed, eval_data_for(spec, seed, ctx.device), ctx.device)
    seconds, device_seconds = spent
    return {
        "head": FLOOR,
        "strategy": "-",
        "knn_top1": knn,
        "head_params": None,
        "search_seconds": 0.0,
        "pretrain_seconds": 0.0,
        "eval_seconds": seconds,
        "search_device_hours": 0.0,
        "pretrain_device_hours": 0.0,
        "eval_device_hours": device_hours(device_seconds, ctx.world_size),
        "device": device_name(ctx.device),
        "machine": machine(ctx.device),
        "devices": ctx.world_size,
        "spec": spec.to_dict(),
    }


def set_aside_other_state(out: Path, state: str) -> None:
    """A run folder whose checkpoint holds another state under the same run id (a searched head whose search chose
    again): moved aside whole, to ``<folder>-state-<its identity>``, so that the run starts again and nothing of
    the old one is lost."""
    path = out / "checkpoint.pt"
    if not path.is_file():
        return
    held = read_state(path, "pretrain")["identity"]
    if held != state:
        aside = out.with_name(f"{out.name}-state-{held}")
        print(f"{out}: holds the run of state {held}, not {state} (another genotype): moved to {aside}", flush=True)
        out.rename(aside)


def _run_head(spec: Spec, seed: int, genotype, runs, device: str, progress: bool, search, ctx) -> dict[str, Any]:
    out = default_run_dir(spec, seed, runs)
    set_aside_other_state(out, identity("state", spec, seed, genotype))
    trained = pretrain(spec, seed, out, genotype=genotype, device=device, progress=progress, runs=runs)
    with device_time(ctx.device) as spent:  # the evaluation and the label-free measures
        metrics = evaluate_checkpoint(str(trained.checkpoint), device=device)
        _, model = model_from_checkpoint(load_checkpoint(trained.checkpoint))
        measures = {
            **label_free.at_init(spec, seed, genotype, ctx.device),
            **label_free.after_training(model, spec, ctx.device),
        }
    eval_seconds, eval_device_seconds = spent
    searched = search is not None and spec.experiment.head == "nasiam"
    search_seconds = search.seconds if searched else 0.0
    return {
        "head": spec.experiment.head,
        "strategy": spec.experiment.strategy if spec.experiment.head == "nasiam" else "-",
        "genotype": genotype,
        **metrics,
        **measures,
        "head_params": sum(p.numel() for p in model.heads.parameters()),
        "knn_curve": [[row["epoch"], row["knn_top1"]] for row in trained.history if "knn_top1" in row],
        **(_search_facts(search) if searched else {}),
        "search_seconds": search_seconds,
        "pretrain_seconds": trained.train_seconds,
        "eval_seconds": eval_seconds,
        "search_device_hours": device_hours(search_seconds, trained.world_size),
        "pretrain_device_hours": device_hours(trained.train_seconds, trained.world_size),
        "eval_device_hours": device_hours(eval_device_seconds, trained.world_size),
        "device": trained.device,
        "machine": machine(ctx.device),
        "devices": trained.world_size,
        "lockstep_heads": trained.lockstep,
        "device_shared_by": round(trained.device_shared_by, 2),
        "peak_memory_mb": trained.peak_memory_mb,
        "images_per_s": trained.images_per_second,
        "checkpoint": str(trained.checkpoint),
        **({"wandb_id": trained.wandb_id} if trained.wandb_id else {}),
        "spec": spec.to_dict(),
    }


def _search_facts(search) -> dict[str, Any]:
    """What a searched head's record says of its search: what ended it, how decided it was, and how much of its
    genotype a rounding-level perturbation kept (when checked)."""
    facts: dict[str, Any] = {"search_ended": search.ended, "search_decision": search.decision}
    if search.alpha:  # the final softmax(alpha) of each head: how the supernet ranks every genotype
        facts["search_alpha"] = {head: {"ops": a["ops"], "final": a["final"]} for head, a in search.alpha.items()}
    if search.perturbation_agreement is not None:
        facts["perturbation_agreement"] = search.perturbation_agreement
    return facts
