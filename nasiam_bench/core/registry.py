"""One generic string-keyed registry, used by every catalogue of the suite.

Entries come from two places: modules of this package that register with a decorator when imported, and
installed third-party distributions that declare an entry point in the group ``nasiam_bench.<registry name>``.
Both are loaded lazily, on the first lookup, so importing a registry costs nothing and a plugin needs no edit here.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import threading
import types
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class NasiamBenchError(Exception):
    """Base of the errors a user can cause with bad input; the CLI prints them on one line and exits 2."""


class UnknownEntryError(NasiamBenchError, KeyError):
    """A registry lookup with a key that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class DuplicateEntryError(NasiamBenchError, ValueError):
    """Two entries registered under one name."""


class Registry(Generic[T]):
    """A named mapping from string keys to builders.

    ``modules`` are the in-tree modules whose import registers the built-in entries; they and the entry points of
    the group ``nasiam_bench.<name>`` are imported on the first lookup, listing or membership test.
    """

    def __init__(self, name: str, modules: tuple[str, ...] = (), group: str | None = None, doc: str = "") -> None:
        self.name, self.doc = name, doc
        self.group = group or f"nasiam_bench.{name}"
        self._modules = modules
        self._entries: dict[str, T] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def register(self, name: str | Callable | None = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` or ``@REG.register()``/``@REG.register`` (name = ``__name__``)."""
        if callable(name):  # used bare: @REG.register
            return self.register(None)(name)

        def decorate(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not isinstance(key, str) or not key:
                raise DuplicateEntryError(f"{self.name}: an entry needs a non-empty string name, got {key!r}")
            self.add(key, obj)
            return obj

        return decorate

    def add(self, key: str, obj: T) -> None:
        """Register ``obj`` under ``key``; a name already taken raises."""
        with self._lock:
            if key in self._entries and self._entries[key] is not obj:
                raise DuplicateEntryError(
                    f"{self.name}: {key!r} is already registered (by {_origin(self._entries[key])}); "
                    f"pick another name for {_origin(obj)}"
                )
            self._entries[key] = obj

    def get(self, key: str) -> T:
        """The entry named ``key``; an unknown key raises with the close matches and the valid keys."""
        self._load()
        try:
            return self._entries[key]
        except KeyError:
            raise UnknownEntryError(self.unknown_message(key)) from None

    def unknown_message(self, key: object) -> str:
        self._load()
        valid = sorted(self._entries)
        close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(valid) if valid else "(none registered)"
        if len(valid) > 40:
            listing = ", ".join(valid[:40]) + f", ... ({len(valid)} in all; `nasiam-bench list {self.name}`)"
        return f"unknown {self.name} entry {key!r}{hint} Valid: {listing}"

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching an fnmatch wildcard (``"res*"``)."""
        self._load()
        return sorted(k for k in self._entries if fnmatch.fnmatchcase(k, pattern))

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self._entries)} entries)"

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # set first: the imported modules call register(), which must not recurse here
            try:
                for module in self._modules:
                    importlib.import_module(module)
                for ep in entry_points(group=self.group):
                    self._load_entry_point(ep)
            except BaseException:
                self._loaded = False
                raise

    def _load_entry_point(self, ep: EntryPoint) -> None:
        try:
            obj = ep.load()
        except Exception as exc:
            dist = ep.dist.name if ep.dist else "?"
            raise NasiamBenchError(
                f"{self.name}: entry point {ep.name!r} = {ep.value!r} (group {self.group}, distribution {dist}) "
                f"failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        # An entry point may name a module (its import registers with the decorator) or the object itself.
        if not isinstance(obj, types.ModuleType):
            self.add(ep.name, obj)


def _origin(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


# The suite's registries. Each names the in-tree modules that fill it.
BACKBONES: Registry = Registry("backbones", ("nasiam_bench.models.backbones",), doc="timm's ResNets, by timm's name")
ACTIVATIONS: Registry = Registry(
    "activations", ("nasiam_bench.models.activations",), doc="the candidate ops of the searched heads' layers"
)
FRAMEWORKS: Registry = Registry(
    "frameworks",
    (
        "nasiam_bench.models.frameworks.simsiam",
        "nasiam_bench.models.frameworks.moco",
        "nasiam_bench.models.frameworks.simclr",
        "nasiam_bench.models.frameworks.byol",
    ),
    doc="SSL frameworks: their standard heads, the layout of their searched heads, their loss",
)
SEARCH_STRATEGIES: Registry = Registry(
    "search_strategies",
    (
        "nasiam_bench.search.darts",
        "nasiam_bench.search.darts_single",
        "nasiam_bench.search.beta_darts",
        "nasiam_bench.search.gdas",
        "nasiam_bench.search.random",
        "nasiam_bench.search.none",
    ),
    doc="how the heads are searched",
)
DATASETS: Registry = Registry("datasets", ("nasiam_bench.data.datasets",), doc="what data prepare reads")
QUERY_STRATEGIES: Registry = Registry(
    "query_strategies",
    ("nasiam_bench.groundtruth.queries",),
    doc="searches run against a ground-truth table, at no training cost",
)

REGISTRIES: dict[str, Registry] = {
    r.name: r for r in (BACKBONES, ACTIVATIONS, FRAMEWORKS, SEARCH_STRATEGIES, DATASETS, QUERY_STRATEGIES)
}


def registry(name: str) -> Registry:
    """A registry by its name, with a did-you-mean error for a bad one."""
    try:
        return REGISTRIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(REGISTRIES), n=2)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownEntryError(f"unknown registry {name!r}{hint} Valid: {', '.join(REGISTRIES)}") from None
