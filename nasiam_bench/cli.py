"""The ``nasiam-bench`` command line. Bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nasiam_bench import catalogue
from nasiam_bench.core.registry import REGISTRIES, NasiamBenchError, registry

PROG = "nasiam-bench"


def _at_least(low: int):
    """An argparse type: a whole number of ``low`` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value}: give {low} or more")
        return value

    parse.__name__ = f"a whole number >= {low}"
    return parse


SEED, COUNT = _at_least(0), _at_least(1)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        raise NasiamBenchError(f"{message} (see `{self.prog} --help`)")


def _cmd_list(args: argparse.Namespace) -> int:
    if args.registry is None:
        for name, reg in REGISTRIES.items():  # not their sizes: that would import every entry (torch, timm)
            print(f"{name:<18} {reg.doc} (nasiam-bench list {name})")
        for kind in catalogue.KINDS:
            print(f"{kind:<18} the catalogue's {kind}, and where each comes from (nasiam-bench list {kind})")
        return 0
    if args.registry in catalogue.KINDS:
        found = {n: p for n, p in catalogue.entries(args.registry).items() if fnmatch.fnmatchcase(n, args.pattern)}
        if not found:
            raise NasiamBenchError(f"no {args.registry} entry matches {args.pattern!r}")
        print("\n".join(f"{name:<32} {catalogue.origin(path)}" for name, path in found.items()))
        return 0
    names = registry(args.registry).list(args.pattern)
    if not names:
        raise NasiamBenchError(f"no {args.registry} entry matches {args.pattern!r}")
    print("\n".join(names))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from nasiam_bench.config.spec import load_spec, spec_to_toml
    from nasiam_bench.store.identity import UNPREPARED, dataset_digest, run_id

    spec = load_spec(args.spec, args.overrides)
    label = run_id(spec) + (" (the dataset is not prepared yet)" if dataset_digest(spec) == UNPREPARED else "")
    print(spec_to_toml(spec, label), end="")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from nasiam_bench.bench.preflight import check_folder, check_workers
    from nasiam_bench.data.prepare import prepare

    if args.source is not None and args.download:
        raise NasiamBenchError("data prepare: give --source PATH or --download, not both")
    check_workers(args.workers, "--workers")
    if args.root:
        check_folder(args.root, "--root")
    prepare(
        args.dataset,
        args.source,
        download=args.download,
        root=args.root,
        workers=args.workers,
        max_resolution=args.max_resolution,
        force=args.force,
        holdout=args.holdout,
    )
    return 0


def _seeds_and_folders(spec, args: argparse.Namespace, default_folder) -> list[tuple[int, Path]]:
    """``--seed`` or every seed of the spec, each with its folder: ``--out`` (one seed only) or the default."""
    seeds = [args.seed] if args.seed is not None else list(spec.seeds.values)
    if args.out and len(seeds) > 1:
        raise NasiamBenchError(f"--out names one folder but the spec has seeds {seeds}; add --seed N, or use --runs")
    return [(seed, Path(args.out) if args.out else default_folder(spec, seed, args.runs)) for seed in seeds]


