"""What a result *is*: one function, ``identity``, hashes every resolved value that can change a result's numbers,
and nothing that cannot (paths, labels, progress bars, worker counts). Run folders, record names, the search cache,
every resume check and every table's grouping use it.

The identities, each the hash of the parts it names:

``run``         an experiment, the rows of a table: the resolved spec but the seeds (a head that is not searched
                without the search's settings), the genotype file's *ops* for ``head = genotype:FILE`` (not its
                path; ``head = ops:...`` with the same ops is the same run), and the prepared dataset's digest
                (source digest and writer options).
``state``       one run of an experiment: its ``run`` identity, the seed and the ops of its heads (a re-searched
                genotype is another state). Checkpoints and records carry it; nothing resumes or is reused under
                another.
``search``      a search: the spec without the head and the seeds, of ``[train]`` and ``[eval]`` only what the
                strategy reads (``SearchStrategy.reads``: the AMP flag, the random strategy's kNN), the dataset.
``search_state`` one search: its ``search`` identity and the seed.
``comparison``  what the heads of one comparison share (paired by seed): the spec without head, strategy, search
                and seeds, and the dataset.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from nasiam_bench.config.heads import HeadKind, trained_head
from nasiam_bench.config.spec import SearchSection, Spec, spec_from_dict
from nasiam_bench.core.registry import FRAMEWORKS, SEARCH_STRATEGIES
from nasiam_bench.data.prepare import data_root, read_meta
from nasiam_bench.models.heads.genotype import OPS_PREFIX, load_genotype, parse_ops_head

IDENTITY_VERSION = 2  # bump when what an identity covers changes: every id moves (see `nasiam-bench rekey`)
UNPREPARED = "unprepared"  # the dataset part of an identity before the dataset is prepared (no result exists)
KINDS = ("run", "state", "search", "search_state", "comparison")


def identity(
    kind: str,
    spec: Spec,
    seed: int | None = None,
    genotype: dict[str, list[str]] | None = None,
    *,
    dataset: str | None = None,
) -> str:
    """The 12-hex-digit identity of ``kind`` (one of ``KINDS``) for ``spec``; ``state`` and ``search_state`` need
    the ``seed``, ``state`` the ops of the run's heads (None: the framework's baseline heads). ``dataset``: the
    dataset digest a record holds, for identities computed from records (else the prepared dataset's)."""
    if kind not in KINDS:
        raise ValueError(f"identity kind {kind!r}; valid: {', '.join(KINDS)}")
    if kind in ("state", "search_state") and seed is None:
        raise ValueError(f"a {kind} identity needs the seed")
    dataset = dataset or dataset_digest(spec)
    parts: dict[str, Any] = {"version": IDENTITY_VERSION, "kind": kind, "dataset": dataset}
    if kind in ("run", "state"):
        parts.update(spec=_run_values(spec))
    if kind == "state":
        parts.update(run=identity("run", spec, dataset=dataset), seed=seed, genotype=genotype)
    if kind in ("search", "search_state"):
        parts.update(spec=_search_values(spec))
    if kind == "search_state":
        parts.update(search=identity("search", spec, dataset=dataset), seed=seed)
    if kind == "comparison":
        skip = ("experiment.head", "experiment.strategy", "search", "seeds")
        parts.update(spec=effective(spec).hashed_values(skip))
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def effective(spec: Spec) -> Spec:
    """The spec as the run executes it, in one canonical form, so that two specs that run alike hash alike:
    - an optional value given equal to what unset means is unset (``train.lr_steps = "step"``, ...);
    - a value nothing reads is its default: the alpha options under a strategy that learns no alpha, the
      augmented probe's options under the frozen probe, the search's layer counts of a head the framework does
      not search; a layer count equal to the framework's own is 0 (its way of saying "the paper's");
    - ``search.encoder_momentum`` equal to the framework's momentum, and ``search.stop_when_stable`` that cannot
      stop a search of ``search.epochs``, are unset;
    - the framework's own options are filled in with its defaults, ``head_width`` 1 unset.
    Records keep the spec as written; identities hash this."""
    changes: dict[str, Any] = {}
    strategy = (
        SEARCH_STRATEGIES.get(spec.experiment.strategy) if spec.experiment.strategy in SEARCH_STRATEGIES else None
    )
    gradient = getattr(strategy, "gradient", True)
    frozen = spec.eval.linear_protocol == "frozen"
    for section in ("search", "train", "eval"):
        for f in dataclasses.fields(getattr(spec, section)):
            key, value, meta = f"{section}.{f.name}", getattr(getattr(spec, section), f.name), f.metadata
            unread = (meta.get("read_by") == "gradient" and not gradient) or (
                meta.get("read_by") == "augmented probe" and frozen
            )
            if unread and value != f.default:
                changes[key] = f.default
            elif value is not None and meta.get("unset_means") is not None and value == meta["unset_means"]:
                changes[key] = None
    changes.update(_effective_search(spec, gradient))
    changes.update(_effective_framework(spec))
    return spec.replace(**changes) if changes else spec


def _effective_search(spec: Spec, gradient: bool) -> dict[str, Any]:
    s, changes = spec.search, {}
    framework = FRAMEWORKS.get(spec.experiment.framework)
    own = framework.search_cells(1, {"projector": 0, "predictor": 0}, spec.framework.given())
    for head, count in s.layers().items():
        if count and (head not in own or count == own[head].layers):
            changes[f"search.{head}_layers"] = 0
    options = framework.resolve_options(spec.framework.given())
    if s.encoder_momentum is not None and s.encoder_momentum == options.get("momentum"):
        changes["search.encoder_momentum"] = None
    if gradient and s.stop_when_stable is not None and s.stop_when_stable >= s.epochs:
        changes["search.stop_when_stable"] = None  # it needs more epochs than the search has: it never stops one
    return changes


def _effective_framework(spec: Spec) -> dict[str, Any]:
    framework = FRAMEWORKS.get(spec.experiment.framework)
    given = spec.framework.given()
    changes = {f"framework.{k}": v for k, v in framework.OPTIONS.items() if k not in given}
    for key, default in framework.COMMON_OPTIONS.items():
        if given.get(key) == default:
            changes[f"framework.{key}"] = None
    return changes


def _run_values(spec: Spec) -> dict[str, Any]:
    spec = effective(spec)
    if spec.experiment.head == "baseline":  # the framework's own heads: no searched layer shapes them
        spec = spec.replace(**{"search.projector_layers": 0, "search.predictor_layers": 0})
    e = spec.experiment
    skip: tuple[str, ...] = ()
    if e.head != "nasiam":  # baseline, paper and random runs do not depend on how a search would run
        layers = {"projector_layers", "predictor_layers"}  # they shape random heads too
        skip = (
            "experiment.strategy",
            *(f"search.{f.name}" for f in dataclasses.fields(SearchSection) if f.name not in layers),
        )
    values = spec.hashed_values(skip)
    if e.head.startswith("genotype:"):
        values["experiment"]["head"] = {"genotype": genotype_file_ops(e.head.removeprefix("genotype:"))}
    elif e.head.startswith(OPS_PREFIX):  # the same ops written out: the same run as their genotype file
        values["experiment"]["head"] = {"genotype": parse_ops_head(e.head)}
    return values


def _search_values(spec: Spec) -> dict[str, Any]:
    spec = effective(spec)
    reads = set(getattr(SEARCH_STRATEGIES.get(spec.experiment.strategy), "reads", ()))
    values = spec.hashed_values(("experiment.head", "seeds"))
    for section in ("train", "eval"):
        values[section] = {k: v for k, v in values[section].items() if f"{section}.{k}" in reads}
    return values


def genotype_file_ops(path: str | Path) -> dict[str, list[str]]:
    """The ops a genotype file holds (what a ``genotype:FILE`` run trains, whatever the file is called)."""
    return load_genotype(path).heads


def dataset_digest(spec: Spec) -> str:
    """The prepared dataset's digest: its source's digest and the writer's options (``meta.json``); ``unprepared``
    before it is prepared. The data root is a place, not a value: it is not part of the digest."""
    meta = data_root(spec.data.root or None) / spec.experiment.dataset / "meta.json"
    try:
        stat = meta.stat()
    except OSError:
        return UNPREPARED
    return _meta_digest(str(meta.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _meta_digest(path: str, mtime_ns: int, size: int) -> str:
    meta = read_meta(Path(path))
    return digest_of_source(meta["source_digest"], meta["writer"])


def digest_of_source(source_digest: str, writer: dict[str, Any]) -> str:
    """The dataset part of an identity, from what ``data prepare`` records (the source's digest, its options)."""
    blob = json.dumps({"source": source_digest, "writer": writer}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_id(spec: Spec, dataset: str | None = None) -> str:
    return identity("run", spec, dataset=dataset)


def search_id(spec: Spec, dataset: str | None = None) -> str:
    return identity("search", spec, dataset=dataset)


def comparison_id(spec: Spec, dataset: str | None = None) -> str:
    return identity("comparison", spec, dataset=dataset)


def record_identities(record: dict[str, Any]) -> dict[str, Any]:
    """The identities of a run record, computed anew from what it holds (its resolved spec, seed, genotype and
    dataset digest): what it should be filed and grouped under. A ``genotype:FILE`` record's file must exist."""
    spec = spec_from_dict(record["spec"], where=f"record {record.get('head')} {record.get('run_id')}")
    dataset, head = record["dataset_digest"], record["head"]
    run_spec = spec.replace(head=trained_head(head))
    ids = {
        "run_id": run_id(run_spec, dataset),
        "comparison_id": comparison_id(run_spec, dataset),
        "identity": identity("state", run_spec, record["seed"], record.get("genotype"), dataset=dataset),
    }
    if head != HeadKind.FLOOR:
        ids["search_id"] = search_id(run_spec, dataset)
    return ids
