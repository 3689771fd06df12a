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
from pathlib import Path
from typing import Any

import torch

from nasiam_bench.bench.plan import BenchContext, Job, JobView, perturbed_twin
from nasiam_bench.bench.preflight import check_data, check_folder, check_machine
from nasiam_bench.config.heads import HeadKind
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
from nasiam_bench.models.heads.genotype import OPS_PREFIX
from nasiam_bench.report.tables import write_tables
from nasiam_bench.search.decision import PERTURBATION, agreement
from nasiam_bench.search.run import run_search
from nasiam_bench.store.checkpoints import load_checkpoint, model_from_checkpoint, read_state
from nasiam_bench.store.claims import RunClaimed, claim
from nasiam_bench.store.identity import dataset_digest, record_identities, search_id
from nasiam_bench.store.layout import CHECKPOINT, SEARCH_SUMMARY, default_results
from nasiam_bench.store.occupancy import device_time, occupying
from nasiam_bench.store.resolve import resolve_genotype
from nasiam_bench.store.results import (
    device_hours,
    find_record,
    git_commit,
    write_record,
    write_search_record,
)

SOURCES = "NASIAM_SOURCES"  # folders of offline dataset archives (<dataset>.tar.gz), joined by os.pathsep


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
    records, _, _ = _pass(BenchContext(spec, runs, results, device, progress), lockstep)
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


def _pass(bench: BenchContext, lockstep: bool) -> tuple[list, int, int]:
    """One walk through the plan: the records (found or made), how many it made, how many it left to others."""
    views = bench.views(lockstep)
    ctx = distributed.setup(bench.device)
    records, searches, trained, together, made, left = [], {}, {}, set(), 0, 0
    for number, view in enumerate(views, 1):
        label = f"[{number}/{len(views)}] {view.name}"
        if view.is_search:
            searches[view.job] = found = _search(view, label, bench)
            left += found is None
            continue
        if lockstep and view.kind != HeadKind.FLOOR and view.seed not in together:
            together.add(view.seed)
            heads = [v for v in views if v.seed == view.seed and not v.is_search and v.kind != HeadKind.FLOOR]
            trained.update(_lockstep([v for v in heads if _ready(v, searches)], bench))
        if not _ready(view, searches):
            print(f"{label}: its search is running elsewhere; skipped (bench again once it is done)", flush=True)
            left += 1
            continue
        record, new = _job_record(view, label, bench, searches, ctx, trained.get(view.job))
        if record is None:
            left += 1
        else:
            records.append(record)
            made += new
    return records, made, left


def _ready(view: JobView, searches: dict) -> bool:
    """Whether a job can run now: a searched head only once this walk has its search's result (``searches``: by
    search job; None while another process runs it). The one place a job waits for its search."""
    return view.waits_for is None or searches.get(view.waits_for.job) is not None


def run_job(spec: Spec, job: Job, runs, results, device: str = "auto", progress: bool = True):
    """One job of the plan on its own (a cluster job): a search's result, or a floor's or head's record; None when
    another live process holds it. A searched head takes its finished search (or runs it, when it is not)."""
    bench = BenchContext(spec, runs, results, device, progress)
    view = bench.view(job)
    searches = {}
    if view.is_search or view.waits_for is not None:
        search = view.waits_for or view
        found = _search(search, view.name, bench)
        if view.is_search or found is None:
            return found
        searches[search.job] = found
    return _job_record(view, view.name, bench, searches, distributed.setup(device))[0]


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
        _, made, left = _pass(BenchContext(spec, runs, results, device, False), lockstep)
        if not left or not made:  # all done, or what is left is another process's to finish
            return
        time.sleep(1.0)


