"""What produced a result: bench version and git commit, package versions, machine, decoder."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import bench

PACKAGES = ("numpy", "scipy", "opencv-python", "av", "pillow", "torch", "torchvision", "piq", "pooch", "pandas")


@cache
def git_commit() -> dict[str, Any] | None:
    """Commit of the bench checkout this code runs from (None for an installed wheel)."""
    source = Path(bench.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


@cache
def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def module_versions(modules: tuple[str, ...]) -> dict[str, str]:
    """Distribution versions of the importable modules a metric requires (e.g. 'dlib' -> dlib-bin 20.0.1)."""
    owners = metadata.packages_distributions()
    versions = {}
    for module in modules:
        for dist in owners.get(module.split(".")[0], []):
            versions[dist] = metadata.version(dist)
    return versions


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    torch = sys.modules.get("torch")  # never import torch just to describe the machine
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def snapshot() -> dict[str, Any]:
    return {
        "bench_version": bench.__version__,
        "git": git_commit(),
        "packages": package_versions(),
        "machine": machine(),
    }
