"""Test helpers for preparation steps: fake finished upstream step folders and a StepContext over them."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench import media, stages
from bench.datasets.preprocess.core import StepContext, SubjectSource


def fake_step(root: Path, name: str, arrays: Mapping[str, np.ndarray] | None = None, summary: Mapping[str, Any] | None = None,
              frames: np.ndarray | None = None) -> Path:
    """A finished step folder holding ``arrays`` (saved as .npy) and, for ``ingest``, a frame file."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, array in (arrays or {}).items():
        np.save(folder / file, array)
    outputs = dict(summary or {})
    if frames is not None:
        media.write_frames(folder / "frames", frames)
        outputs.update(n_frames=len(frames), width=frames.shape[2], height=frames.shape[1])
    (folder / stages.MARKER).write_text(json.dumps({"outputs": outputs}))
    return folder


def context(root: Path, step: str, folders: Mapping[str, Path], options: Mapping[str, Any] | None = None) -> StepContext:
    """A StepContext for ``step`` writing into ``root/out/<step>`` with the given upstream folders."""
    spec = importlib.import_module(f"bench.datasets.preprocess.{step}").STEP
    out = root / "out" / step
    out.mkdir(parents=True, exist_ok=True)
    source = SubjectSource(id="test", video=root / "video.mp4", sha256="0" * 64)
    return StepContext(source, spec, out, {**spec.options, **(options or {})}, dict(folders), progress=False)
