"""Preparation step ``landmarks``: per frame, MediaPipe's 478-point mesh, 52 blendshapes and transformation matrix,
and iBUG 68-point landmarks (FAN or dlib), with short face-less gaps filled.

MediaPipe runs in VIDEO mode (tracking from frame to frame; SyncTalk's capturer detects every frame afresh in
IMAGE mode). The 68-point backend (option ``backend68``):

- ``fan``: face-alignment's S3FD on the full frame (batches of 4), the largest box, then 2D-FAN-4 without the
  flipped pass: what SyncTalk's LMD uses. Needs the assets ``face_alignment_s3fd`` and ``face_alignment_2dfan4``.
- ``dlib``: dlib's HOG frontal detector on the frame downscaled by ``dlib_downscale`` (area interpolation; faces
  from about 80 px times that factor), its largest box mapped back to full resolution, and the 68-point shape
  predictor on the full frame. A frame where the downscaled detection finds nothing is detected again at full
  resolution (faces from about 80 px). At 2x the detector costs a quarter of full resolution, and on the cnn clip
  the landmarks differ from full-resolution detection by about 1 px on average (the predictor's own jitter to box
  changes).
- ``auto``: ``fan`` when both FAN assets resolve, else ``dlib``; the summary says which and why.

Gaps: a run of at most ``max_gap_frames`` consecutive frames without a face is filled per backend, linearly
between its neighbours (the nearest found frame at the clip's ends; the 4x4 matrix is blended entry-wise, which
over such short gaps stays within rounding of a rotation). ``found.npy`` keeps what was found before filling;
longer runs are an error naming the frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import FPS, BenchError
from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="landmarks",
    version="1",
    depends=("ingest",),
    impl="bench.datasets.preprocess.landmarks:run",
    description="MediaPipe FaceLandmarker mesh, blendshapes and matrix plus iBUG-68 landmarks (FAN or dlib) per "
    "frame; short face-less gaps interpolated",
    options={"backend68": "auto", "max_gap_frames": 12, "dlib_downscale": 2},
)

BACKENDS = ("auto", "fan", "dlib")
BATCH = 4  # frames per 68-point batch (S3FD runs batched)
MESH = "mediapipe"
LMS68 = "lms68"


# ---------------------------------------------------------------------------------------------------------------
# Gaps


def missing_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (first, last) frame ranges where ``found`` is False."""
    padded = np.concatenate([[True], np.asarray(found, bool), [True]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(start), int(stop) - 1) for start, stop in zip(edges[::2], edges[1::2])]


def check_gaps(found: Mapping[str, np.ndarray], max_gap: int) -> None:
    """BenchError when a backend found no face at all, or naming every run of face-less frames longer than
    ``max_gap``, per backend."""
    never = [backend for backend, mask in found.items() if not mask.any()]
    if never:
        n_frames = len(next(iter(found.values())))
        raise BenchError(f"no face found in any of the {n_frames} frames ({', '.join(never)}); is this a talking-head video?")
    problems = []
    for backend, mask in found.items():
        long_runs = [(a, b) for a, b in missing_runs(mask) if b - a + 1 > max_gap]
        if long_runs:
            shown = ", ".join(f"{a}-{b} ({(b - a + 1) / FPS:.2f} s)" for a, b in long_runs[:5])
            more = f" and {len(long_runs) - 5} more" if len(long_runs) > 5 else ""
            problems.append(f"frames {shown}{more} have no face ({backend})")
    if problems:
        raise BenchError(
            f"{'; '.join(problems)}: longer than landmarks.max_gap_frames={max_gap} ({max_gap / FPS:.2f} s); "
            "trim the video or raise landmarks.max_gap_frames"
        )


def fill_gaps(values: np.ndarray, found: np.ndarray) -> tuple[list[int], list[int]]:
    """Fill rows of ``values`` (frames first) where ``found`` is False, in place: linearly between the neighbouring
    found rows, or with the nearest found row at the clip's ends. Returns (interpolated, nearest-filled) frames."""
    interpolated: list[int] = []
    nearest: list[int] = []
    last = len(found) - 1
    for first, final in missing_runs(found):
        before, after = first - 1, final + 1
        frames = list(range(first, final + 1))
        if before < 0 or after > last:
            values[first : final + 1] = values[after if before < 0 else before]
            nearest += frames
            continue
        weights = (np.arange(first, final + 1) - before) / (after - before)
        weights = weights.reshape(-1, *([1] * (values.ndim - 1)))
        values[first : final + 1] = (1 - weights) * values[before] + weights * values[after]
        interpolated += frames
    return interpolated, nearest


