"""SyncTalk's view of a prepared subject: images, backgrounds, poses, expressions, audio inputs and face rects.

Follows the released loader (``../shared/docs/synctalk.md`` §1 "Loader conventions"): poses are the exported
camera-to-world matrices passed through ``nerf_matrix_to_ngp`` (scale 4); the background of every pixel is the
frame's torso image composited over the plate (in head-only mode the torso comes from the GT frame); rects come from
the 68-point landmarks: face = all points, lower face = nose-tip row (point 30) to the chin, upper face = face top
to the nose-tip row, lips = points 48-59 padded to a square. Everything is resized to ``train_size`` for training;
rendering for scoring happens at the prepared frame size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.contracts import BenchError, Split
from bench.datasets.preprocess.export import camera_to_world
from bench.datasets.preprocess.prepared import PreparedSubject

NOSE_TIP = 30
LIPS = slice(48, 60)


def face_rects(lms: np.ndarray, scale: float, size: int) -> dict[str, np.ndarray]:
    """Per-frame int rects [x0, x1, y0, y1] (half-open, clipped to the image) at ``size``: "lower" (the face below
    the nose tip, where the loss weights the audio) and "lips" (a square on the lips, for the LPIPS patch)."""
    points = lms * scale
    x0, x1 = points[..., 0].min(1), points[..., 0].max(1)
    y1 = points[..., 1].max(1)
    nose = points[:, NOSE_TIP, 1]
    lips = points[:, LIPS]
    lx0, lx1, ly0, ly1 = lips[..., 0].min(1), lips[..., 0].max(1), lips[..., 1].min(1), lips[..., 1].max(1)
    side = np.maximum(lx1 - lx0, ly1 - ly0)
    cx, cy = (lx0 + lx1) / 2, (ly0 + ly1) / 2

    def rect(a, b, c, d):
        box = np.stack([np.floor(a), np.ceil(b) + 1, np.floor(c), np.ceil(d) + 1], axis=1)
        return np.clip(box, 0, size).astype(np.int64)

    return {
        "lower": rect(x0, x1, nose, y1),
        "lips": rect(cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2),
    }


def resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    """Resize (N, H, W, C) uint8 images to ``size``² with OpenCV's area filter (identity when already that size)."""
    import cv2

    if images.shape[1] == size and images.shape[2] == size:
        return np.ascontiguousarray(images)
    return np.stack([cv2.resize(np.asarray(image), (size, size), interpolation=cv2.INTER_AREA) for image in images])


def composite_torso(torso_rgba: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """The torso image over the background plate: the head-only render's background."""
    alpha = torso_rgba[..., 3:].astype(np.float32) / 255.0
    mixed = torso_rgba[..., :3].astype(np.float32) * alpha + plate.astype(np.float32) * (1 - alpha)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


class HeadBackgrounds:
    """The head-only render's background of a frame at the prepared size: its torso image over the plate."""

    def __init__(self, prepared: PreparedSubject) -> None:
        from PIL import Image

        self.plate = np.array(Image.open(prepared.folder("background") / "bc.png").convert("RGB"))
        self.torso = prepared.array("torso", "torso.npy")

    def __call__(self, index: int) -> np.ndarray:
        return composite_torso(np.asarray(self.torso[index]), self.plate)


def ngp_poses(prepared: PreparedSubject, stabilised: bool, scale: float = 4.0) -> np.ndarray:
    from bench.methods.engine.rendering import nerf_matrix_to_ngp

    pose = prepared.pose(stabilised)
    c2w = camera_to_world(pose["rotation"], pose["translation"])
    return nerf_matrix_to_ngp(c2w, scale=scale)


@dataclass
class SubjectData:
    """Everything training and rendering read, as CPU tensors (moved to the device batch by batch)."""

    size: int  # training image side
    frame_size: int  # prepared frame side (rendering for scoring)
    images: torch.Tensor  # (N, S, S, 3) uint8 at train size
    backgrounds: torch.Tensor  # (N, S, S, 3) uint8 torso over plate at train size
    poses: torch.Tensor  # (N, 4, 4) float32 NGP camera-to-world
    focal: float  # at the prepared frame size
    expressions: torch.Tensor  # (N, E) float32
    rects: dict[str, torch.Tensor]  # name -> (N, 4) int64 at train size
    split: Split

    def intrinsics(self, side: int) -> tuple[float, float, float, float]:
        scale = side / self.frame_size
        return self.focal * scale, self.focal * scale, side / 2, side / 2


def expressions(prepared: PreparedSubject, kind: str) -> np.ndarray:
    if kind == "blendshapes":
        return np.array(prepared.array("capture", "upper7.npy"), dtype=np.float32)  # a writable copy for torch
    if kind == "au45":
        path = prepared.folder("capture") / "au45.npy"
        if not path.is_file():
            raise BenchError(
                f"expression=au45 needs an OpenFace CSV: run `bench prepare {prepared.id} --steps capture "
                "--set capture.openface_csv=PATH` (OpenFace FeatureExtraction output)"
            )
        return np.load(path).astype(np.float32)[:, None]
    raise BenchError(f"unknown expression input {kind!r}: use blendshapes or au45")


def load_subject(prepared: PreparedSubject, size: int, expression: str, stabilised: bool, images: bool = True) -> SubjectData:
    """The subject at ``size``; ``images=False`` skips the training images and backgrounds (rendering needs neither).
    The training images are SyncTalk's ``gt_imgs``: each frame with its background replaced by the plate, so the
    target agrees with the torso-over-plate background the head is composited on."""
    frames = prepared.array("torso", "gt.npy")
    frame_size = frames.shape[1]
    pixels = torch.zeros(0, size, size, 3, dtype=torch.uint8)
    training, backgrounds = pixels, pixels
    if images:
        head_background = HeadBackgrounds(prepared)
        chunk = 256
        parts = [
            (resize_stack(frames[start : start + chunk], size),
             resize_stack(np.stack([head_background(i) for i in range(start, min(start + chunk, len(frames)))]), size))
            for start in range(0, len(frames), chunk)
        ]
        training = torch.from_numpy(np.concatenate([p[0] for p in parts]))
        backgrounds = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    pose = prepared.pose(stabilised)
    rects = face_rects(np.asarray(prepared.array("landmarks", "lms68.npy")), size / frame_size, size)
    return SubjectData(
        size=size,
        frame_size=frame_size,
        images=training,
        backgrounds=backgrounds,
        poses=torch.from_numpy(ngp_poses(prepared, stabilised)),
        focal=float(pose["focal"]),
        expressions=torch.from_numpy(expressions(prepared, expression)),
        rects={name: torch.from_numpy(value) for name, value in rects.items()},
        split=prepared.split,
    )
