"""LMD, the mouth landmark distance, as SyncTalk's ``LMDMeter`` computes it (``nerf_triplane/utils.py``).

For each frame pair: 68-point landmarks on the prediction and on the GT; the mouth points 48-67 (20 points);
each set centred on its own mean (translation removed, no scale or rotation normalisation); the mean Euclidean
distance between corresponding points, in pixels of a 512x512 frame. The score is the mean over frames.

Where bench differs from SyncTalk, deliberately:
- A frame with no face in the prediction or the GT scores NaN and is counted (``no_face_pred``/``no_face_gt``);
  SyncTalk crashes there (SyncTalk#44, #163).
- With several faces, the one with the largest detection box is taken (``face_choice``); SyncTalk's FAN path
  takes the last detection (the least confident one after NMS), its dlib path the first.
- Frames that are not 512x512 have their landmark coordinates scaled to 512x512 (x by 512/W, y by 512/H) before
  the distance; the factors are in ``extras["landmark_scale"]``.

Variants:
- ``lmd@fan-mouth20-centred-px`` (the paper's): face-alignment's S3FD detector and 2D-FAN-4, no flipped second
  pass (SyncTalk builds ``FaceAlignment(TWO_D, flip_input=False)``), weights from bench's assets.
- ``lmd@dlib-mouth20-centred-px``: dlib's HOG frontal face detector and the iBUG 68-point shape predictor, on the
  CPU. Detection runs on the full frame without upsampling (faces from about 80 px; SyncTalk's dlib path
  upsamples once, finding faces from about 40 px at four times the cost); the predictor runs on the full frame.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import Metric, MetricInput, MetricKind, MetricSpec, MetricValue

REFERENCE_SIDE = 512
MOUTH = slice(48, 68)
N_LANDMARKS = 68

DLIB_PREDICTOR = "dlib_shape_predictor_68"
FAN_DETECTOR = "face_alignment_s3fd"
FAN_LANDMARKS = "face_alignment_2dfan4"

SPECS = (
    MetricSpec(
        id="lmd",
        variant="lmd@fan-mouth20-centred-px",
        impl="bench.metrics.lmd:FANMouthLMD",
        higher_is_better=False,
        kind=MetricKind.FULL_REFERENCE,
        description="mouth landmark distance (points 48-67, each set centred) in px at 512², face-alignment "
        "S3FD + 2D-FAN-4 without flip, largest face, mean over frames (SyncTalk LMDMeter, the paper's)",
        assets=(FAN_DETECTOR, FAN_LANDMARKS),
        requires=("face_alignment",),
        unit="px",
    ),
    MetricSpec(
        id="lmd",
        variant="lmd@dlib-mouth20-centred-px",
        impl="bench.metrics.lmd:DlibMouthLMD",
        higher_is_better=False,
        kind=MetricKind.FULL_REFERENCE,
        description="mouth landmark distance (points 48-67, each set centred) in px at 512², dlib frontal "
        "detector (no upsampling) + 68-point predictor, largest face, mean over frames",
        assets=(DLIB_PREDICTOR,),
        requires=("dlib",),
        unit="px",
    ),
)


def mouth_distance(pred_landmarks: np.ndarray, gt_landmarks: np.ndarray) -> np.ndarray:
    """Per frame, the mean distance between the centred mouth points of two (N, 68, 2) landmark arrays.

    A frame whose landmarks are NaN (no face) gives NaN.
    """
    pred = pred_landmarks[:, MOUTH, :]
    gt = gt_landmarks[:, MOUTH, :]
    pred = pred - pred.mean(axis=1, keepdims=True)
    gt = gt - gt.mean(axis=1, keepdims=True)
    return np.linalg.norm(pred - gt, axis=2).mean(axis=1)


def largest_box(boxes: list[tuple[float, float, float, float]]) -> int:
    """Index of the box (left, top, right, bottom) with the largest area; the first one among equals."""
    areas = [(right - left) * (bottom - top) for left, top, right, bottom in boxes]
    return int(np.argmax(areas))


class _MouthLMD(Metric):
    """The LMD formula and its bookkeeping; subclasses supply the landmark detector."""

    @abc.abstractmethod
    def landmarks(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 68, 2) landmarks in frame pixels (NaN where no face) and the number of faces found per frame."""

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import frame_mean

        height, width = data.pred.shape[1:3]
        scale = np.array([REFERENCE_SIDE / width, REFERENCE_SIDE / height])
        pred_points, pred_faces = self.landmarks(data.pred)
        gt_points, gt_faces = self.landmarks(data.gt)
        values = mouth_distance(pred_points * scale, gt_points * scale)
        return frame_mean(
            values,
            no_face_pred=int((pred_faces == 0).sum()),
            no_face_gt=int((gt_faces == 0).sum()),
            several_faces_pred=int((pred_faces > 1).sum()),
            several_faces_gt=int((gt_faces > 1).sum()),
            face_choice="largest detection box",
            landmark_scale=[float(scale[0]), float(scale[1])],
        )


