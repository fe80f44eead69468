"""Parsing: per-frame head / neck / torso labels and the soft face-only mask (SyncTalk preprocessing step 3).

Outputs (N frames, H x W): ``labels.npy`` uint8 with 0 background, 1 head (with hair), 2 neck, 3 torso/cloth, and
``face_soft.npy`` uint8 0-255 (255 = face), the mask the Portrait-Sync Generator pastes the rendered face with
(SyncTalk's ``parsing/<i>_face.png``, read there as (255 - G) / 255).

Methods (option ``method``; ``auto`` takes BiSeNet when its weights resolve, else ``offline``):

- ``bisenet``: SyncTalk's network (``bisenet.py``, weights ``79999_iter.pth``: asset ``bisenet_face_parsing`` or
  ``parsing.bisenet_weights=PATH``). Classes map to labels as SyncTalk colours ``parsing/<i>.png``: head = 1-13
  and 17-18 (skin, brows, eyes, glasses, ears, earring, nose, mouth, lips, hair, hat), neck = 14-15 (neck,
  necklace), torso = 16 (cloth), background = 0. Face-only = classes 1-6 and 10-13 (no ears, earrings, hair).
- ``offline``: no learned parser; built from the landmarks step's MediaPipe mesh and OpenCV. It differs from
  BiSeNet as follows:
  * person silhouette: GrabCut (``grabcut_size`` px square working resolution, upsampled bilinearly, so edges are
    accurate to about ``H / grabcut_size`` px). Hard seeds: foreground = convex hull of the 478 mesh points and a
    strip under the chin; background = the top and side image borders outside a head ellipse and above the chin.
    The colour models are fitted on the first frame with a face (5 iterations) and then kept (one graph cut per
    frame with frozen models), refreshed by one learning iteration every ``gmm_refit_every`` frames. Only
    components connected to the face are kept; holes under 1 % of the frame are filled.
  * head = face hull plus the silhouette above the jaw line (mesh face-oval points from jaw angle to jaw angle,
    extended sideways) and inside an ellipse around the face (0.65 face widths half-width, reaching 0.6 face
    heights above the mesh top). So hair below the jaw line or beyond the ellipse (long hair on the shoulders)
    is labelled neck/torso, where BiSeNet labels it hair; hats and raised hands near the head count as head.
  * neck = silhouette below the head that matches a skin-colour model (Gaussian on YCrCb chroma fitted to
    cheek, forehead and chin pixels at mesh vertices of the same frame, Mahalanobis distance < 4.5), lies within
    0.6 face widths of the face centre and 0.8 face heights below the chin, and touches the head; chest skin in
    an open collar is often included (as BiSeNet often does). Necklaces are not separated.
  * torso = the rest of the silhouette (cloth and anything else attached to the person, e.g. hands).
  * face-only = the filled MediaPipe face-oval polygon: forehead up to the mesh top (usually a little below the
    hairline), no ears; hair falling over the forehead is included, where BiSeNet excludes it.
  Frames whose mesh is missing use the mesh of the nearest frame that has one (listed in the summary).

Both methods then build ``face_soft`` from the face-only mask exactly as SyncTalk's ``face_parsing/test.py`` does:
for every column holding face pixels, the lowest face pixel p; over the middle half of those columns the mask is
set from row p to row p + 9 (the code shifts p down by 5 and fills ±5 rows around it, so the extension is 9 px,
not the 5 px that its ``pad = 5`` suggests); then a 9 x 9 Gaussian blur whose sigma is 4 (the code passes
``cv2.BORDER_DEFAULT``, whose value is 4, in the sigma argument).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="parsing",
    version="1",
    depends=("ingest", "landmarks"),
    impl="bench.datasets.preprocess.parsing:run",
    description="head/neck/torso labels and the soft face-only mask (BiSeNet when its weights resolve, else offline)",
    options={"method": "auto", "bisenet_weights": "", "grabcut_size": 256, "gmm_refit_every": 100},
)

METHODS = ("auto", "bisenet", "offline")
BISENET_ASSET = "bisenet_face_parsing"
BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3

# BiSeNet (CelebAMask-HQ) class -> label, as SyncTalk colours parsing/<i>.png.
CLASS_TO_LABEL = np.array([BACKGROUND] + [HEAD] * 13 + [NECK] * 2 + [TORSO] + [HEAD] * 2, dtype=np.uint8)
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)

FACE_SOFT_PAD = 5
FACE_SOFT_KERNEL = 9
FACE_SOFT_SIGMA = 4.0  # cv2.BORDER_DEFAULT passed as sigmaX in SyncTalk

# MediaPipe face-mesh indices.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
JAW = (397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172)  # jaw angle to jaw angle via the chin
CHIN, FOREHEAD = 152, 10
SKIN_SAMPLES = (50, 280, 101, 330, 36, 266, 205, 425, 123, 352, 117, 346, 151, 108, 337, 69, 299, 9, 199, 175)

HEAD_HALF_WIDTH = 0.65  # face widths
HEAD_ABOVE_MESH = 0.6  # face heights
NECK_HALF_WIDTH = 0.6  # face widths
NECK_BELOW_CHIN = 0.8  # face heights
SKIN_MAX_DISTANCE = 4.5  # Mahalanobis, YCrCb chroma (shadowed neck skin lies 3-4.5 from the lit face)
HOLE_FRACTION = 0.01


def labels_from_classes(classes: np.ndarray) -> np.ndarray:
    """Labels (0 background, 1 head, 2 neck, 3 torso) of BiSeNet class maps."""
    return CLASS_TO_LABEL[classes]


def face_only_from_classes(classes: np.ndarray) -> np.ndarray:
    """SyncTalk's face-only region of a BiSeNet class map: skin, brows, eyes, glasses, nose, mouth and lips."""
    return np.isin(classes, FACE_CLASSES)


