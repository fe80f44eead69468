"""Preparation step ``capture``: the Facial Animation Capturer as SyncTalk's ``blendshape_capture/main.py`` does it.

MediaPipe's 52 scores (from the ``landmarks`` step) lose ``_neutral`` and gain a zero ``tongueOut``, which gives
the 52 ARKit blendshapes in alphabetical order (EmoTalk's layout); bench reorders by name, which equals
SyncTalk's drop-first-append-zero because MediaPipe's remaining 51 names are already alphabetical. ``bs_raw.npy``
is that; ``bs.npy`` smooths each channel over time with a Savitzky-Golay filter (window 5, order 3, SciPy's
default ``interp`` ends); ``upper7.npy`` holds the columns SyncTalk's default ``--bs_area upper`` reads.

With option ``openface_csv`` (an OpenFace 2.x ``FeatureExtraction`` CSV of the same video), ``au45.npy`` is ER-NeRF's
eye feature: ``AU45_r`` clipped to [0, 2] and halved, frame i taken from the CSV row whose ``frame`` is i + 1
(OpenFace numbers frames from 1, so this equals ER-NeRF's row-by-index read).

The summary records the correlation between MediaPipe's blink (mean of both eyes) and the iBUG-68 eye aspect
ratio over the frames where both were found: a sanity check that should be clearly negative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.datasets.preprocess.core import Step, StepContext
from bench.datasets.preprocess.mediapipe_face import MEDIAPIPE_BLENDSHAPES

STEP = Step(
    name="capture",
    version="1",
    depends=("landmarks",),
    impl="bench.datasets.preprocess.capture:run",
    description="52 ARKit blendshapes from MediaPipe, Savitzky-Golay smoothed as SyncTalk does (bs.npy), the 7 upper-"
    "face columns, and OpenFace AU45 when a CSV is given",
    options={"openface_csv": ""},
)

# Apple ARKit's 52 blendshape locations, alphabetically (the layout EmoTalk and SyncTalk's bs.npy use): MediaPipe
# reports the same names in the same order after its ``_neutral``, and has no tongueOut.
ARKIT_BLENDSHAPES = (*MEDIAPIPE_BLENDSHAPES[1:], "tongueOut")
UPPER7 = ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "eyeBlinkLeft",
          "eyeBlinkRight")  # fmt: skip
SAVGOL_WINDOW = 5
SAVGOL_ORDER = 3
RIGHT_EYE = slice(36, 42)  # iBUG-68: the subject's right eye, points 36-41; left eye 42-47
LEFT_EYE = slice(42, 48)


def to_arkit(mediapipe_scores: np.ndarray) -> np.ndarray:
    """(N, 52) MediaPipe-order scores -> (N, 52) ARKit-alphabetical, by name; tongueOut (not estimated) is 0."""
    source = {name: index for index, name in enumerate(MEDIAPIPE_BLENDSHAPES)}
    arkit = np.zeros((len(mediapipe_scores), len(ARKIT_BLENDSHAPES)), np.float32)
    for column, name in enumerate(ARKIT_BLENDSHAPES):
        if name in source:
            arkit[:, column] = mediapipe_scores[:, source[name]]
    return arkit


def eye_aspect_ratio(lms68: np.ndarray) -> np.ndarray:
    """(N,) mean over both eyes of (|p2-p6| + |p3-p5|) / (2 |p1-p4|) on iBUG-68 eye points 36-47."""

    def ratio(eye: np.ndarray) -> np.ndarray:
        vertical = np.linalg.norm(eye[:, 1] - eye[:, 5], axis=1) + np.linalg.norm(eye[:, 2] - eye[:, 4], axis=1)
        return vertical / (2 * np.linalg.norm(eye[:, 0] - eye[:, 3], axis=1))

    points = np.asarray(lms68, np.float64)
    return (ratio(points[:, RIGHT_EYE]) + ratio(points[:, LEFT_EYE])) / 2


def read_au45(csv_path: Path, n_frames: int) -> tuple[np.ndarray, dict[str, Any]]:
    """ER-NeRF's eye feature per frame from an OpenFace CSV: AU45_r clipped to [0, 2] / 2, frame i <- CSV frame i+1."""
    import pandas as pd

    from bench.hashing import sha256_file

    if not csv_path.is_file():
        raise BenchError(f"capture.openface_csv: {csv_path} does not exist; give the OpenFace FeatureExtraction CSV")
    table = pd.read_csv(csv_path, skipinitialspace=True)
    table.columns = [str(column).strip() for column in table.columns]
    for column in ("frame", "AU45_r"):
        if column not in table.columns:
            raise BenchError(f"{csv_path}: no column {column!r}; expected an OpenFace FeatureExtraction CSV")
    frames = table["frame"].to_numpy(np.int64) - 1
    numbers, counts = np.unique(frames, return_counts=True)
    repeated = numbers[counts > 1]
    if len(repeated):
        raise BenchError(
            f"{csv_path}: several rows for frame {int(repeated[0]) + 1} (and {len(repeated) - 1} more), i.e. several "
            "faces; use OpenFace FeatureExtraction, which tracks one face"
        )
    absent = np.setdiff1d(np.arange(n_frames), frames)
    if len(absent):
        raise BenchError(
            f"{csv_path}: no row for OpenFace frames {_ranges(absent + 1)} (clip frames {_ranges(absent)}) of this "
            f"{n_frames}-frame clip; run OpenFace FeatureExtraction on the subject's video"
        )
    by_frame = pd.Series(table["AU45_r"].to_numpy(np.float64), index=frames)
    au45 = (np.clip(by_frame.loc[np.arange(n_frames)].to_numpy(), 0, 2) / 2).astype(np.float32)
    in_clip = (frames >= 0) & (frames < n_frames)
    info = {
        "openface_csv": str(csv_path),
        "openface_csv_sha256": sha256_file(csv_path),
        "openface_rows_beyond_clip": int((~in_clip).sum()),
    }
    if "success" in table.columns:
        info["openface_failed_frames"] = int((table["success"].to_numpy()[in_clip] == 0).sum())
    return au45, info