class DlibMouthLMD(_MouthLMD):
    """dlib's frontal face detector and 68-point shape predictor, one frame at a time on the CPU."""

    upsample = 0  # dlib pyramid upsampling steps before detection; 0 finds faces from about 80 px

    def __init__(self, spec: MetricSpec, assets: Mapping[str, Path]) -> None:
        import dlib

        super().__init__(spec, assets)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(self.assets[DLIB_PREDICTOR]))

    def landmarks(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = np.full((len(frames), N_LANDMARKS, 2), np.nan)
        faces = np.zeros(len(frames), dtype=np.int64)
        for index in range(len(frames)):
            image = np.array(frames[index])  # dlib wants an owned, contiguous RGB array
            rects = list(self._detector(image, self.upsample))
            faces[index] = len(rects)
            if rects:
                boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
                shape = self._predictor(image, rects[largest_box(boxes)])
                points[index] = [(part.x, part.y) for part in shape.parts()]
        return points, faces


def build_face_alignment(detector_weights: Path, landmark_weights: Path, device: str) -> Any:
    """face-alignment's ``FaceAlignment`` (2D landmarks, S3FD, no flip, eager), both networks from local files.

    face-alignment 1.5 builds S3FD from ``path_to_detector`` but always downloads FAN in ``_load_native``; the
    subclass loads FAN's state dict (``2DFAN4-11f355bf06.pth.tar``, a plain legacy-format state dict without
    BatchNorm ``num_batches_tracked``) from ``landmark_weights`` instead, exactly as ``_load_native`` would.
    """
    import face_alignment
    import torch
    from face_alignment.models import FAN

    class LocalWeightsFaceAlignment(face_alignment.FaceAlignment):
        def _load_native(self, network_name: str, network_size: int, device: str, dtype: torch.dtype) -> FAN:
            network = FAN(network_size)
            network.load_state_dict(torch.load(landmark_weights, map_location="cpu", weights_only=True))
            return network.to(device, dtype=dtype).eval()

    return LocalWeightsFaceAlignment(
        face_alignment.LandmarksType.TWO_D,
        device=device,
        flip_input=False,
        face_detector="sfd",
        face_detector_kwargs={"path_to_detector": str(detector_weights)},
        compile=False,
    )


class FANMouthLMD(_MouthLMD):
    """face-alignment's S3FD (batched over frames) and 2D-FAN-4 (one face per frame)."""

    batch_size = 4

    def __init__(self, spec: MetricSpec, assets: Mapping[str, Path]) -> None:
        from bench.metrics._frames import torch_device

        super().__init__(spec, assets)
        self.aligner = build_face_alignment(self.assets[FAN_DETECTOR], self.assets[FAN_LANDMARKS], torch_device())

    def landmarks(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from bench.metrics._frames import batches

        points = np.full((len(frames), N_LANDMARKS, 2), np.nan)
        faces = np.zeros(len(frames), dtype=np.int64)
        with torch.no_grad():
            for part in batches(len(frames), self.batch_size):
                images = np.array(frames[part])
                tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float()
                for offset, boxes in enumerate(self.aligner.face_detector.detect_from_batch(tensor)):
                    index = part.start + offset
                    faces[index] = len(boxes)
                    if len(boxes):
                        box = boxes[largest_box([tuple(b[:4]) for b in boxes])]
                        found = self.aligner.get_landmarks_from_image(images[offset], detected_faces=[box])
                        points[index] = found[0][:, :2]
        return points, faces
