"""The step contract of subject preparation and the orchestrator that runs the steps.

A step is plain data (``Step``): a name, a version, the steps it reads, the ``"module:function"`` that produces
it and its default options. Each step's output is one stage folder (``bench.stages``) keyed by the subject's
source sha256, the step's version and options and the keys of the steps it reads; so a finished step is never
redone, an interrupted one leaves nothing behind, and changing one step's options redoes that step and what reads
it, nothing else. ``force`` redoes chosen steps (and their dependants) in place.

A step function receives a ``StepContext`` and writes its files into ``ctx.out``; it returns a small JSON-able
summary that is stored in the stage's ``stage.json`` and shown by ``bench inspect``.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import stages
from bench.contracts import BenchError
from bench.hashing import options_fingerprint

STAGE_PREFIX = "prep-"


@dataclass(frozen=True)
class Step:
    name: str
    version: str
    depends: tuple[str, ...]
    impl: str  # "module:function" taking a StepContext and returning a JSON-able summary dict
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)  # defaults; users override with step.key=value


@dataclass(frozen=True)
class SubjectSource:
    """The video a subject is prepared from."""

    id: str
    video: Path
    sha256: str


@dataclass
class StepContext:
    """What a step function gets: where to write, its options, and read access to every upstream step."""

    subject: SubjectSource
    step: Step
    out: Path
    options: Mapping[str, Any]
    folders: Mapping[str, Path]  # finished folder of every (transitive) upstream step, by step name
    progress: bool = True

    def folder(self, step: str) -> Path:
        try:
            return self.folders[step]
        except KeyError:
            raise KeyError(f"step {self.step.name!r} reads {step!r} but does not declare it in depends") from None

    def summary(self, step: str) -> dict[str, Any]:
        """The summary dict an upstream step returned."""
        return json.loads((self.folder(step) / stages.MARKER).read_text())["outputs"]

    def frames(self) -> np.ndarray:
        """All frames, (N, H, W, 3) uint8 RGB at 25 fps, after ingest's crop/resize (a read-only memory map)."""
        from bench import media

        return media.open_frames(self.folder("ingest") / "frames")

    def load(self, step: str, name: str) -> np.ndarray:
        """An upstream ``.npy`` array, memory-mapped read-only."""
        return np.load(self.folder(step) / name, mmap_mode="r")

    @property
    def n_frames(self) -> int:
        return int(self.summary("ingest")["n_frames"])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the prepared frames."""
        summary = self.summary("ingest")
        return int(summary["width"]), int(summary["height"])


def load_impl(impl: str) -> Callable[[StepContext], Mapping[str, Any]]:
    module, _, name = impl.partition(":")
    return getattr(importlib.import_module(module), name)


def closure(steps: Mapping[str, Step], names: Iterable[str]) -> list[str]:
    """``names`` and everything they depend on, in an order where every step follows its dependencies."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise BenchError(f"preparation steps depend on each other in a cycle: {' -> '.join((*chain, name))}")
        if name not in steps:
            raise BenchError(f"unknown preparation step {name!r}; steps are: {', '.join(steps)}")
        for dependency in steps[name].depends:
            visit(dependency, (*chain, name))
        order.append(name)

    for name in names:
        visit(name, ())
    return order


def dependants(steps: Mapping[str, Step], names: Iterable[str]) -> set[str]:
    """``names`` and every step that reads them, directly or not."""
    found = set(names)
    changed = True
    while changed:
        changed = False
        for step in steps.values():
            if step.name not in found and found.intersection(step.depends):
                found.add(step.name)
                changed = True
    return found


def merged_options(step: Step, overrides: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(overrides) - set(step.options)
    if unknown:
        raise BenchError(
            f"step {step.name!r} has no option {sorted(unknown)[0]!r}; its options are: {', '.join(step.options) or 'none'}"
        )
    return {**step.options, **overrides}


@dataclass(frozen=True)
class StepOutcome:
    name: str
    folder: Path
    reused: bool
    seconds: float  # time the step took when it was produced (from its stage.json)
    summary: Mapping[str, Any]


def plan_steps(
    source: SubjectSource, steps: Mapping[str, Step], order: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each step's (stage key, key inputs), computed without running anything; ``order`` lists every step's
    dependencies before it (``closure``)."""
    planned: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in order:
        step = steps[name]
        inputs = {
            "subject": source.id,
            "video_sha256": source.sha256,
            "step": name,
            "version": step.version,
            "options": options_fingerprint(merged_options(step, options.get(name, {}))),  # a file counts by content
            "upstream": {dependency: planned[dependency][0] for dependency in step.depends},
        }
        planned[name] = (stages.stage_key(STAGE_PREFIX + name, inputs), inputs)
    return planned


def run_steps(
    source: SubjectSource,
    steps: Mapping[str, Step],
    wanted: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    force: Iterable[str] = (),
    progress: bool = True,
    on_step: Callable[[StepOutcome], None] | None = None,
) -> dict[str, StepOutcome]:
    """Run ``wanted`` steps and whatever they need, reusing finished ones; returns every step's outcome."""
    options = options or {}
    for name in options:
        if name not in steps:
            raise BenchError(f"options given for unknown preparation step {name!r}; steps are: {', '.join(steps)}")
    redo = dependants(steps, force) if force else set()
    order = closure(steps, [*wanted, *sorted(redo)])  # a forced step's dependants are redone too, never left stale
    planned = plan_steps(source, steps, order, options)
    folders: dict[str, Path] = {}
    outcomes: dict[str, StepOutcome] = {}
    for name in order:
        step = steps[name]
        step_options = merged_options(step, options.get(name, {}))
        stage = STAGE_PREFIX + name
        key, inputs = planned[name]
        if name in redo:
            _discard(stages.stage_path(stage, key))
        upstream = {other: folders[other] for other in closure(steps, step.depends)}

        def produce(out: Path, step: Step = step, step_options: dict = step_options, upstream: dict = upstream):
            context = StepContext(source, step, out, step_options, upstream, progress)
            return load_impl(step.impl)(context)

        started = time.time()
        folder, reused = stages.ensure(stage, inputs, produce)
        record = stages.record(stage, key)
        folders[name] = folder
        outcome = StepOutcome(
            name, folder, reused, float(record.get("seconds", time.time() - started)), record.get("outputs", {})
        )
        outcomes[name] = outcome
        if on_step:
            on_step(outcome)
    return outcomes


def _discard(folder: Path) -> None:
    """Remove a finished step folder so that it is produced again (moved aside first, so the removal is atomic)."""
    if folder.is_dir():
        trash = folder.with_name(f".{folder.name}.{time.time_ns()}.discarded")
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def parse_step_options(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["landmarks.backend=dlib", "pose.focal_min=800"]`` -> ``{"landmarks": {"backend": "dlib"}, ...}``."""
    parsed: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        step, dot, option = key.partition(".")
        if not sep or not dot or not step or not option:
            raise BenchError(f"{pair!r}: expected STEP.OPTION=VALUE, e.g. landmarks.backend=dlib")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parsed.setdefault(step, {})[option] = value
    return parsed