def _ranges(indices: np.ndarray, limit: int = 5) -> str:
    """'3-7, 12, 40-44 and 2 more ranges' for sorted frame indices."""
    from bench.datasets.preprocess.landmarks import missing_runs

    present = np.ones(int(indices.max()) + 1, bool)
    present[indices] = False
    runs = missing_runs(present)
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:limit])
    return text + (f" and {len(runs) - limit} more ranges" if len(runs) > limit else "")


def run(ctx: StepContext) -> dict[str, Any]:
    from scipy.signal import savgol_filter

    scores = np.array(ctx.load("landmarks", "blendshapes_mediapipe.npy"))
    if len(scores) < SAVGOL_WINDOW:
        raise BenchError(
            f"capture needs at least {SAVGOL_WINDOW} frames for its smoothing window; this clip has {len(scores)}"
        )
    bs_raw = to_arkit(scores)
    bs = savgol_filter(bs_raw, SAVGOL_WINDOW, SAVGOL_ORDER, axis=0).astype(np.float32)
    upper_columns = [ARKIT_BLENDSHAPES.index(name) for name in UPPER7]
    np.save(ctx.out / "bs_raw.npy", bs_raw)
    np.save(ctx.out / "bs.npy", bs)
    np.save(ctx.out / "upper7.npy", bs[:, upper_columns])

    found = np.load(ctx.folder("landmarks") / "found.npy").all(axis=1)
    blink = bs_raw[:, [ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")]].mean(axis=1)
    ear = eye_aspect_ratio(ctx.load("landmarks", "lms68.npy"))
    correlation = float(np.corrcoef(blink[found], ear[found])[0, 1]) if found.sum() > 2 else float("nan")
    summary: dict[str, Any] = {
        "n_frames": len(bs),
        "order": "ARKit alphabetical (52; tongueOut = 0)",
        "smoothing": f"scipy.signal.savgol_filter window {SAVGOL_WINDOW} order {SAVGOL_ORDER} per channel",
        "columns": dict(zip(UPPER7, upper_columns)),  # column of each upper7 entry in bs.npy and bs_raw.npy
        "blink_ear_correlation": round(correlation, 4),
        "blink_ear_frames": int(found.sum()),
        "blink_range": [round(float(blink.min()), 4), round(float(blink.max()), 4)],
    }
    csv_option = str(ctx.options["openface_csv"])
    if csv_option:
        au45, info = read_au45(Path(csv_option).expanduser(), len(bs))
        np.save(ctx.out / "au45.npy", au45)
        summary.update(info, au45_mean=round(float(au45.mean()), 4))
    return summary