def face_soft(face_only: np.ndarray) -> np.ndarray:
    """The soft face mask (uint8, 255 = face) SyncTalk writes as ``parsing/<i>_face.png`` (see the module doc)."""
    import cv2

    rows, cols = face_only.shape
    extended = face_only.copy()
    filled = face_only.any(axis=0)
    if filled.any():
        lowest = rows - 1 - np.argmax(face_only[::-1], axis=0)  # lowest face row per column
        shifted = np.minimum(lowest + FACE_SOFT_PAD, rows - 1)
        columns = np.nonzero(filled)[0]
        quarter = (columns[-1] - columns[0]) // 4
        middle = filled & (np.arange(cols) >= columns[0] + quarter) & (np.arange(cols) <= columns[0] + 3 * quarter)
        start = np.maximum(shifted - FACE_SOFT_PAD, 0)
        stop = np.minimum(shifted + FACE_SOFT_PAD, rows)
        row = np.arange(rows)[:, None]
        extended |= middle & (row >= start) & (row < stop)
    green = np.where(extended, 0, 255).astype(np.uint8)  # the G channel of SyncTalk's face image
    blurred = cv2.GaussianBlur(green, (FACE_SOFT_KERNEL, FACE_SOFT_KERNEL), FACE_SOFT_SIGMA)
    return 255 - blurred


def resolve_weights(options: dict[str, Any]) -> tuple[Path | None, str]:
    """The BiSeNet weights to use (None: use the offline method) and why."""
    from bench import assets

    method = options["method"]
    if method not in METHODS:
        raise BenchError(f"parsing.method={method!r}: expected one of {', '.join(METHODS)}")
    given = str(options["bisenet_weights"] or "")
    if method == "offline":
        return None, "parsing.method=offline"
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise BenchError(f"parsing.bisenet_weights={given}: no such file; give the path of 79999_iter.pth")
        return path, "parsing.bisenet_weights"
    try:
        return assets.fetch(BISENET_ASSET), f"asset {BISENET_ASSET}"
    except assets.AssetHashMismatch:
        raise
    except assets.AssetUnavailable as error:
        if method == "bisenet":
            raise BenchError(f"parsing.method=bisenet needs BiSeNet weights: {error}") from error
        return None, f"BiSeNet weights unavailable ({error})"