def _preflight(spec, args: argparse.Namespace) -> None:
    """The device, the loader's workers, the folders and the prepared data of a pretrain or search command."""
    from nasiam_bench.bench.preflight import check_data, check_machine

    check_machine(spec, args.device, {"--out": args.out} if args.out else {"--runs": args.runs})
    check_data(spec)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from nasiam_bench.config.spec import load_spec
    from nasiam_bench.engine.train import pretrain
    from nasiam_bench.store.layout import default_run_dir

    spec = load_spec(args.spec, args.overrides)
    _preflight(spec, args)
    for seed, out in _seeds_and_folders(spec, args, default_run_dir):
        result = pretrain(spec, seed, out, device=args.device, resume=not args.no_resume, stop_after=args.stop_after)
        if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one process reports
            continue
        last = result.history[-1] if result.history else {}
        state = "finished" if result.finished else f"stopped after epoch {result.epochs_done}/{spec.train.epochs}"
        print(
            f"{spec.experiment.framework} seed {seed}: {state}; loss {last.get('loss', float('nan')):.4f}, "
            f"{result.images_per_second:.1f} images/s on {result.device}; checkpoint {result.checkpoint}"
        )
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from nasiam_bench.config.spec import load_spec
    from nasiam_bench.models.heads.genotype import load_genotype, saved_genotype_path
    from nasiam_bench.search.run import run_search
    from nasiam_bench.store.layout import default_search_dir

    spec = load_spec(args.spec, args.overrides)
    _preflight(spec, args)
    folders = _seeds_and_folders(spec, args, default_search_dir)
    target = saved_genotype_path(args.save_as, args.force) if args.save_as else None  # refused before any work
    if target is not None and len(folders) > 1:
        raise NasiamBenchError(f"--save-as names one genotype but the spec has {len(folders)} seeds; add --seed N")
    for seed, out in folders:
        result, genotype_file = run_search(spec, seed, out, device=args.device)
        if genotype_file is None:
            print(f"{spec.experiment.strategy}: no search; the {spec.experiment.framework} baseline heads")
            continue
        for head, ops in result.genotype.items():
            print(f"{head}: {', '.join(ops)}")
        print(f"genotype {genotype_file} ({result.seconds:.1f} s, {result.steps} steps)")
        if target is not None:
            load_genotype(genotype_file).save(target)
            print(f"saved as {target} (train it with head=genotype:{target})")
    return 0


def _cmd_searches(args: argparse.Namespace) -> int:
    from nasiam_bench.bench.search_report import parse_variant, run_variants, write_report

    variants = [parse_variant(v, args.spec, args.overrides) for v in (args.variant or ["as given:"])]
    rows = run_variants(variants, list(range(args.seeds)), args.runs, args.device, results=args.results)
    command = " ".join(["nasiam-bench", *sys.argv[1:]]) if args.command_line is None else args.command_line
    path = write_report(rows, args.report, args.title or f"Searches of {args.spec}", command)
    print(path.read_text())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from nasiam_bench.bench.runner import bench

    overrides = list(args.overrides)
    if args.seeds is not None:
        if args.seeds < 1:
            raise NasiamBenchError(f"--seeds {args.seeds}: give 1 or more")
        overrides.append(f"seeds.values={list(range(args.seeds))}")
    if args.lockstep and args.executor != "local":
        raise NasiamBenchError(
            f"--lockstep trains a seed's heads together in one process; --executor {args.executor} runs each job "
            f"on its own: drop --lockstep, or use --executor local"
        )
    if args.plan or args.status or args.executor != "local":
        return _bench_plan(args, overrides)
    bench(
        args.framework,
        overrides,
        dataset=args.dataset,
        runs=args.runs,
        results=args.results,
        source=args.source,
        device=args.device,
        lockstep=args.lockstep,
        jobs=args.jobs,
    )
    return 0


def _cmd_groundtruth(args: argparse.Namespace) -> int:
    from nasiam_bench.config.spec import bench_spec
    from nasiam_bench.groundtruth import plan as groundtruth
    from nasiam_bench.groundtruth.report import write_report
    from nasiam_bench.store.layout import default_results

    seeds = [] if args.seeds is None else [f"seeds.values={list(range(args.seeds))}"]
    spec = bench_spec(args.framework, args.dataset, [*args.overrides, *seeds])
    found_in = args.results or "results"  # the committed searches' picks
    command = " ".join(["nasiam-bench", *sys.argv[1:]]) if args.command_line is None else args.command_line
    if args.machine_check:
        return _machine_check(args, spec, groundtruth)
    if not args.report:
        args.overrides = [*args.overrides, *groundtruth.overrides(spec, args.sample, args.sample_seed, found_in)]
        _cmd_bench(args)
        if args.plan or args.status or args.executor != "local":
            return 0
    results = args.results or default_results(spec, args.runs)
    print(write_report(results, spec, args.sample, args.sample_seed, command))
    return 0


