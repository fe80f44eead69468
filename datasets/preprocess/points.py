"""Head Points Tracker (SyncTalk §3.3): keypoints on the rigid part of the head where the flow from a reference
frame is steadiest over time, and their tracks through every frame (read by the bundle-adjustment step).

What SyncTalk's ``extract_flow`` does, and this step with it:
1. dense flow from the reference frame (frame 2) to every frame, on the head;
2. on the rigid region, the temporal Laplacian (-0.5, 1, -0.5) of that flow over the first <= 2500 frames, its
   norm per pixel and frame; frames whose mean over the pixels is above 3x the overall mean are dropped; the
   per-pixel mean over the other frames, min-max scaled to 0-255 (truncated to integers), is the pixel's score;
3. in each 5x5 window (raster order) the lowest-score pixel is kept if its score is below 40 and no kept pixel lies
   within 5 px (Chebyshev distance, as SyncTalk's 11x11 neighbourhood test);
4. a keypoint's track is the keypoint plus the flow at it, frame by frame.
Where this step differs, by choice:
- the rigid region is the reference frame's head (parsing label 1) shrunk by ``edge_margin`` px, minus the lower
  face (hull of jaw 2-14, nose base 31-35 and mouth 48-67 of the 68 landmarks) and each eye with its brow (17-21
  with 36-41, 22-26 with 42-47: brows move with expressions, smoothly enough to pass the score), each widened by a
  fraction of the eye distance; SyncTalk takes the whole head mask and lets the score sort it out;
- at most ``max_keypoints`` are kept, spread by farthest-point sampling from the steadiest (0 keeps all, as SyncTalk);
- ``visible`` (SyncTalk has none): the backward flow (frame -> reference) at the tracked point must lead back within
  ``fb_threshold`` px; the frame, warped back by the flow, must match the reference around the point (mean absolute
  grey-level difference over 9x9 below ``residual_threshold``: dense flow interpolates across an occluder in both
  directions, so the forward-backward check alone misses occlusions); the point must lie in the frame and on that
  frame's head, and the frame must have a face;
- frames without a face take no part in the Laplacian (SyncTalk skips frames without landmarks).
Flow (``flow`` option), both directions, on the box around the rigid pixels plus 32 px, after warping each frame
onto the reference by a similarity fitted to the nose and eye-corner landmarks (UNFaceFlow likewise crops and
rescales the face in each frame before its flow): on cnn the head moves up to 49 px from frame 2, turning and
tilting, and direct flow lost the points there. The track is content-driven: landmark jitter moves the warp, and
the flow takes it back.
- ``"opencv"``: OpenCV's DIS optical flow, preset MEDIUM (dense, coarse-to-fine patch search with variational
  refinement). On a real cnn frame warped by a known rotation, scale and translation it was off by 0.16 px median
  (0.37 px 90th percentile), pyramidal Lucas-Kanade 21x21 by 0.31 px (0.62 px), Farneback costs 9x more; about
  6 ms per direction per frame at 512x512. Chosen for that.
- ``"raft"``: RAFT-small (``raft.py``) with princeton-vl's ``raft-small.pth``, the backbone of SyncTalk's UNFaceFlow
  (which then fine-tunes it with NNRT weights that are not available here); about 0.75 s per direction per frame
  on one CPU core.
The flow at the rigid pixels (N x P x 2 float32), its checks and its Laplacian norms (float16) go to temporary files
in the output folder, so the score and the tracks come from one flow pass; they are deleted at the end.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="points",
    version="1",
    depends=("parsing", "landmarks"),
    impl="bench.datasets.preprocess.points:run",
    description="Head Points Tracker: steadiest rigid-head keypoints (temporal Laplacian of dense flow) and their tracks",
    options={
        "flow": "opencv",  # "opencv" (DIS) or "raft" (RAFT-small)
        "reference_frame": 2,
        "max_keypoints": 200,  # 0: keep every selected point
        "score_frames": 2500,  # the Laplacian uses the first this many frames
        "window": 5,
        "score_threshold": 40,
        "min_distance": 5,
        "outlier_factor": 3.0,
        "edge_margin": 4,  # px kept free along the head outline
        "fb_threshold": 1.0,  # px, forward-backward check for `visible`
        "residual_threshold": 20.0,  # grey levels, mean absolute difference over 9x9 after warping, for `visible`
        "raft_iterations": 12,  # UNFaceFlow's setting
    },
)

FLOW_MARGIN = 32  # px around the rigid pixels' box where flow is computed
LOWER_FACE_MARGIN = 0.15  # x eye distance
EYE_MARGIN = 0.2  # x eye distance: lids, lashes, brow hair
LOWER_FACE = np.r_[2:15, 31:36, 48:68]  # 68-point indices: jaw, nose base, mouth
RIGHT_EYE, LEFT_EYE = np.r_[36:42], np.r_[42:48]
RIGHT_BROW_EYE, LEFT_BROW_EYE = np.r_[17:22, 36:42], np.r_[22:27, 42:48]
ALIGNMENT_POINTS = np.r_[27:36, 36, 39, 42, 45]  # nose and eye corners: they move with the skull
HEAD = 1  # parsing label
FLOAT16_MAX = 6e4

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
PairFlow = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # (ref crop, frame crop) -> fwd, bwd


# ---------------------------------------------------------------------------------------------------
# Rigid region and keypoint selection


def rigid_region(head: np.ndarray, lms68: np.ndarray, edge_margin: float) -> np.ndarray:
    """bool (H, W): head pixels at least ``edge_margin`` px inside the outline, off the lower face, eyes and brows."""
    import cv2
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(head) > edge_margin
    eye_distance = float(np.linalg.norm(lms68[RIGHT_EYE].mean(0) - lms68[LEFT_EYE].mean(0)))
    for indices, margin in ((LOWER_FACE, LOWER_FACE_MARGIN), (RIGHT_BROW_EYE, EYE_MARGIN), (LEFT_BROW_EYE, EYE_MARGIN)):
        hull = np.zeros(head.shape, np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(np.round(lms68[indices]).astype(np.int32)), 1)
        inside &= ndimage.distance_transform_edt(hull == 0) > margin * eye_distance
    return inside


def laplacian_norm(before: np.ndarray, centre: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Norm of the temporal Laplacian (-0.5, 1, -0.5) of flows (..., 2) of three consecutive frames."""
    return np.linalg.norm(centre - 0.5 * (before + after), axis=-1)


