"""Subject preparation: from a raw talking-head video to a prepared subject (``bench prepare``).

Each step is one module here that declares ``STEP = Step(...)`` at top level and imports nothing heavy there
(numpy at most); its work happens in the function ``STEP.impl`` names. Each step writes one folder
(``$BENCH_HOME/stages/prep-<step>/<key>``). Frame-indexed arrays always have one row per frame, in frame order,
so indices never shift; frames without a face are listed in the summaries, never dropped.

Files per step (N frames, H x W prepared frame size, always 512 x 512 unless the user asks otherwise):

- ``ingest``: ``frames.u8``/``frames.json`` (bench.media frame file, N x H x W x 3 uint8 RGB, 25 fps, after the
  crop/resize policy), ``audio.wav`` (16 kHz mono). Summary: n_frames, width, height, source size/fps, crop box
  in source pixels, resize rule.
- ``landmarks``: ``mesh.npy`` float32 (N, 478, 3) MediaPipe FaceLandmarker points in pixels (x, y; z scaled
  like x), ``blendshapes_mediapipe.npy`` float32 (N, 52) in MediaPipe's order (index 0 ``_neutral``),
  ``mediapipe_matrix.npy`` float32 (N, 4, 4), ``lms68.npy`` float32 (N, 68, 2) iBUG-68 points in pixels (FAN
  when its weights are present, else dlib), ``found.npy`` bool (N, 2) (mediapipe, 68-point) before gap filling.
  Short gaps are interpolated; the summary lists missing and interpolated frames per backend.
- ``capture``: ``bs.npy`` float32 (N, 52) ARKit-alphabetical blendshapes smoothed as SyncTalk does,
  ``bs_raw.npy`` (unsmoothed), ``upper7.npy`` float32 (N, 7) the columns SyncTalk uses, ``au45.npy`` float32
  (N,) when an OpenFace CSV is configured.
- ``parsing``: ``labels.npy`` uint8 (N, H, W) with 0 background, 1 head (with hair), 2 neck, 3 torso/cloth;
  ``face_soft.npy`` uint8 (N, H, W) the face-only soft mask 0-255 used by the Portrait-Sync Generator.
- ``background``: ``bc.png`` (H x W RGB) the static background plate.
- ``torso``: ``torso.npy`` uint8 (N, H, W, 4) RGBA torso/neck images with the head replaced and the neck gap
  filled; ``gt.npy`` uint8 (N, H, W, 3) frames with the background replaced by the plate.
- ``pose``: ``pose.npz`` the Head Motion Tracker's per-frame fit: focal, cx, cy, rotation (N, 3, 3),
  translation (N, 3) in metres, euler (N, 3), reprojection error (N,), and which face model was used.
- ``points``: ``keypoints.npy`` float32 (K, 2), ``tracks.npy`` float32 (N, K, 2) pixel tracks,
  ``visible.npy`` bool (N, K).
- ``bundle``: ``pose.npz`` (the same keys as the pose step's, bundle-adjusted) plus ``points3d``; summary
  with frame-to-frame jitter before and after.
- ``export``: ``synctalk/`` in the layout the original SyncTalk/ER-NeRF code reads, and ``index.json``.

Camera convention (the one SyncTalk's face tracker and loader use): a head-model point X (metres) maps to camera
coordinates Xc = R X + t with the camera looking down -Z (t_z < 0); pixel u = -f Xc_x / Xc_z + cx,
v = f Xc_y / Xc_z + cy. The exported camera-to-world matrix is [Rᵀ | -Rᵀ t].
"""

from __future__ import annotations

import importlib

from bench.datasets.preprocess.core import Step

STEP_MODULES = (
    "ingest",
    "landmarks",
    "capture",
    "parsing",
    "background",
    "torso",
    "pose",
    "points",
    "bundle",
    "export",
)


def steps() -> dict[str, Step]:
    """Every preparation step by name, in running order."""
    found: dict[str, Step] = {}
    for module in STEP_MODULES:
        step = importlib.import_module(f"bench.datasets.preprocess.{module}").STEP
        found[step.name] = step
    return found