def _machine_check(args: argparse.Namespace, spec, groundtruth) -> int:
    """``groundtruth --machine-check N``: the baseline, the paper's genotype and the first N sampled genotypes
    trained anew on this kind of machine, into a folder of its own, for the report to compare with the table."""
    from pathlib import Path

    from nasiam_bench.core.distributed import setup
    from nasiam_bench.core.machine import machine, machine_slug

    kind = machine_slug(machine(setup(args.device).device))
    args.results = str(Path(args.results or "results") / "ground_truth" / "machines" / kind)
    args.runs = str(Path(args.runs) / f"machine-check-{kind}")  # its own checkpoints: trained again, not reused
    args.overrides = [*args.overrides, *groundtruth.overrides(spec, args.machine_check, args.sample_seed, args.results)]
    return _cmd_bench(args)


def _bench_plan(args: argparse.Namespace, overrides: list[str]) -> int:
    """``bench --plan``, ``--status``, and the submitit executors."""
    from nasiam_bench.bench import executors, sweep
    from nasiam_bench.bench.runner import ready_to_bench
    from nasiam_bench.config.spec import bench_spec
    from nasiam_bench.store.layout import default_results

    spec = bench_spec(args.framework, args.dataset, overrides)
    results = str(args.results or default_results(spec, args.runs))
    b = executors.Bench(args.framework, overrides, args.dataset, args.runs, results, args.device)
    if args.plan or args.status:
        states = sweep.job_states(b.context())  # each job's state read once, for both views
        if args.plan:
            print(sweep.describe_plan(sweep.plan_table(states, costs_from=["results"])))
        if args.status:
            print(sweep.status_table(states).to_string(index=False))
        return 0
    given = {name: getattr(args, name) for name in executors.LAUNCHER_OPTIONS}
    launcher = executors.Launcher.load(args.launcher, **given)
    ready_to_bench(spec, b.runs, results, args.device, args.source, on_this_machine=args.executor != "slurm")
    if args.executor == "submitit-local":
        for path in executors.run_local(b, launcher, at_once=args.jobs):
            print(path)
    else:
        ids = executors.submit_slurm(b, launcher)
        submitted = ", ".join(ids) or "(none: every job is done, running or queued)"
        print(f"submitted SLURM jobs {submitted}; follow them with `nasiam-bench bench ... --status`")
    return 0


def _cmd_tables(args: argparse.Namespace) -> int:
    from nasiam_bench.report.headline import readme_parts, write_headline
    from nasiam_bench.report.tables import write_tables

    if args.readme:
        readme_parts(args.readme)  # refused before any table is written
    written = write_tables(args.results)
    if not written:
        raise NasiamBenchError(f"no run records under {args.results}/records; run `nasiam-bench bench` first")
    if args.readme:
        written.append(write_headline(args.readme, args.results))
    for path in written:
        print(path)
    return 0


