"""Stage cache: each stage's output is a folder under ``$BENCH_HOME/stages/<stage>/<key>``, where ``key`` hashes
the stage's inputs and config. Work happens in a temporary sibling folder that is renamed into place only when
the stage finished, with ``stage.json`` (inputs, timing) written last; so an interrupted run (Ctrl-C, kill -9)
never leaves a half-written output and the next run resumes from the last finished stage.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench import home
from bench.hashing import sha256_json

MARKER = "stage.json"


def stage_key(stage: str, inputs: Mapping[str, Any]) -> str:
    return sha256_json({"stage": stage, "inputs": inputs})[:24]


def stage_path(stage: str, key: str) -> Path:
    return home.stages_dir() / stage / key


def is_done(stage: str, key: str) -> bool:
    return (stage_path(stage, key) / MARKER).is_file()


def record(stage: str, key: str) -> dict[str, Any]:
    return json.loads((stage_path(stage, key) / MARKER).read_text())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(stage_dir: Path, key: str) -> None:
    """Delete temporary folders of ``key`` left by processes that no longer run."""
    for partial in stage_dir.glob(f".{key}.*.partial"):
        pid = int(partial.name.split(".")[2])
        if not _pid_alive(pid):
            shutil.rmtree(partial, ignore_errors=True)


def ensure(stage: str, inputs: Mapping[str, Any], produce: Callable[[Path], Mapping[str, Any] | None]) -> tuple[Path, bool]:
    """Return ``(folder, reused)`` for this stage's output, running ``produce(tmp_folder)`` if not yet done.

    ``produce`` may return a small dict that is stored in ``stage.json`` under ``"outputs"``.
    """
    key = stage_key(stage, inputs)
    final = stage_path(stage, key)
    if (final / MARKER).is_file():
        return final, True
    stage_dir = final.parent
    stage_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale(stage_dir, key)
    partial = stage_dir / f".{key}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    started = time.time()
    try:
        outputs = produce(partial) or {}
        marker = {
            "stage": stage,
            "key": key,
            "inputs": inputs,
            "outputs": dict(outputs),
            "started": started,
            "seconds": round(time.time() - started, 3),
        }
        (partial / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True, default=str))
        try:
            os.rename(partial, final)
        except OSError:  # another process finished the same stage first: keep theirs
            if not (final / MARKER).is_file():
                raise
            shutil.rmtree(partial, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final, False