def _lockstep(heads: list[JobView], bench: BenchContext) -> dict[Job, Any]:
    """Pre-train together the heads of one seed that have no record yet. Their records follow one by one, from
    the pre-training results this returns (by job), without training again."""
    members, todo = [], []
    for view in heads:
        if view.usable_record() is None:
            set_aside_other_state(view.folder, view.state)
            members.append(Member(view.run_spec, view.folder, view.genotype))
            todo.append(view.job)
    if len(members) < 2:
        return {}
    seed = heads[0].seed
    print(f"lockstep seed {seed}: {', '.join(m.spec.experiment.head for m in members)}", flush=True)
    try:
        results = pretrain_lockstep(members, seed, device=bench.device, progress=bench.progress)
    except (RunClaimed, SpecError) as exc:  # a head run elsewhere, or checkpoints at different epochs
        print(f"lockstep seed {seed}: not together ({exc}); the heads train one by one", flush=True)
        return {}
    return {job: result for job, result in zip(todo, results, strict=True) if result.finished}


def _job_record(view: JobView, label: str, bench: BenchContext, searches, ctx, trained=None):
    """The record of a floor or head job, and whether this call made it: found (of this identity), or made under
    this process's claim; None when another live process has claimed the run. ``trained``: its pre-training's
    result, when lockstep has done it."""
    done = view.usable_record()
    if done is not None:
        print(f"{label}: done before, skipped", flush=True)
        return done, False
    old = find_record(view.record, view.state)
    if old is not None:
        print(f"{label}: its record predates the label-free measures: made again", flush=True)
    with claim(view.record.with_suffix(".claim")) as other:
        if other is not None:
            print(f"{label}: claimed by {other}; skipped", flush=True)
            return None, False
        done = view.usable_record()  # made by the claim's last holder while this one looked
        if done is not None:
            print(f"{label}: done meanwhile, skipped", flush=True)
            return done, False
        try:
            record = _made(view, label, searches, bench, ctx, trained)
        except RunClaimed as exc:  # its run folder is another bench's (one with other results)
            print(f"{label}: skipped: {exc}", flush=True)
            return None, False
        if old is not None:
            record["replaced"] = _replaced(old, record, label)
        write_record(bench.results, record)
        if record.get("wandb_id"):  # the record as its W&B run's summary
            tracking.log_record(view.run_spec, view.folder, record["wandb_id"], record)
        return record, True


def _made(view: JobView, label: str, searches, bench: BenchContext, ctx, trained) -> dict[str, Any]:
    """A floor's or head's record, made now: every phase (set-up, training, evaluation, measures) timed."""
    floor = view.kind == HeadKind.FLOOR
    print(f"{label}: {'kNN of the untrained backbone' if floor else 'pre-train'}", flush=True)
    with device_time(ctx.device) as job_time:
        if floor:
            record = _floor(view.run_spec, view.seed, ctx)
        else:
            search = None if view.waits_for is None else searches.get(view.waits_for.job)
            record = _run_head(view, bench, search, ctx, trained)
    record["job_device_hours"] = device_hours(job_time[1], ctx.world_size)
    record = {**record_base(view.run_spec, view.seed), **record, "dataset_digest": dataset_digest(view.run_spec)}
    record.update(record_identities(record))  # the ids rekey would give it: one way to say what it is
    return record


def _replaced(old: dict[str, Any], new: dict[str, Any], label: str) -> dict[str, Any]:
    """What a re-made record keeps of the one it replaced, and a word when its accuracies moved (training is
    deterministic on one kind of machine: another kind, or other code, takes another path)."""
    kept = ("knn_top1", "linear_top1", "created", "git_commit", "device", "pretrain_seconds")
    moved = [k for k in ("knn_top1", "linear_top1") if old.get(k) != new.get(k)]
    if moved:
        print(f"{label}: the re-made record differs from the old in {', '.join(moved)}: "
              + ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in moved), flush=True)  # fmt: skip
    return {k: old.get(k) for k in kept}


def _search(view: JobView, label: str, bench: BenchContext):
    """The search of a job; None when another live process is running it."""
    spec, seed, out = view.spec, view.seed, view.folder
    found = _searched(spec, seed, out, f"{label}: {spec.experiment.strategy} search", bench)
    if found is None:
        return None
    result, genotype_file = found
    write_search_record(bench.results, spec, seed, json.loads((out / SEARCH_SUMMARY).read_text()))
    if view.twin_folder is not None and result.decision is not None:
        result.perturbation_agreement = _perturbation_check(view, result, label, bench)
        if result.perturbation_agreement is None:  # its twin runs elsewhere: the search is not done until it is
            return None
    if genotype_file is not None and (out / "alpha.png").is_file():
        plots = Path(bench.results) / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        e = spec.experiment
        name = f"alpha_{e.framework}_{e.dataset}_{e.strategy}_{search_id(spec)}_seed{seed}.png"  # one per search
        shutil.copyfile(out / "alpha.png", plots / name)
    return result