def _cmd_rekey(args: argparse.Namespace) -> int:
    from nasiam_bench.data.datasets import dataset_info, source_digest
    from nasiam_bench.data.prepare import default_writer_options
    from nasiam_bench.store.identity import digest_of_source
    from nasiam_bench.store.results import rekey

    digests = {}
    for given in args.source or []:
        name, sep, path = given.partition("=")
        if not sep or not Path(path).exists():
            raise NasiamBenchError(f"--source {given!r}: expected DATASET=PATH of an existing source archive or tree")
        digests[name] = digest_of_source(source_digest(Path(path)), default_writer_options(dataset_info(name)))
    for old, new in rekey(args.results, digests):
        print(f"{old} -> {new.name}" if old != new else f"{old}: identities updated")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from nasiam_bench.bench.preflight import check_device
    from nasiam_bench.core.io import atomic_write_json
    from nasiam_bench.eval.evaluate import evaluate_checkpoint

    check_device(args.device)
    result = evaluate_checkpoint(args.checkpoint, device=args.device, floor=args.floor)
    atomic_write_json(Path(args.checkpoint).with_name("eval.json"), result)
    print(json.dumps(result, indent=2))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from nasiam_bench.bench.doctor import FAILED, report, run_checks
    from nasiam_bench.bench.preflight import check_device

    check_device(args.device)
    checks = run_checks(args.device, list(args.overrides), args.steps)
    print(report(checks))
    failed = [c.name for c in checks if c.status == FAILED]
    if failed:
        print(f"{PROG} doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


# Each job's resources on a cluster, as options (any of them also in a --launcher file's [launcher] table).
LAUNCHER_FLAGS = (
    ("--partition", {}),
    ("--account", {}),
    ("--qos", {}),
    ("--gpus", {"type": COUNT, "help": "GPUs per job (default 1)"}),
    ("--cpus", {"type": COUNT, "help": "CPUs per job (default 8)"}),
    ("--mem-gb", {"type": float, "dest": "mem_gb", "help": "memory per job in GB"}),
    ("--time-min", {"type": COUNT, "dest": "time_min", "help": "time limit per job in minutes (default 240)"}),
    ("--array-parallelism", {"type": COUNT, "dest": "array_parallelism", "help": "array tasks at once (64)"}),
    ("--signal", {"help": "what SLURM signals before a time-out or preemption: USR1, USR2 (default), TERM"}),
)


def _bench_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``bench`` (and of ``groundtruth``, a bench of many heads)."""
    p.add_argument(
        "framework",
        help="a frameworks entry (catalogue/experiments/FRAMEWORK_DATASET.toml, else the defaults), or a spec file",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. profile=smoke strategy=gdas")
    p.add_argument("--dataset", help="a datasets entry (default cifar10, or a spec file's own)")
    p.add_argument("--seeds", type=COUNT, help="seeds 0..N-1 (default: the spec's seeds.values)")
    p.add_argument("--runs", default="runs", help="checkpoints and searches (default ./runs)")
    p.add_argument(
        "--results",
        help="records, tables and plots (default: ./results for the quick profile, whose tables the repo keeps; "
        "RUNS/results-PROFILE for any other)",
    )
    p.add_argument("--source", help="dataset source when it is not prepared yet")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="pre-train the heads of a seed together on the same batches (one decode and augmentation a step)",
    )
    p.add_argument(
        "--jobs",
        type=COUNT,
        default=1,
        help="processes that take the runs concurrently (one per GPU when several are visible; default 1); "
        "with --executor submitit-local, the jobs that run at once",
    )
    _plan_arguments(p)


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    """The plan's views (``--plan``, ``--status``) and where its jobs run (``--executor`` and the launcher)."""
    p.add_argument("--plan", action="store_true", help="print the jobs, their states and expected device-hours")
    p.add_argument("--status", action="store_true", help="print where each job ran, how long, and why it failed")
    p.add_argument(
        "--executor",
        choices=["local", "submitit-local", "slurm"],
        default="local",
        help="local: in this process (default); submitit-local: the plan as cluster jobs on this machine; "
        "slurm: submit the plan to SLURM",
    )
    p.add_argument("--launcher", metavar="FILE", help="a TOML file whose [launcher] table sets the job resources")
    for flag, options in LAUNCHER_FLAGS:
        p.add_argument(flag, **options)


def _add_list(sub) -> None:
    """The ``list`` command."""
    p = sub.add_parser("list", help="list registries, or the entries of one (fnmatch PATTERN, e.g. 'res*')")
    p.add_argument("registry", nargs="?", help=f"one of: {', '.join([*REGISTRIES, *catalogue.KINDS])}")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=_cmd_list)


