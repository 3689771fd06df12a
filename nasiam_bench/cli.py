"""The ``nasiam-bench`` command line. Bad input exits 2 with one line on stderr, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nasiam_bench.registry import REGISTRIES, NasiamBenchError, registry

PROG = "nasiam-bench"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        raise NasiamBenchError(f"{message} (see `{self.prog} --help`)")


def _cmd_list(args: argparse.Namespace) -> int:
    if args.registry is None:
        for name, reg in REGISTRIES.items():
            print(f"{name:<18} {len(reg):>4} entries")
        return 0
    names = registry(args.registry).list(args.pattern)
    if not names:
        raise NasiamBenchError(f"no {args.registry} entry matches {args.pattern!r}")
    print("\n".join(names))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from nasiam_bench.spec import load_spec, spec_to_toml

    print(spec_to_toml(load_spec(args.spec, args.overrides)), end="")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from nasiam_bench.data.prepare import prepare

    if args.source is not None and args.download:
        raise NasiamBenchError("data prepare: give --source PATH or --download, not both")
    prepare(
        args.dataset,
        args.source,
        download=args.download,
        root=args.root,
        workers=args.workers,
        max_resolution=args.max_resolution,
        force=args.force,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="NASiam benchmark suite: searched vs. standard SSL heads.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list registries, or the entries of one (fnmatch PATTERN, e.g. 'res*')")
    p.add_argument("registry", nargs="?", help=f"one of: {', '.join(REGISTRIES)}")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(run=_cmd_list)

    p = sub.add_parser("show", help="print an experiment spec resolved with its profile and overrides, as TOML")
    p.add_argument("spec", help="a TOML path, or a name in registry/experiments/")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. train.epochs=5 profile=smoke")
    p.set_defaults(run=_cmd_show)

    p = sub.add_parser("data", help="prepare datasets as FFCV .beton files")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    p = data_sub.add_parser("prepare", help="write DATASET's .beton files under the data root")
    p.add_argument("dataset", help="a datasets entry: cifar10, cifar100, imagenet, imagenette, imagefolder")
    p.add_argument("--source", help="an ImageFolder tree, a .tar/.tar.gz of one, or torchvision's CIFAR folder")
    p.add_argument("--download", action="store_true", help="download through torchvision (CIFAR only)")
    p.add_argument("--root", help="data root (default: $NASIAM_DATA, else ./data)")
    p.add_argument("--workers", type=int, default=2, help="processes that decode and write (default 2)")
    p.add_argument("--max-resolution", type=int, default=256, help="longest side kept for large images (256)")
    p.add_argument("--force", action="store_true", help="rewrite even when the files are up to date")
    p.set_defaults(run=_cmd_data_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except NasiamBenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