# ---------------------------------------------------------------------------------------------------------------
# 68-point backends: each maps a batch of frames to one (68, 2) array or None per frame


class DlibLandmarks68:
    """dlib HOG detection on a downscaled frame (full-resolution retry when it finds nothing), 68-point predictor
    on the full frame, largest box."""

    name = "dlib"

    def __init__(self, predictor: Path, downscale: float) -> None:
        import dlib

        if downscale < 1:
            raise BenchError(f"landmarks.dlib_downscale must be >= 1 (got {downscale})")
        self.downscale = float(downscale)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor))
        self.full_resolution_retries = 0
        self.several_faces = 0

    def scheme(self) -> str:
        return (
            f"HOG frontal detector (no upsampling) on the frame downscaled {self.downscale:g}x (area), largest box "
            "mapped back; full-resolution retry when none is found; 68-point predictor on the full frame"
        )

    def _detect(self, frame: np.ndarray) -> list[tuple[float, float, float, float]]:
        import cv2

        if self.downscale > 1:
            small = cv2.resize(frame, None, fx=1 / self.downscale, fy=1 / self.downscale, interpolation=cv2.INTER_AREA)
            scale_x, scale_y = frame.shape[1] / small.shape[1], frame.shape[0] / small.shape[0]
            found = self._detector(small, 0)
            if found:  # pixel centres map as x_full + 0.5 = (x_small + 0.5) * scale
                return [
                    ((r.left() + 0.5) * scale_x - 0.5, (r.top() + 0.5) * scale_y - 0.5,
                     (r.right() + 0.5) * scale_x - 0.5, (r.bottom() + 0.5) * scale_y - 0.5)
                    for r in found
                ]  # fmt: skip
            self.full_resolution_retries += 1
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in self._detector(frame, 0)]

    def locate(self, frames: np.ndarray) -> list[np.ndarray | None]:
        import dlib

        from bench.metrics.lmd import largest_box

        points: list[np.ndarray | None] = []
        for frame in frames:
            boxes = self._detect(frame)
            self.several_faces += len(boxes) > 1
            if not boxes:
                points.append(None)
                continue
            box = dlib.rectangle(*(round(v) for v in boxes[largest_box(boxes)]))
            shape = self._predictor(frame, box)
            points.append(np.array([(part.x, part.y) for part in shape.parts()], np.float32))
        return points

    def stats(self) -> dict[str, Any]:
        return {"full_resolution_retries": self.full_resolution_retries, "several_faces_frames": self.several_faces}


class FanLandmarks68:
    """face-alignment's S3FD (batched) and 2D-FAN-4 without flip on the largest box, as bench's FAN LMD does."""

    name = "fan"

    def __init__(self, detector: Path, landmarks: Path) -> None:
        from bench.metrics._frames import torch_device
        from bench.metrics.lmd import build_face_alignment

        self.device = torch_device()
        self._aligner = build_face_alignment(detector, landmarks, self.device)
        self.several_faces = 0

    def scheme(self) -> str:
        return f"S3FD on full frames (batches of {BATCH}), largest box, 2D-FAN-4 without flip, on {self.device}"

    def locate(self, frames: np.ndarray) -> list[np.ndarray | None]:
        import torch

        from bench.metrics.lmd import largest_box

        points: list[np.ndarray | None] = []
        with torch.no_grad():
            tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
            for frame, boxes in zip(frames, self._aligner.face_detector.detect_from_batch(tensor)):
                self.several_faces += len(boxes) > 1
                if not len(boxes):
                    points.append(None)
                    continue
                box = boxes[largest_box([tuple(b[:4]) for b in boxes])]
                found = self._aligner.get_landmarks_from_image(frame, detected_faces=[box])
                points.append(np.asarray(found[0][:, :2], np.float32) if found else None)
        return points

    def stats(self) -> dict[str, Any]:
        return {"several_faces_frames": self.several_faces}


