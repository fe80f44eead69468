"""Where bench keeps its files: ``$BENCH_HOME`` (default ``$XDG_CACHE_HOME/bench`` or ``~/.cache/bench``).

One root for the asset cache, prepared subjects and audio, stage outputs and the results store.
"""

from __future__ import annotations

import os
from pathlib import Path


def bench_home() -> Path:
    if env := os.environ.get("BENCH_HOME"):
        return Path(env).expanduser().resolve()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (Path(cache) / "bench").resolve()


def asset_cache_dir() -> Path:
    return bench_home() / "assets"


def stages_dir() -> Path:
    return bench_home() / "stages"


def user_videos_dir() -> Path:
    """Where a user puts a registered subject's video that bench cannot download (``<id>.mp4``)."""
    return bench_home() / "videos"


def prepared_pointer(subject_id: str) -> Path:
    """The JSON that ``bench prepare`` writes: a subject's source video and its finished step folders."""
    return bench_home() / "prepared" / f"{subject_id}.json"


def results_store_path() -> Path:
    if env := os.environ.get("BENCH_RESULTS"):
        return Path(env).expanduser().resolve()
    return bench_home() / "results.sqlite"


def asset_mirrors() -> list[Path]:
    """Folders of pre-downloaded assets: ``BENCH_ASSET_MIRROR``, several separated by ``os.pathsep``."""
    env = os.environ.get("BENCH_ASSET_MIRROR", "")
    return [Path(part).expanduser().resolve() for part in env.split(os.pathsep) if part]


def offline() -> bool:
    """``BENCH_OFFLINE=1`` forbids downloads (tests, air-gapped machines)."""
    return os.environ.get("BENCH_OFFLINE", "").lower() in {"1", "true", "yes"}