def run(ctx: StepContext) -> dict[str, Any]:
    from numpy.lib.format import open_memmap

    started = time.time()
    weights, reason = resolve_weights(dict(ctx.options))
    frames = ctx.frames()
    n, height, width = frames.shape[:3]
    labels = open_memmap(ctx.out / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, height, width))
    soft = open_memmap(ctx.out / "face_soft.npy", mode="w+", dtype=np.uint8, shape=(n, height, width))
    if weights is not None:
        summary = _run_bisenet(ctx, weights, frames, labels, soft)
    else:
        summary = _run_offline(ctx, frames, labels, soft)
    labels.flush()
    soft.flush()
    fractions = {
        name: round(float(np.mean([np.mean(labels[i] == value) for i in range(0, n, 10)])), 4)
        for name, value in (("background", BACKGROUND), ("head", HEAD), ("neck", NECK), ("torso", TORSO))
    }
    return {
        "method": "bisenet" if weights is not None else "offline",
        "reason": reason,
        **summary,
        "label_fractions_every_10th_frame": fractions,
        "seconds": round(time.time() - started, 2),
    }


def _run_bisenet(ctx: StepContext, weights: Path, frames: np.ndarray, labels: np.ndarray, soft: np.ndarray) -> dict:
    import cv2
    import torch
    from tqdm import tqdm

    from bench.datasets.preprocess import bisenet
    from bench.hashing import sha256_file

    try:
        network = bisenet.load(weights)
    except (RuntimeError, KeyError, ValueError) as error:
        raise BenchError(
            f"{weights}: not a face-parsing.PyTorch BiSeNet state dict (79999_iter.pth) ({str(error).splitlines()[0]})"
        ) from error
    n, height, width = frames.shape[:3]
    batch = 8 if next(network.parameters()).is_cuda else 2
    for first in tqdm(range(0, n, batch), desc="parsing (BiSeNet)", unit="batch", disable=not ctx.progress):
        classes = bisenet.parse(network, frames[first : first + batch])
        for offset, frame_classes in enumerate(classes):
            frame_labels = labels_from_classes(frame_classes)
            frame_soft = face_soft(face_only_from_classes(frame_classes))
            if frame_classes.shape != (height, width):  # SyncTalk resizes both images back with nearest neighbour
                frame_labels = cv2.resize(frame_labels, (width, height), interpolation=cv2.INTER_NEAREST)
                frame_soft = cv2.resize(frame_soft, (width, height), interpolation=cv2.INTER_NEAREST)
            labels[first + offset] = frame_labels
            soft[first + offset] = frame_soft
    return {
        "weights": str(weights),
        "weights_sha256": sha256_file(weights),
        "device": str(next(network.parameters()).device),
        "torch": torch.__version__,
    }


