"""Helpers shared by frame-wise metrics: batching and the frame-mean aggregate."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bench.contracts import MetricValue


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
