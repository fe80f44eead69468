"""Prepare a subject (a registered id or a video path) and open a prepared one.

``prepare`` runs the steps (``bench.datasets.preprocess.core.run_steps``) and records where each step's folder is
in ``$BENCH_HOME/prepared/<id>.json``, so ``bench inspect`` and the methods find the latest preparation without
redoing anything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench import home
from bench.contracts import BenchError, Split, Subject
from bench.datasets import preprocess
from bench.datasets.preprocess.core import StepOutcome, SubjectSource, dependants, run_steps


def resolve_source(target: str, name: str | None = None) -> SubjectSource:
    """A registered subject id, or a path to a video (named ``name`` or after the file)."""
    from bench import registry
    from bench.datasets.prepare import subject_video
    from bench.hashing import sha256_file

    path = Path(target)
    if target not in registry.subjects.all() and path.is_file():
        return SubjectSource(id=name or path.stem, video=path.resolve(), sha256=sha256_file(path))
    try:
        spec = registry.subjects.get(target)  # registered, or prepared earlier from the user's video
    except BenchError:
        raise BenchError(f"{target!r} is neither a subject (bench list subjects, or one you prepared) nor a video file") from None
    video, sha = subject_video(spec)
    return SubjectSource(id=name or spec.id, video=video, sha256=sha)


@dataclass(frozen=True)
class PreparedSubject:
    """The step folders of one preparation, with loaders for what methods and plots read."""

    id: str
    video: Path
    sha256: str
    folders: Mapping[str, Path]

    @classmethod
    def of(cls, subject: Subject) -> PreparedSubject:
        """The steps a run prepared for its method (``Subject.steps``), read without preparing anything."""
        return cls(subject.id, subject.video_path, next(iter(subject.sources.values())), subject.steps)

    def folder(self, step: str) -> Path:
        if step not in self.folders:
            raise BenchError(f"subject {self.id!r} has no finished {step!r} step: run `bench prepare {self.id} --steps {step}`")
        return self.folders[step]

    def summary(self, step: str) -> dict[str, Any]:
        return json.loads((self.folder(step) / "stage.json").read_text())["outputs"]

    def array(self, step: str, name: str) -> np.ndarray:
        return np.load(self.folder(step) / name, mmap_mode="r")

    def frames(self) -> np.ndarray:
        from bench import media

        return media.open_frames(self.folder("ingest") / "frames")

    def audio(self) -> np.ndarray:
        """The whole clip's speech, 16 kHz mono float32, as ingest wrote it."""
        from bench import media

        return media.read_wav(self.folder("ingest") / "audio.wav")

    @property
    def n_frames(self) -> int:
        return int(self.summary("ingest")["n_frames"])

    @property
    def split(self) -> Split:
        return Split.for_frames(self.n_frames)

    def pose(self, stabilised: bool = True) -> dict[str, np.ndarray]:
        """The bundle-adjusted head poses (or the raw per-frame tracker fit)."""
        return dict(np.load(self.folder("bundle" if stabilised else "pose") / "pose.npz"))

    @property
    def synctalk_dir(self) -> Path:
        return self.folder("export") / "synctalk"


def prepare(
    target: str,
    name: str | None = None,
    steps: Iterable[str] | None = None,
    force: bool = False,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    on_step: Callable[[StepOutcome], None] | None = None,
) -> PreparedSubject:
    """Run the wanted steps (all by default) and what they need; ``force`` redoes the wanted steps and their
    dependants."""
    source = resolve_source(target, name)
    available = preprocess.steps()
    wanted = list(steps) if steps else list(available)
    outcomes = run_steps(source, available, wanted, options, force=wanted if force else (), progress=progress, on_step=on_step)
    folders = {name: outcome.folder for name, outcome in outcomes.items()}
    pointer = home.prepared_pointer(source.id)
    if pointer.is_file():
        previous = json.loads(pointer.read_text())
        if previous.get("sha256") == source.sha256:
            # keep earlier results of steps not run now, unless they were made from a step whose result changed
            earlier = {k: Path(v) for k, v in previous["folders"].items() if Path(v).is_dir()}
            changed = [k for k, folder in folders.items() if earlier.get(k) != folder]
            stale = dependants(available, changed)
            folders = {**{k: v for k, v in earlier.items() if k not in stale}, **folders}
    pointer.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "id": source.id,
        "video": str(source.video),
        "sha256": source.sha256,
        "folders": {k: str(v) for k, v in folders.items()},
        "updated": time.time(),
    }
    partial = pointer.with_suffix(".json.partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(pointer)
    return PreparedSubject(source.id, source.video, source.sha256, folders)


def open_prepared(subject_id: str) -> PreparedSubject:
    """The latest preparation of ``subject_id`` (nothing is run)."""
    pointer = home.prepared_pointer(subject_id)
    if not pointer.is_file():
        raise BenchError(f"subject {subject_id!r} is not prepared yet: run `bench prepare {subject_id}`")
    record = json.loads(pointer.read_text())
    folders = {k: Path(v) for k, v in record["folders"].items() if (Path(v) / "stage.json").is_file()}
    return PreparedSubject(record["id"], Path(record["video"]), record["sha256"], folders)