def _run_offline(ctx: StepContext, frames: np.ndarray, labels: np.ndarray, soft: np.ndarray) -> dict:
    from tqdm import tqdm

    mesh = np.asarray(ctx.load("landmarks", "mesh.npy")[:, :, :2], dtype=np.float32)
    if len(mesh) != len(frames):
        raise BenchError(
            f"{ctx.folder('landmarks')}/mesh.npy has {len(mesh)} rows for {len(frames)} frames; redo the landmarks step"
        )
    usable = np.isfinite(mesh).all(axis=(1, 2)) & (np.ptp(mesh, axis=1) > 1).all(axis=1)
    if not usable.any():
        raise BenchError(f"{ctx.subject.video}: the landmarks step found no face in any frame; parsing needs one")
    with_face = np.nonzero(usable)[0]
    nearest = _nearest(with_face, len(frames))
    segmenter = OfflineParser(int(ctx.options["grabcut_size"]), int(ctx.options["gmm_refit_every"]))
    for index in tqdm(range(len(frames)), desc="parsing (offline)", unit="frame", disable=not ctx.progress):
        frame_labels, face_only = segmenter.parse(np.asarray(frames[index]), mesh[nearest[index]])
        labels[index] = frame_labels
        soft[index] = face_soft(face_only)
    missing = np.nonzero(~usable)[0]
    return {
        "grabcut_size": segmenter.work_size,
        "gmm_refit_every": segmenter.refit_every,
        "frames_without_face": missing.tolist(),  # parsed with the mesh of the nearest frame that has one
        "seconds_grabcut": round(segmenter.seconds_grabcut, 2),
        "seconds_split": round(segmenter.seconds_split, 2),
    }


def _nearest(indices: np.ndarray, n: int) -> np.ndarray:
    """For every frame 0..n-1, the closest of the sorted ``indices`` (earlier one on ties)."""
    frames = np.arange(n)
    right = np.clip(np.searchsorted(indices, frames), 0, len(indices) - 1)
    left = np.clip(right - 1, 0, len(indices) - 1)
    use_left = np.abs(frames - indices[left]) <= np.abs(indices[right] - frames)
    return np.where(use_left, indices[left], indices[right])