def _searched(spec: Spec, seed: int, out: Path, what: str, bench: BenchContext):
    """``run_search`` into ``out``, saying so; None (and why) when another live process holds the folder."""
    print(f"{what} -> {out}", flush=True)
    try:
        with occupying(distributed.setup(bench.device).device):  # its set-up counted as on the device too
            return run_search(spec, seed, out, device=bench.device, progress=bench.progress)
    except RunClaimed as exc:
        print(f"{what}: skipped: {exc}", flush=True)
        return None


def _perturbation_check(view: JobView, result, label: str, bench: BenchContext) -> float | None:
    """The share of layers whose op the same search keeps with alpha perturbed by ``PERTURBATION`` at its start;
    None when another live process runs the twin."""
    what = f"{label}: the same search with alpha perturbed by {PERTURBATION:g}"
    found = _searched(perturbed_twin(view.spec), view.seed, view.twin_folder, what, bench)
    return None if found is None else agreement(result.genotype, found[0].genotype)


def _floor(spec: Spec, seed: int, ctx) -> dict[str, Any]:
    with device_time(ctx.device) as spent:
        knn = untrained_knn(spec, seed, eval_data_for(spec, seed, ctx.device), ctx.device)
    seconds, device_seconds = spent
    return {
        "head": HeadKind.FLOOR,
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
    path = out / CHECKPOINT
    if not path.is_file():
        return
    held = read_state(path, "pretrain")["identity"]
    if held != state:
        aside = out.with_name(f"{out.name}-state-{held}")
        print(f"{out}: holds the run of state {held}, not {state} (another genotype): moved to {aside}", flush=True)
        out.rename(aside)


def _run_head(view: JobView, bench: BenchContext, search, ctx, trained=None) -> dict[str, Any]:
    spec, seed, genotype = view.run_spec, view.seed, view.genotype
    if trained is None:
        set_aside_other_state(view.folder, view.state)
        trained = pretrain(spec, seed, view.folder, genotype=genotype, device=bench.device, progress=bench.progress)
    with device_time(ctx.device) as spent:  # the evaluation and the label-free measures
        metrics = evaluate_checkpoint(str(trained.checkpoint), device=bench.device)
        _, model = model_from_checkpoint(load_checkpoint(trained.checkpoint))
        measures = {
            **label_free.at_init(spec, seed, genotype, ctx.device),
            **label_free.after_training(model, spec, ctx.device),
        }
    searched = search is not None and spec.experiment.head == HeadKind.NASIAM
    return {
        "head": spec.experiment.head,
        "strategy": spec.experiment.strategy if spec.experiment.head == HeadKind.NASIAM else "-",
        "genotype": genotype,
        **metrics,
        **measures,
        "head_params": sum(p.numel() for p in model.heads.parameters()),
        "knn_curve": [[row["epoch"], row["knn_top1"]] for row in trained.history if "knn_top1" in row],
        **(_search_facts(search) if searched else {}),
        **_head_costs(trained, search.seconds if searched else 0.0, spent),
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


def _head_costs(trained, search_seconds: float, evaluation: tuple[float, float]) -> dict[str, float]:
    """A head's seconds and device-hours: its search's, its pre-training's and its evaluation's (wall and device
    seconds)."""
    eval_seconds, eval_device_seconds = evaluation
    return {
        "search_seconds": search_seconds,
        "pretrain_seconds": trained.train_seconds,
        "eval_seconds": eval_seconds,
        "search_device_hours": device_hours(search_seconds, trained.world_size),
        "pretrain_device_hours": device_hours(trained.train_seconds, trained.world_size),
        "eval_device_hours": device_hours(eval_device_seconds, trained.world_size),
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