def _add_show(sub) -> None:
    """The ``show`` command."""
    p = sub.add_parser("show", help="print an experiment spec resolved with its profile and overrides, as TOML")
    p.add_argument("spec", help="a TOML path, or a name in catalogue/experiments/")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=5 profile=smoke")
    p.set_defaults(run=_cmd_show)


def _add_pretrain(sub) -> None:
    """The ``pretrain`` command."""
    p = sub.add_parser("pretrain", help="pre-train a backbone with the spec's framework (resumes by default)")
    p.add_argument("spec", help="a TOML path, or a name in catalogue/experiments/")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--seed", type=SEED, help="one seed (default: every seed of seeds.values)")
    p.add_argument("--runs", default="runs", help="folder of run folders (default ./runs)")
    p.add_argument("--out", help="the run folder itself, for a single seed")
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--stop-after", type=COUNT, help="stop after this many epochs (resumable)")
    p.set_defaults(run=_cmd_pretrain)


def _add_search(sub) -> None:
    """The ``search`` command."""
    p = sub.add_parser("search", help="search the heads with the spec's strategy; writes the genotype")
    p.add_argument("spec", help="a TOML path, or a name in catalogue/experiments/")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--seed", type=SEED, help="one seed (default: every seed of seeds.values)")
    p.add_argument("--runs", default="runs", help="folder of run folders (default ./runs)")
    p.add_argument("--out", help="the search folder itself, for a single seed")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--save-as", help="also save the genotype as NAME.toml in $NASIAM_GENOTYPES, else ./genotypes (not the paper's)"
    )
    p.add_argument("--force", action="store_true", help="with --save-as: replace a saved genotype of that name")
    p.set_defaults(run=_cmd_search)


def _add_searches(sub) -> None:
    """The ``searches`` command."""
    p = sub.add_parser("searches", help="search variants of a spec with several seeds; report genotypes and alpha")
    p.add_argument("spec", help="a TOML path, or a name in catalogue/experiments/")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="for every variant")
    p.add_argument(
        "--variant",
        action="append",
        metavar="LABEL:key=value,...",
        help="a variant and its own overrides (repeat; default: the spec as given)",
    )
    p.add_argument("--seeds", type=COUNT, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--runs", default="runs", help="folder of search folders (default ./runs)")
    p.add_argument("--report", required=True, help="the Markdown report to write (plots go beside it)")
    p.add_argument(
        "--results", help="also keep each search's record (genotype, final softmax(alpha), machine) in DIR/searches"
    )
    p.add_argument("--title", help="the report's heading")
    p.add_argument("--command-line", help="the command the report names to regenerate it (default: this one)")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_cmd_searches)


def _add_bench(sub) -> None:
    """The ``bench`` command."""
    p = sub.add_parser("bench", help="search, pre-train every head alike, evaluate, and write the tables")
    _bench_arguments(p)
    p.set_defaults(run=_cmd_bench)


def _add_groundtruth(sub) -> None:
    """The ``groundtruth`` command."""
    p = sub.add_parser(
        "groundtruth",
        help="train a uniform sample of the search space, the baseline, the paper's genotype and the committed "
        "searches' picks as bench runs (the ground truth), then report how well each predictor ranks them",
    )
    _bench_arguments(p)
    p.add_argument("--sample", type=COUNT, default=100, help="distinct genotypes drawn uniformly (default 100)")
    p.add_argument("--sample-seed", type=SEED, default=0, dest="sample_seed", help="the sample's seed (default 0)")
    p.add_argument(
        "--report", action="store_true", help="only write the report from the records there are (trains nothing)"
    )
    p.add_argument("--command-line", help="the command the report names to regenerate it (default: this one)")
    p.add_argument(
        "--machine-check",
        type=COUNT,
        dest="machine_check",
        help="train the baseline, the paper's genotype and the first N sampled genotypes again on this kind of "
        "machine, into RESULTS/ground_truth/machines/<kind>/ (the report measures the machine's effect from them)",
    )
    p.set_defaults(run=_cmd_groundtruth)