class OfflineParser:
    """Labels and face-only mask of one frame from its MediaPipe mesh, with GrabCut colour models kept across
    frames (see the module docstring)."""

    def __init__(self, work_size: int = 256, refit_every: int = 100):
        self.work_size = work_size
        self.refit_every = max(1, refit_every)
        self.background_model = np.zeros((1, 65), np.float64)
        self.foreground_model = np.zeros((1, 65), np.float64)
        self.frames_seen = 0
        self.seconds_grabcut = 0.0
        self.seconds_split = 0.0

    def parse(self, frame: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(labels uint8 (H, W), face-only bool (H, W)) of an RGB frame given its (478, 2) mesh points in pixels."""
        import cv2

        height, width = frame.shape[:2]
        face = FaceGeometry(points, width, height)
        started = time.time()
        silhouette = self.silhouette(frame, face)
        split_started = time.time()
        self.seconds_grabcut += split_started - started
        head = silhouette & face.head_zone()
        head |= face.hull_mask()
        rest = silhouette & ~head
        neck = self.neck(frame, face, head, rest)
        labels = np.zeros((height, width), np.uint8)
        labels[rest] = TORSO
        labels[neck] = NECK
        labels[head] = HEAD
        face_only = np.zeros((height, width), np.uint8)
        cv2.fillPoly(face_only, [np.round(points[list(FACE_OVAL)]).astype(np.int32)], 1)
        self.seconds_split += time.time() - split_started
        return labels, face_only.astype(bool)

    def silhouette(self, frame: np.ndarray, face: FaceGeometry) -> np.ndarray:
        """Boolean person mask at frame resolution (GrabCut at the working resolution, upsampled)."""
        import cv2

        height, width = frame.shape[:2]
        size = self.work_size
        small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        seeds = face.seeds(size)
        if self.frames_seen == 0:
            cv2.grabCut(small, seeds, None, self.background_model, self.foreground_model, 5, cv2.GC_INIT_WITH_MASK)
        else:
            cv2.grabCut(small, seeds, None, self.background_model, self.foreground_model, 1, cv2.GC_EVAL_FREEZE_MODEL)
            if self.frames_seen % self.refit_every == 0:
                cv2.grabCut(small, seeds, None, self.background_model, self.foreground_model, 1, cv2.GC_EVAL)
        self.frames_seen += 1
        person = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
        person = _keep_connected(person, face.hull_mask(size) | face.neck_core(size))
        person = _fill_small_holes(person, HOLE_FRACTION * size * size)
        upsampled = cv2.resize(person.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
        return upsampled | face.hull_mask()

    @staticmethod
    def neck(frame: np.ndarray, face: FaceGeometry, head: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """Skin-coloured part of ``rest`` near and under the chin that touches the head."""
        import cv2

        neck = np.zeros_like(rest)
        box = face.neck_box()
        if rest[box].sum() == 0:
            return neck
        samples = cv2.cvtColor(face.skin_samples(frame)[:, None, :], cv2.COLOR_RGB2YCrCb)[:, 0, 1:].astype(np.float32)
        mean = samples.mean(axis=0)
        inverse = np.linalg.inv(np.cov(samples.T) + np.eye(2) * 4.0)  # floor: chroma noise of a few levels
        chroma = cv2.cvtColor(np.ascontiguousarray(frame[box]), cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float32) - mean
        cr, cb = chroma[..., 0], chroma[..., 1]
        distance = inverse[0, 0] * cr * cr + 2 * inverse[0, 1] * cr * cb + inverse[1, 1] * cb * cb
        candidates = (rest[box] & (distance < SKIN_MAX_DISTANCE**2)).astype(np.uint8)
        candidates = cv2.morphologyEx(candidates, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        touching = cv2.dilate(head[box].astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        found = _fill_small_holes(_keep_connected(candidates, touching), HOLE_FRACTION * head.size)
        neck[box] = found.astype(bool) & rest[box]
        return neck


class FaceGeometry:
    """Regions derived from one frame's mesh points, at frame resolution or scaled to a square working size."""

    def __init__(self, points: np.ndarray, width: int, height: int):
        self.points = points
        self.width, self.height = width, height
        left, top = points.min(axis=0)
        right, _ = points.max(axis=0)
        self.chin = points[CHIN]
        self.centre_x = float(points[list(FACE_OVAL), 0].mean())
        self.face_width = float(right - left)
        self.face_height = float(self.chin[1] - top)
        self.top = float(top)
        jaw = points[list(JAW)]
        order = np.argsort(jaw[:, 0])
        self.jaw_x, self.jaw_y = jaw[order, 0], jaw[order, 1]

    def _scale(self, size: int | None) -> tuple[float, float, int, int]:
        if size is None:
            return 1.0, 1.0, self.width, self.height
        return size / self.width, size / self.height, size, size

    def hull_mask(self, size: int | None = None) -> np.ndarray:
        """Convex hull of all mesh points."""
        import cv2

        sx, sy, w, h = self._scale(size)
        mask = np.zeros((h, w), np.uint8)
        hull = cv2.convexHull(np.round(self.points * (sx, sy)).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        return mask.astype(bool)

    def head_ellipse(self, size: int | None = None) -> np.ndarray:
        """Where hair and ears may be: half-width HEAD_HALF_WIDTH face widths, from HEAD_ABOVE_MESH face heights
        above the mesh top down to the chin, tilted with the forehead-chin axis."""
        import cv2

        sx, sy, w, h = self._scale(size)
        top = self.top - HEAD_ABOVE_MESH * self.face_height
        axis = self.chin - self.points[FOREHEAD]
        angle = float(np.degrees(np.arctan2(-axis[0], axis[1])))
        centre = (self.centre_x * sx, (top + self.chin[1]) / 2 * sy)
        axes = (HEAD_HALF_WIDTH * self.face_width * sx, (self.chin[1] - top) / 2 * sy)
        mask = np.zeros((h, w), np.uint8)
        cv2.ellipse(mask, (centre, (2 * axes[0], 2 * axes[1]), angle), 1, -1)
        return mask.astype(bool)

    def jaw_line(self, size: int | None = None) -> np.ndarray:
        """Per column, the row of the jaw (face-oval points from jaw angle to jaw angle), flat beyond its ends."""
        sx, sy, w, _ = self._scale(size)
        return np.interp((np.arange(w) + 0.5) / sx, self.jaw_x, self.jaw_y) * sy

    def head_zone(self) -> np.ndarray:
        """Above the jaw line and inside the head ellipse."""
        rows = np.arange(self.height)[:, None]
        return (rows <= self.jaw_line()[None, :]) & self.head_ellipse()

    def neck_box(self) -> tuple[slice, slice]:
        """Where the neck may be: within NECK_HALF_WIDTH face widths of the face centre, from the highest jaw
        point down to NECK_BELOW_CHIN face heights under the chin."""
        half = NECK_HALF_WIDTH * self.face_width
        left = int(np.clip(np.floor(self.centre_x - half), 0, self.width))
        right = int(np.clip(np.ceil(self.centre_x + half) + 1, 0, self.width))
        top = int(np.clip(np.floor(self.jaw_y.min()), 0, self.height))
        bottom = int(np.clip(np.ceil(self.chin[1] + NECK_BELOW_CHIN * self.face_height) + 1, 0, self.height))
        return slice(top, bottom), slice(left, right)

    def neck_core(self, size: int | None = None) -> np.ndarray:
        """A strip under the chin that is the person in any talking-head frame (neck or collar)."""
        sx, sy, w, h = self._scale(size)
        mask = np.zeros((h, w), bool)
        top, bottom = np.rint((self.chin[1] + np.array([0.1, 0.35]) * self.face_height) * sy).astype(int)
        half = 0.15 * self.face_width * sx
        left, right = np.rint(self.chin[0] * sx + np.array([-half, half])).astype(int)
        mask[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
        return mask

    def seeds(self, size: int) -> np.ndarray:
        """GrabCut seed mask at the working size: see the module docstring."""
        import cv2

        _, sy, _, _ = self._scale(size)
        seeds = np.full((size, size), cv2.GC_PR_BGD, np.uint8)
        seeds[self.head_ellipse(size)] = cv2.GC_PR_FGD
        rows = np.arange(size)[:, None]
        below_chin = np.broadcast_to(rows > self.chin[1] * sy, (size, size))
        seeds[below_chin] = cv2.GC_PR_FGD
        border = np.zeros((size, size), bool)
        border[:2] = True
        border[:, :2] = True
        border[:, -2:] = True
        border &= ~below_chin & ~cv2.dilate(self.head_ellipse(size).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(
            bool
        )
        seeds[border] = cv2.GC_BGD
        seeds[self.hull_mask(size) | self.neck_core(size)] = cv2.GC_FGD
        return seeds

    def skin_samples(self, image: np.ndarray) -> np.ndarray:
        """Pixels of ``image`` (H, W, C) in 5 x 5 patches around cheek, forehead and chin mesh vertices."""
        centres = np.round(self.points[list(SKIN_SAMPLES)]).astype(int)
        offsets = np.arange(-2, 3)
        ys = np.clip(centres[:, 1, None, None] + offsets[None, :, None], 0, self.height - 1)
        xs = np.clip(centres[:, 0, None, None] + offsets[None, None, :], 0, self.width - 1)
        return image[ys, xs].reshape(-1, image.shape[-1])


def _keep_connected(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The connected components (8-neighbourhood) of ``mask`` that overlap ``anchor``."""
    import cv2

    count, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask.astype(np.uint8) * 0
    keep = np.zeros(count, bool)
    keep[np.unique(components[anchor & (components > 0)])] = True
    keep[0] = False
    return keep[components].astype(np.uint8)


def _fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """``mask`` with enclosed background regions smaller than ``max_area`` pixels filled."""
    import cv2

    _, holes, stats, _ = cv2.connectedComponentsWithStats((mask == 0).astype(np.uint8), connectivity=4)
    height, width = mask.shape
    x, y, w, h, area = stats.T
    inside = (x > 0) & (y > 0) & (x + w < width) & (y + h < height)
    fill = inside & (area < max_area)
    fill[0] = False
    return (mask.astype(bool) | fill[holes]).astype(np.uint8)
