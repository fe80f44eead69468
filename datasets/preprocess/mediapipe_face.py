"""MediaPipe Tasks FaceLandmarker as a context manager: 478 points, 52 blendshapes and the facial transformation
matrix of one face per frame, in frame pixels.

The model file is the asset ``mediapipe_face_landmarker`` (``face_landmarker.task``, the one SyncTalk ships).
VIDEO mode tracks the face from frame to frame (timestamps ``frame_index * 40`` ms, i.e. 25 fps); IMAGE mode
detects every frame afresh (what SyncTalk's ``blendshape_capture/main.py`` does, and what suits sampled frames).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from bench.contracts import FPS, BenchError

MEDIAPIPE_ASSET = "mediapipe_face_landmarker"
FRAME_MS = 1000 // FPS  # VIDEO-mode timestamp step
N_POINTS = 478

# The blendshape categories in the order the FaceLandmarker reports them (``_neutral`` first).
MEDIAPIPE_BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)  # fmt: skip


@dataclass(frozen=True)
class MeshDetection:
    """One face: ``points`` (478, 3) in pixels (x*W, y*H, z*W), ``blendshapes`` (52,) in MEDIAPIPE_BLENDSHAPES
    order, ``matrix`` (4, 4) the facial transformation matrix (canonical face model to camera, centimetres)."""

    points: np.ndarray
    blendshapes: np.ndarray
    matrix: np.ndarray


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Route file descriptor 2 to a temporary file while MediaPipe builds its graph.

    The native library logs graph set-up notes (XNNPACK delegate, feedback tensors) straight to fd 2, with no
    Python switch; they are dropped when set-up succeeds and written out when it fails.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))


class FaceMesh:
    """``with FaceMesh(task_path) as mesh: mesh.detect(frame, index)`` -> MeshDetection, or None without a face."""

    def __init__(self, task_path: Path, video: bool = True) -> None:
        self.task_path = Path(task_path)
        self.video = video
        self._landmarker = None

    def __enter__(self) -> Self:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.task_path)),
            running_mode=vision.RunningMode.VIDEO if self.video else vision.RunningMode.IMAGE,
            num_faces=1,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with _native_stderr_captured():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def detect(self, frame: np.ndarray, frame_index: int) -> MeshDetection | None:
        """The face in one uint8 RGB (H, W, 3) frame; ``frame_index`` sets the VIDEO-mode timestamp."""
        import mediapipe as mp

        if self._landmarker is None:
            raise RuntimeError("FaceMesh.detect called outside its `with` block")
        height, width = frame.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame, dtype=np.uint8))
        if self.video:
            result = self._landmarker.detect_for_video(image, frame_index * FRAME_MS)
        else:
            result = self._landmarker.detect(image)
        if not result.face_landmarks:
            return None
        points = np.array([(p.x * width, p.y * height, p.z * width) for p in result.face_landmarks[0]], np.float32)
        scores = {category.category_name: category.score for category in result.face_blendshapes[0]}
        if set(scores) != set(MEDIAPIPE_BLENDSHAPES):
            differing = sorted(set(scores) ^ set(MEDIAPIPE_BLENDSHAPES))[:3]
            raise BenchError(
                f"{self.task_path}: its blendshapes are not MediaPipe's 52 ({differing} differ); "
                f"use the asset {MEDIAPIPE_ASSET!r}"
            )
        blendshapes = np.array([scores[name] for name in MEDIAPIPE_BLENDSHAPES], np.float32)
        matrix = np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32).reshape(4, 4)
        return MeshDetection(points=points, blendshapes=blendshapes, matrix=matrix)
