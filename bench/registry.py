"""Registries of methods, metrics, subjects and driving audio.

Built-ins are spec entries discovered in bench's own subpackages (``SPECS`` in each metric file, in each
method folder's ``spec.py``, in ``bench.datasets.catalog``); third parties add entries through the entry-point
groups ``bench.methods``, ``bench.metrics``, ``bench.subjects`` and ``bench.audio``, each pointing to a spec or
a sequence of specs. Listing reads specs only: implementations load lazily from their ``"module:Class"`` string.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterable
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from bench import user_subjects
from bench.contracts import AudioSpec, BenchError, MethodSpec, MetricSpec, SubjectSpec

S = TypeVar("S")


def load_object(path: str) -> Any:
    """Import ``"package.module:Attr"`` and return the attribute."""
    module_name, _, attr = path.partition(":")
    if not attr:
        raise BenchError(f"implementation {path!r} is not of the form 'module:Attr'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise BenchError(f"cannot load {path!r}: {error}") from error


def _as_specs(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class Registry(Generic[S]):
    """Specs of one kind by id: built-ins first, then entry points; a duplicate id is an error."""

    def __init__(
        self, kind: str, listing: str, spec_type: type, builtins: Callable[[], Iterable[S]], key: str = "id",
        fallback: Callable[[str], S | None] | None = None,
    ):
        self.fallback = fallback  # looked up, uncached, for an id nobody registered
        self.kind = kind
        self.listing = listing  # `bench list <listing>`
        self.spec_type = spec_type
        self.group = f"bench.{listing}"
        self._builtins = builtins
        self._key = key
        self._specs: dict[str, S] | None = None

    def _load(self) -> dict[str, S]:
        specs: dict[str, S] = {}
        origins: dict[str, str] = {}

        def add(spec: Any, origin: str) -> None:
            if not isinstance(spec, self.spec_type):
                raise BenchError(f"{origin} gives {type(spec).__name__}, expected {self.spec_type.__name__}")
            spec_id = getattr(spec, self._key)
            if spec_id in specs:
                raise BenchError(f"{self.kind} {spec_id!r} is registered twice: by {origins[spec_id]} and {origin}")
            specs[spec_id], origins[spec_id] = spec, origin

        for spec in self._builtins():
            add(spec, "bench")
        for point in entry_points(group=self.group):
            origin = f"entry point {point.name!r} ({point.value}) of {point.dist.name if point.dist else '?'}"
            try:
                loaded = point.load()
            except Exception as error:  # a broken plug-in must not take bench down
                raise BenchError(f"cannot load {origin}: {error}") from error
            for spec in _as_specs(loaded):
                add(spec, origin)
        return specs

    def all(self) -> dict[str, S]:
        if self._specs is None:
            self._specs = self._load()
        return self._specs

    def get(self, spec_id: str) -> S:
        specs = self.all()
        if spec_id in specs:
            return specs[spec_id]
        folded = {k.lower(): k for k in specs}
        if spec_id.lower() in folded:
            return specs[folded[spec_id.lower()]]
        found = self.fallback(spec_id) if self.fallback else None
        if found is not None:
            return found
        close = difflib.get_close_matches(spec_id, list(specs), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise BenchError(f"unknown {self.kind} {spec_id!r}{hint} (`bench list {self.listing}` shows all)")

    def reset(self) -> None:
        """Forget loaded specs (tests that install plug-ins call this)."""
        self._specs = None


def _package_specs(package: str, submodule: str | None) -> Iterable[Any]:
    """``SPECS`` of every module (``submodule=None``) or every subpackage's ``submodule`` in ``package``; a subpackage
    without that submodule is not an entry (the NeRF engine under ``methods/`` is shared parts, not a method)."""
    root = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        if submodule is None and not info.ispkg:
            yield from importlib.import_module(f"{package}.{info.name}").SPECS
        elif submodule is not None and info.ispkg and importlib.util.find_spec(f"{package}.{info.name}.{submodule}"):
            yield from importlib.import_module(f"{package}.{info.name}.{submodule}").SPECS


@cache
def _catalog() -> Any:
    return importlib.import_module("bench.datasets.catalog")


methods: Registry[MethodSpec] = Registry(
    "method", "methods", MethodSpec, lambda: _package_specs("bench.methods", "spec")
)
metrics: Registry[MetricSpec] = Registry(
    "metric", "metrics", MetricSpec, lambda: _package_specs("bench.metrics", None), key="variant"
)
subjects: Registry[SubjectSpec] = Registry(
    "subject", "subjects", SubjectSpec, lambda: _catalog().SUBJECTS, fallback=lambda subject_id: user_subjects.user_subject(subject_id)
)
audio: Registry[AudioSpec] = Registry("audio", "audio", AudioSpec, lambda: _catalog().AUDIO)

ALL = {r.listing: r for r in (methods, metrics, subjects, audio)}


def select_metrics(tokens: Iterable[str] | None) -> list[MetricSpec]:
    """Metric specs for ``--metrics``: a variant id selects itself, a family id all its variants (``lse`` also
    selects the families ``lse_c`` and ``lse_d``), None/'all' all."""
    specs = metrics.all()
    tokens = [t.strip() for t in (tokens or []) if t.strip()]
    if not tokens or tokens == ["all"]:
        return list(specs.values())
    chosen: dict[str, MetricSpec] = {}
    for token in tokens:
        key = token.lower()
        family = [s for s in specs.values() if s.id.lower() == key] or [
            s for s in specs.values() if s.id.lower().startswith(f"{key}_")
        ]
        for spec in family or [metrics.get(token)]:
            chosen[spec.variant] = spec
    return list(chosen.values())