def choose_backend68(choice: str, dlib_downscale: float) -> tuple[Callable[[], Any], str]:
    """The 68-point backend to build and why: ``fan`` and ``dlib`` as asked, ``auto`` = FAN when both of its
    assets resolve, else dlib."""
    from bench import assets
    from bench.metrics.lmd import DLIB_PREDICTOR, FAN_DETECTOR, FAN_LANDMARKS

    if choice not in BACKENDS:
        raise BenchError(f"landmarks.backend68={choice!r}: expected one of {', '.join(BACKENDS)}")

    def dlib_backend() -> DlibLandmarks68:
        return DlibLandmarks68(assets.fetch(DLIB_PREDICTOR), dlib_downscale)

    if choice == "dlib":
        return dlib_backend, "dlib asked for (landmarks.backend68=dlib)"
    try:
        detector, landmarks = assets.fetch(FAN_DETECTOR), assets.fetch(FAN_LANDMARKS)
    except assets.AssetUnavailable as error:
        if choice == "fan":
            raise
        return dlib_backend, f"auto: FAN weights unavailable, dlib used ({error})"
    reason = "FAN asked for (landmarks.backend68=fan)" if choice == "fan" else "auto: both FAN assets resolve"
    return lambda: FanLandmarks68(detector, landmarks), reason


# ---------------------------------------------------------------------------------------------------------------
# The step


def run(ctx: StepContext) -> dict[str, Any]:
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    from bench import assets
    from bench.datasets.preprocess.mediapipe_face import MEDIAPIPE_ASSET, MEDIAPIPE_BLENDSHAPES, N_POINTS, FaceMesh

    max_gap = int(ctx.options["max_gap_frames"])
    build_backend, reason = choose_backend68(str(ctx.options["backend68"]), float(ctx.options["dlib_downscale"]))
    frames = ctx.frames()
    n_frames = len(frames)

    def output(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return open_memmap(ctx.out / name, mode="w+", dtype=np.float32, shape=(n_frames, *shape))

    mesh = output("mesh.npy", (N_POINTS, 3))
    blendshapes = output("blendshapes_mediapipe.npy", (len(MEDIAPIPE_BLENDSHAPES),))
    matrix = output("mediapipe_matrix.npy", (4, 4))
    lms68 = output("lms68.npy", (68, 2))
    found = np.zeros((n_frames, 2), bool)
    seconds = {MESH: 0.0, LMS68: 0.0}

    started = time.perf_counter()
    backend = build_backend()
    seconds["load_68"] = time.perf_counter() - started
    with FaceMesh(assets.fetch(MEDIAPIPE_ASSET), video=True) as face_mesh:
        for start in tqdm(range(0, n_frames, BATCH), desc="landmarks", unit="batch", disable=not ctx.progress):
            batch = np.array(frames[start : start + BATCH])
            started = time.perf_counter()
            for offset, frame in enumerate(batch):
                detection = face_mesh.detect(frame, start + offset)
                if detection is not None:
                    index = start + offset
                    found[index, 0] = True
                    mesh[index], blendshapes[index], matrix[index] = (
                        detection.points, detection.blendshapes, detection.matrix
                    )
            seconds[MESH] += time.perf_counter() - started
            started = time.perf_counter()
            for offset, points in enumerate(backend.locate(batch)):
                if points is not None:
                    found[start + offset, 1] = True
                    lms68[start + offset] = points
            seconds[LMS68] += time.perf_counter() - started
    np.save(ctx.out / "found.npy", found)
    check_gaps({MESH: found[:, 0], backend.name: found[:, 1]}, max_gap)

    started = time.perf_counter()
    filled = {MESH: fill_gaps(mesh, found[:, 0])}
    fill_gaps(blendshapes, found[:, 0])
    fill_gaps(matrix, found[:, 0])
    filled[LMS68] = fill_gaps(lms68, found[:, 1])
    for array in (mesh, blendshapes, matrix, lms68):
        array.flush()
    seconds["fill"] = time.perf_counter() - started
    return {
        "n_frames": n_frames,
        "backend68": backend.name,
        "backend68_reason": reason,
        "backend68_scheme": backend.scheme(),
        "backend68_stats": backend.stats(),
        "mediapipe_mode": f"VIDEO (tracking), timestamps frame * {1000 // FPS} ms",
        "max_gap_frames": max_gap,
        "missing": {MESH: np.flatnonzero(~found[:, 0]).tolist(), backend.name: np.flatnonzero(~found[:, 1]).tolist()},
        "interpolated": {MESH: filled[MESH][0], backend.name: filled[LMS68][0]},
        "nearest_filled": {MESH: filled[MESH][1], backend.name: filled[LMS68][1]},
        "seconds": {MESH: round(seconds[MESH], 2), backend.name: round(seconds[LMS68], 2),
                    f"load_{backend.name}": round(seconds["load_68"], 2), "fill": round(seconds["fill"], 3)},
    }  # fmt: skip