def _add_tables(sub) -> None:
    """The ``tables`` command."""
    p = sub.add_parser("tables", help="regenerate the tables and plots from the run records")
    p.add_argument("--results", default="results")
    p.add_argument("--readme", metavar="FILE", help="also write the headline table between FILE's headline markers")
    p.set_defaults(run=_cmd_tables)


def _add_rekey(sub) -> None:
    """The ``rekey`` command."""
    p = sub.add_parser("rekey", help="file every record under the identities its contents give now")
    p.add_argument("--results", default="results")
    p.add_argument(
        "--source",
        action="append",
        metavar="DATASET=PATH",
        help="for records without a dataset digest: the source they were prepared from, with data prepare's defaults",
    )
    p.set_defaults(run=_cmd_rekey)


def _add_eval(sub) -> None:
    """The ``eval`` command."""
    p = sub.add_parser("eval", help="kNN, linear probe and collapse metrics of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--floor", action="store_true", help="also the kNN of the same backbone untrained")
    p.set_defaults(run=_cmd_eval)


def _add_doctor(sub) -> None:
    """The ``doctor`` command."""
    p = sub.add_parser("doctor", help="a short end-to-end self-check on one device; non-zero exit on any failure")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. data.root=... train.compile=true")
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu or cuda")
    p.add_argument("--steps", type=COUNT, default=5, help="timed steps per check after one warm-up (default 5)")
    p.set_defaults(run=_cmd_doctor)


def _add_data(sub) -> None:
    """The ``data`` command."""
    p = sub.add_parser("data", help="prepare datasets as FFCV .beton files")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    p = data_sub.add_parser("prepare", help="write DATASET's .beton files under the data root")
    p.add_argument("dataset", help="a datasets entry: cifar10, cifar100, imagenet, imagenette, imagefolder")
    p.add_argument("--source", help="an ImageFolder tree, a .tar/.tar.gz of one, or torchvision's CIFAR folder")
    p.add_argument("--download", action="store_true", help="download through torchvision (CIFAR only)")
    p.add_argument("--root", help="data root (default: $NASIAM_DATA, else ./data)")
    p.add_argument("--workers", type=COUNT, default=2, help="processes that decode and write (default 2)")
    p.add_argument("--max-resolution", type=COUNT, default=256, help="longest side kept for large images (256)")
    p.add_argument("--force", action="store_true", help="rewrite even when the files are up to date")
    p.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        metavar="FRACTION",
        help="without a test split: the stratified fraction of train held out for evaluation (default 0.1)",
    )
    p.set_defaults(run=_cmd_data_prepare)


COMMANDS = (
    _add_list,
    _add_show,
    _add_pretrain,
    _add_search,
    _add_searches,
    _add_bench,
    _add_groundtruth,
    _add_tables,
    _add_rekey,
    _add_eval,
    _add_doctor,
    _add_data,
)  # in the order --help lists them


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="NASiam benchmark suite: searched vs. standard SSL heads.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    parser.add_argument(
        "--catalogue",
        metavar="DIR",
        action="append",
        help="a folder of your own profiles/, recipes/, experiments/, genotypes/, looked in before the shipped "
        "catalogue (repeatable; also $NASIAM_CATALOGUE)",
    )
    for add in COMMANDS:
        add(sub)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; ``key=value`` overrides may also follow the options (``bench moco --seeds 3 train.epochs=2``),
    which argparse alone refuses once an option has ended the positionals."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(a.startswith("-") or "=" not in a for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse(argv)
        if args.catalogue:  # before any spec is read; the processes it starts inherit it
            given = [str(Path(d).resolve()) for d in args.catalogue]
            os.environ[catalogue.ENV] = os.pathsep.join([*given, *filter(None, [os.environ.get(catalogue.ENV)])])
        return args.run(args)
    except NasiamBenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