def stability_scores(laplacian: np.ndarray, usable: np.ndarray, outlier_factor: float,
                     chunk: int = 256) -> tuple[np.ndarray, dict[str, int]]:
    """Per-pixel mean of ``laplacian`` (R, P): row r holds the Laplacian norms centred on frame r + 1.

    A row is used when its three frames are ``usable`` (R + 2,) and its mean over the pixels is below
    ``outlier_factor`` times the mean of the usable rows. Returns (P,) float64 (zeros when no row is kept) and counts.
    """
    rows, pixels = laplacian.shape
    usable = np.asarray(usable, bool)
    row_usable = usable[:-2] & usable[1:-1] & usable[2:] if rows else np.zeros(0, bool)
    row_means = np.concatenate([np.asarray(laplacian[start : start + chunk], np.float64).mean(axis=1)
                                for start in range(0, rows, chunk)] or [np.zeros(0)])
    kept = row_usable.copy()
    if kept.any():
        kept &= row_means < outlier_factor * row_means[row_usable].mean()
    total = np.zeros(pixels)
    for start in range(0, rows, chunk):
        total += np.asarray(laplacian[start : start + chunk], np.float64)[kept[start : start + chunk]].sum(axis=0)
    counts = {"laplacian_frames": int(row_usable.sum()), "outlier_frames": int(row_usable.sum() - kept.sum())}
    return total / max(int(kept.sum()), 1), counts


