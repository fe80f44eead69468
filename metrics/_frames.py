"""Helpers shared by frame-wise metrics: batching and the frame-mean aggregate."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bench.contracts import BenchError, MetricValue


def batches(n_frames: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n_frames, batch_size):
        yield slice(start, min(start + batch_size, n_frames))


def frame_mean(per_frame: np.ndarray, **extras: object) -> MetricValue:
    """Mean over frames that could be scored (NaN marks a frame that could not); counts both."""
    valid = ~np.isnan(per_frame)
    aggregate = float(per_frame[valid].mean()) if valid.any() else float("nan")
    return MetricValue(
        aggregate=aggregate,
        per_frame=per_frame,
        extras={"frames": int(per_frame.size), "frames_unscored": int((~valid).sum()), **extras},
    )


def torch_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def unit_tensor(frames: np.ndarray, device: str):
    """uint8 (N, H, W, 3) frames as a float (N, 3, H, W) tensor in [0, 1] on ``device`` (copied: memmaps are read-only)."""
    import torch

    return torch.from_numpy(np.array(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0


def require_min_side(metric: str, frames: np.ndarray, min_side: int) -> None:
    height, width = frames.shape[1:3]
    if min(height, width) < min_side:
        raise BenchError(f"{metric} needs frames of at least {min_side}x{min_side}; these are {width}x{height}")
