"""Background: the static background plate ``bc.png`` (SyncTalk preprocessing step 4, AD-NeRF's algorithm).

Every ``every``-th frame (0, 20, 40, ... by default) is used. In each, every pixel gets its Euclidean distance
to the nearest non-background pixel (``scipy.ndimage.distance_transform_edt``; SyncTalk queries a KD-tree built on
the non-background pixels, which gives the same distances). Pixels whose largest distance over those frames
exceeds ``min_distance`` (5 px) are *observed*: they take their colour from the frame where the distance is
largest (the earliest such frame on ties). Every other pixel is *filled*: it copies the colour of the nearest
observed pixel. SyncTalk takes every 20th file of an unsorted directory listing; here the frames are in order.
A sampled frame labelled background everywhere counts as infinitely far from the person at every pixel.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="background",
    version="1",
    depends=("parsing",),
    impl="bench.datasets.preprocess.background:run",
    description="static background plate bc.png from the background pixels of every 20th frame",
    options={"every": 20, "min_distance": 5.0},
)


def plate(
    frames: np.ndarray, labels: np.ndarray, every: int = 20, min_distance: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """(plate (H, W, 3) uint8, observed (H, W) bool) from frames (N, H, W, 3) and labels (N, H, W; 0 = background)."""
    from scipy.ndimage import distance_transform_edt

    sampled = range(0, len(frames), max(1, every))
    height, width = labels.shape[1:3]
    largest = np.full((height, width), -1.0)
    source = np.zeros((height, width), np.int64)
    for index in sampled:
        background = np.asarray(labels[index]) == 0
        if background.all():
            distance = np.full((height, width), np.inf)
        else:
            distance = distance_transform_edt(background)
        further = distance > largest
        largest[further] = distance[further]
        source[further] = index
    observed = largest > min_distance
    if not observed.any():
        raise BenchError(
            f"no pixel lies more than {min_distance} px from the person in any of the {len(sampled)} sampled frames; "
            "the background plate needs a visible background (check the parsing step's labels)"
        )
    result = np.zeros((height, width, 3), np.uint8)
    for index in np.unique(source[observed]):
        chosen = observed & (source == index)
        result[chosen] = np.asarray(frames[index])[chosen]
    _, (rows, columns) = distance_transform_edt(~observed, return_indices=True)
    return result[rows, columns], observed


def run(ctx: StepContext) -> dict[str, Any]:
    import cv2

    started = time.time()
    every = int(ctx.options["every"])
    result, observed = plate(ctx.frames(), ctx.load("parsing", "labels.npy"), every, float(ctx.options["min_distance"]))
    cv2.imwrite(str(ctx.out / "bc.png"), result[..., ::-1])
    return {
        "sampled_frames": len(range(0, ctx.n_frames, max(1, every))),
        "observed_fraction": round(float(observed.mean()), 4),
        "filled_fraction": round(float(1 - observed.mean()), 4),
        "seconds": round(time.time() - started, 2),
    }