def score_image(shape: tuple[int, int], pixels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """uint8 (H, W): ``values`` min-max scaled to 0-255 and truncated at ``pixels`` (x, y), 255 elsewhere."""
    image = np.full(shape, 255, np.uint8)
    span = float(values.max() - values.min()) if len(values) else 0.0
    scaled = (values - values.min()) / span * 255 if span > 0 else np.zeros(len(values))
    image[pixels[:, 1], pixels[:, 0]] = scaled.astype(np.uint8)
    return image


def select_keypoints(scores: np.ndarray, window: int, threshold: float, min_distance: int) -> np.ndarray:
    """(M, 2) int (x, y): per ``window`` x ``window`` tile the first lowest-score pixel below ``threshold``, dropped
    when an earlier kept one (tiles in raster order) lies within ``min_distance`` px (Chebyshev)."""
    rows, cols = scores.shape[0] // window, scores.shape[1] // window
    tiles = scores[: rows * window, : cols * window].reshape(rows, window, cols, window).transpose(0, 2, 1, 3)
    tiles = tiles.reshape(rows, cols, window * window)
    best = tiles.argmin(axis=-1)
    lowest = np.take_along_axis(tiles, best[..., None], axis=-1)[..., 0]
    tile_y, tile_x = np.mgrid[:rows, :cols]
    ys, xs = tile_y * window + best // window, tile_x * window + best % window
    # Greedy in raster order: sequential by nature, but only over candidates and their neighbouring tiles.
    reach = (min_distance - 1) // window + 1  # tiles farther apart than this cannot hold pixels within min_distance
    kept_at = np.full((rows, cols), -1)
    kept: list[tuple[int, int]] = []
    for row, col in zip(*np.nonzero(lowest < threshold)):
        x, y = int(xs[row, col]), int(ys[row, col])
        near = kept_at[max(row - reach, 0) : row + reach + 1, max(col - reach, 0) : col + reach + 1]
        if any(max(abs(kept[i][0] - x), abs(kept[i][1] - y)) <= min_distance for i in near[near >= 0]):
            continue
        kept_at[row, col] = len(kept)
        kept.append((x, y))
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def spread_subset(points: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` points by farthest-point sampling, starting from the lowest score (all when fewer)."""
    if count <= 0 or len(points) <= count:
        return np.arange(len(points))
    chosen = [int(np.argmin(scores))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    for _ in range(count - 1):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    return np.sort(np.array(chosen))


# ---------------------------------------------------------------------------------------------------
# Dense flow from the reference frame


class DisFlow:
    """OpenCV DIS optical flow (preset MEDIUM) on grey levels, both directions."""

    name = "DIS optical flow (OpenCV, preset MEDIUM), reference -> frame and back"

    def __init__(self) -> None:
        import cv2

        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, reference: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grey = [self._cv2.cvtColor(np.ascontiguousarray(image), self._cv2.COLOR_RGB2GRAY) for image in (reference, frame)]
        return self._dis.calc(grey[0], grey[1], None), self._dis.calc(grey[1], grey[0], None)


class RaftFlow:
    """RAFT-small (princeton-vl weights), both directions in one batch."""

    def __init__(self, iterations: int) -> None:
        from bench.datasets.preprocess.raft import RaftSmall

        self._raft = RaftSmall(iterations=iterations)
        self.name = f"RAFT-small ({iterations} iterations, princeton-vl raft-small.pth), reference -> frame and back"

    def __call__(self, reference: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flows = self._raft(np.stack([reference, frame]), np.stack([frame, reference]))
        return flows[0], flows[1]


@dataclass
class RigidFlow:
    """Flow from the reference frame at each rigid pixel, for every frame, and how far to trust it."""

    pixels: np.ndarray  # (P, 2) int x, y in the reference frame
    forward: np.ndarray  # (N, P, 2) float32 displacement reference -> frame
    fb_error: np.ndarray  # (N, P) float16 forward-backward error in px; inf where the point leaves the flow window
    residual: np.ndarray  # (N, P) float16 mean absolute grey-level difference, reference vs frame warped back, 9x9
    laplacian: np.ndarray  # (N - 2, P) float16 norm of the temporal Laplacian of ``forward``, centred on frame r + 1


def sample_at(image: np.ndarray, points: np.ndarray, width: int = 1024) -> np.ndarray:
    """Bilinear samples of ``image`` at float ``points`` (P, 2) x, y; OpenCV's remap maps must stay under 32767 rows,
    so the points are laid out in rows of ``width``."""
    import cv2

    rows = -(-len(points) // width)
    padded = np.zeros((rows * width, 2), dtype=np.float32)
    padded[: len(points)] = points
    sampled = cv2.remap(image, padded[:, 0].reshape(rows, width), padded[:, 1].reshape(rows, width), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    return sampled.reshape(rows * width, -1)[: len(points)]


def flow_pass(frames: np.ndarray, reference: int, pixels: np.ndarray, window: Window, alignments: np.ndarray,
              pair_flow: PairFlow, folder: Path, progress: bool = False) -> RigidFlow:
    """Flow from ``frames[reference]`` to every frame at ``pixels``, in memory-mapped files under ``folder``.

    Frame i is first warped onto the reference by ``alignments[i]`` (2 x 3, reference pixel -> frame pixel, e.g. a
    similarity fitted to landmarks), so the flow only has to find what that rough alignment leaves; both are computed
    on ``window`` (x0, y0, x1, y1), which must contain the ``pixels``. A pixel p whose flow in the aligned frame is f
    lies at alignments[i] (p + f) in frame i.
    """
    import cv2
    from tqdm import tqdm

    count, size = len(frames), (len(frames), len(pixels))
    forward = np.lib.format.open_memmap(folder / "forward.npy", mode="w+", dtype=np.float32, shape=(*size, 2))
    fb_error = np.lib.format.open_memmap(folder / "fb_error.npy", mode="w+", dtype=np.float16, shape=size)
    residual = np.lib.format.open_memmap(folder / "residual.npy", mode="w+", dtype=np.float16, shape=size)
    laplacian = np.lib.format.open_memmap(folder / "laplacian.npy", mode="w+", dtype=np.float16,
                                          shape=(max(count - 2, 0), len(pixels)))
    recent: list[np.ndarray] = []  # the last three displacements, for the Laplacian
    x0, y0, x1, y1 = window
    crop_size = (x1 - x0, y1 - y0)
    first = np.ascontiguousarray(frames[reference, y0:y1, x0:x1])
    first_grey = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY).astype(np.float32)
    local = pixels - (x0, y0)
    grid = np.indices(first.shape[:2], dtype=np.float32)
    for index in tqdm(range(count), desc="points: flow", unit="frame", disable=not progress):
        to_frame = np.asarray(alignments[index], np.float64) @ [[1, 0, x0], [0, 1, y0], [0, 0, 1]]  # crop -> frame
        second = cv2.warpAffine(np.asarray(frames[index]), to_frame, crop_size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        fwd, bwd = pair_flow(first, second)
        displacement = fwd[local[:, 1], local[:, 0]]
        target = (local + displacement).astype(np.float32)
        error = np.minimum(np.linalg.norm(displacement + sample_at(bwd, target), axis=1), FLOAT16_MAX)
        error[(target < 0).any(axis=1) | (target[:, 0] > crop_size[0] - 1) | (target[:, 1] > crop_size[1] - 1)] = np.inf
        # occlusions: dense flow interpolates across them in both directions, so compare what is seen
        second_grey = cv2.cvtColor(second, cv2.COLOR_RGB2GRAY).astype(np.float32)
        warped = cv2.remap(second_grey, grid[1] + fwd[..., 0], grid[0] + fwd[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        difference = cv2.blur(np.abs(first_grey - warped), (9, 9))
        position = target @ to_frame[:, :2].T + to_frame[:, 2]
        forward[index] = position - pixels
        fb_error[index] = error
        residual[index] = difference[local[:, 1], local[:, 0]]
        recent = [*recent[-2:], forward[index]]
        if index >= 2:
            laplacian[index - 2] = laplacian_norm(*recent)
    return RigidFlow(pixels, forward, fb_error, residual, laplacian)


def landmark_alignments(lms68: np.ndarray, usable: np.ndarray, reference: int) -> np.ndarray:
    """(N, 2, 3) similarity transforms taking the reference frame's eye corners and nose (68-point 27-36, 36, 39, 42,
    45) onto each frame's (least median of squares); the identity for frames not ``usable``."""
    import cv2

    alignments = np.tile(np.eye(3)[:2], (len(lms68), 1, 1))
    source = np.asarray(lms68[reference, ALIGNMENT_POINTS], np.float64)
    for index in np.flatnonzero(usable):
        matrix, _ = cv2.estimateAffinePartial2D(source, np.asarray(lms68[index, ALIGNMENT_POINTS], np.float64),
                                                method=cv2.LMEDS)
        if matrix is not None:
            alignments[index] = matrix
    return alignments


def track(flow: RigidFlow, columns: np.ndarray, size: tuple[int, int], fb_threshold: float,
          residual_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tracks (N, K, 2) float32 of the rigid pixels ``columns``, their forward-backward errors (N, K) float32, and
    whether each is seen: in the image (``size`` = width, height), forward-backward error below ``fb_threshold`` px
    and grey-level residual below ``residual_threshold``."""
    start = flow.pixels[columns].astype(np.float32)
    tracks = (start[None] + np.asarray(flow.forward[:, columns])).astype(np.float32)
    fb_error = np.asarray(flow.fb_error[:, columns], np.float32)
    residual = np.asarray(flow.residual[:, columns], np.float32)
    inside = (tracks >= 0).all(axis=2) & (tracks[..., 0] <= size[0] - 1) & (tracks[..., 1] <= size[1] - 1)
    return tracks, fb_error, inside & (fb_error < fb_threshold) & (residual < residual_threshold)


def rigid_window(rigid: np.ndarray, margin: int = FLOW_MARGIN) -> Window:
    """The box around the rigid pixels grown by ``margin``, inside the image."""
    rows, cols = np.flatnonzero(rigid.any(axis=1)), np.flatnonzero(rigid.any(axis=0))
    height, width = rigid.shape
    return max(cols[0] - margin, 0), max(rows[0] - margin, 0), min(cols[-1] + 1 + margin, width), min(
        rows[-1] + 1 + margin, height)


# ---------------------------------------------------------------------------------------------------
# The step


def pick_reference(wanted: int, usable: np.ndarray) -> int:
    """``wanted`` (clipped to the clip) or, when it has no face, the nearest frame that has one."""
    candidates = np.flatnonzero(usable)
    if not len(candidates):
        raise BenchError("points: no frame has both a head mask (parsing) and 68 landmarks; check those steps' summaries")
    wanted = min(max(int(wanted), 0), len(usable) - 1)
    return int(candidates[np.argmin(np.abs(candidates - wanted))])


def run(ctx: StepContext) -> dict[str, Any]:
    from tqdm import tqdm

    options = ctx.options
    if options["flow"] not in ("opencv", "raft"):
        raise BenchError(f"points.flow={options['flow']!r}: use \"opencv\" (DIS) or \"raft\" (RAFT-small)")
    started = time.perf_counter()
    frames = ctx.frames()
    labels = ctx.load("parsing", "labels.npy")
    lms68 = ctx.load("landmarks", "lms68.npy")
    count, height, width = frames.shape[:3]
    if labels.shape != (count, height, width) or len(lms68) != count:
        raise BenchError(f"points: parsing labels {labels.shape} / landmarks {lms68.shape} do not match the {count} "
                         f"frames of {width}x{height}; re-run those steps (bench prepare --force parsing,landmarks)")
    found = ctx.load("landmarks", "found.npy")[:, 1]  # the 68-point detector saw a face (not gap-filled)
    has_head = np.array([(labels[index] == HEAD).any() for index in tqdm(range(count), desc="points: heads",
                                                                         disable=not ctx.progress)])
    has_face = has_head & found
    reference = pick_reference(options["reference_frame"], has_face)

    rigid = rigid_region(labels[reference] == HEAD, np.asarray(lms68[reference], np.float64), options["edge_margin"])
    ys, xs = np.nonzero(rigid)
    pixels = np.stack([xs, ys], axis=1)
    if not len(pixels):
        raise BenchError(f"points: frame {reference} leaves no rigid head pixels (head mask minus eyes and lower face); "
                         "check its parsing labels and landmarks, or lower points.edge_margin")
    alignments = landmark_alignments(lms68, has_face, reference)
    pair_flow = DisFlow() if options["flow"] == "opencv" else RaftFlow(options["raft_iterations"])

    with tempfile.TemporaryDirectory(dir=ctx.out, prefix=".flow-") as scratch:
        flow_started = time.perf_counter()
        flow = flow_pass(frames, reference, pixels, rigid_window(rigid), alignments, pair_flow, Path(scratch),
                         ctx.progress)
        flow_seconds = time.perf_counter() - flow_started

        selection_started = time.perf_counter()
        scored = min(count, int(options["score_frames"]))
        mean, counts = stability_scores(flow.laplacian[: max(scored - 2, 0)], has_face[:scored],
                                        float(options["outlier_factor"]))
        scores = score_image((height, width), pixels, mean)
        candidates = select_keypoints(scores, int(options["window"]), options["score_threshold"],
                                      int(options["min_distance"]))
        candidates = candidates[rigid[candidates[:, 1], candidates[:, 0]]]
        if not len(candidates):
            raise BenchError(f"points: no pixel scored below {options['score_threshold']} in any window; "
                             "raise points.score_threshold")
        chosen = spread_subset(candidates, scores[candidates[:, 1], candidates[:, 0]], int(options["max_keypoints"]))
        keypoints = candidates[chosen]
        columns = np.flatnonzero(rigid.ravel()).searchsorted(keypoints[:, 1] * width + keypoints[:, 0])
        selection_seconds = time.perf_counter() - selection_started

        tracks, fb_error, consistent = track(flow, columns, (width, height), float(options["fb_threshold"]),
                                             float(options["residual_threshold"]))
    column = np.clip(np.round(tracks[..., 0]).astype(np.int64), 0, width - 1)
    row = np.clip(np.round(tracks[..., 1]).astype(np.int64), 0, height - 1)
    on_head = np.stack([labels[index][row[index], column[index]] == HEAD for index in range(count)])
    visible = consistent & on_head & has_face[:, None]

    np.save(ctx.out / "keypoints.npy", keypoints.astype(np.float32))
    np.save(ctx.out / "tracks.npy", tracks)
    np.save(ctx.out / "visible.npy", visible)
    checked = fb_error[has_face]
    checked = checked[np.isfinite(checked)]
    return {
        "keypoints": len(keypoints),
        "candidates": len(candidates),
        "method": pair_flow.name,
        "flow": options["flow"],
        "reference_frame": reference,
        "rigid_pixels": len(pixels),
        "score_frames": scored,
        **counts,
        "frames_without_face": np.flatnonzero(~has_face).tolist(),
        "visible_fraction": round(float(visible.mean()), 4),
        "median_fb_error_px": round(float(np.median(checked)), 4) if len(checked) else None,
        "seconds": {
            "flow": round(flow_seconds, 2),
            "flow_ms_per_frame": round(1000 * flow_seconds / count, 1),
            "selection": round(selection_seconds, 2),
            "total": round(time.perf_counter() - started, 2),
        },
    }
