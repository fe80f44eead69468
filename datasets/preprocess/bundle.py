"""Preparation step ``bundle``: the Bundle Adjustment of SyncTalk's Head-Sync Stabilizer (§3.3, Eq. 7-8).

Given the pose step's per-frame head poses (focal fixed) and the points step's tracked head keypoints
(``tracks.npy`` (N, K, 2) px, ``visible.npy`` (N, K)), two stages refine them; only visible track points count:

1. Eq. 7, poses held: the K keypoints' 3D positions in the head frame. SyncTalk starts them at 0 and runs 500
   Adam steps at lr 1e-2. Here each keypoint starts where its first visible pixel's ray meets the head model's
   plane z = 0 (through the model's centre) and is then triangulated exactly: ``init_iterations`` batched
   Levenberg-Marquardt steps, each keypoint's 3x3 system independent of the others (with the poses held, Eq. 7
   separates by keypoint, so this reaches its minimum instead of approaching it).
2. Eq. 8: keypoints, rotations and translations jointly with Adam (torch), ``steps`` steps from ``lr`` decaying
   on a cosine to ``lr`` / 100. SyncTalk runs 8000 steps at a constant 1e-4 on Euler angles (rad), translations (m)
   and points (m) on a GPU. Here the units are the same (rotation as an axis-angle increment on the pose step's
   rotation, translation and points in metres) and the defaults, 400 steps from 5e-4 with the decay, converge
   within the CPU budget: on the cnn clip 1200 steps left the mean track error unchanged to 1e-4 px. Torch runs
   on one thread here (these small ops gain nothing from more, and lose much on a busy machine).

Eq. 8 is unchanged by a similarity of the head frame (rotate, shift and scale the keypoints, undo it in every
pose), so Adam may drift along it; afterwards that similarity is fixed in least squares to the pose step's poses
(``align_gauge``): the frame-to-frame motion comes from the tracks, the head frame stays the face model's.

Both stages minimise a Huber loss (``huber_px``) on each visible point's pixel distance, averaged per coordinate:
equal to SyncTalk's MSE for inliers, and robust to tracks that drift (the paper's Eq. 7-8 sum plain distances).

Output ``pose.npz``: the pose step's keys with the refined rotation, translation and euler, reproj_error
recomputed from the pose step's fitted face model and landmarks under the refined poses, plus ``points3d``
(K, 3) metres in the head frame and ``ba_reproj_error`` (N,) the mean track reprojection error in px per frame
(NaN where a frame has no visible track point). The summary gives the jitter (median over frames of the norm of
the second difference of the Euler angles in degrees and of the translation in mm) and the mean track
reprojection error before (pose step's poses with the stage-1 points) and after.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.datasets.preprocess.core import Step, StepContext
from bench.datasets.preprocess.pose import (
    Camera,
    huber_cost,
    huber_weights,
    pixels_of,
    project,
    projection_jacobian,
    rotation_to_euler,
    to_camera,
)

STEP = Step(
    name="bundle",
    version="1",
    depends=("pose", "points"),
    impl="bench.datasets.preprocess.bundle:run",
    description="Bundle adjustment of the head poses on the tracked keypoints: keypoints first with poses held, "
    "then keypoints, rotations and translations jointly (Adam)",
    options={"init_iterations": 20, "steps": 400, "lr": 5e-4, "huber_px": 2.0},
)

FINAL_LR_FRACTION = 0.01


def run(ctx: StepContext) -> dict[str, Any]:
    started = time.time()
    with np.load(ctx.folder("pose") / "pose.npz") as stored:
        pose = {name: stored[name] for name in stored.files}
    tracks = np.asarray(ctx.load("points", "tracks.npy"), np.float64)
    visible = np.asarray(ctx.load("points", "visible.npy"), bool) & np.isfinite(tracks).all(axis=-1)
    if tracks.shape[:2] != visible.shape or len(tracks) != len(pose["rotation"]):
        raise BenchError(
            f"points step tracks {tracks.shape} / visible {visible.shape} do not match the pose step's "
            f"{len(pose['rotation'])} frames; redo the points step"
        )
    if not visible.any():
        raise BenchError("the points step has no visible keypoint in any frame; bundle adjustment needs tracks")
    camera = Camera(float(pose["focal"]), float(pose["cx"]), float(pose["cy"]))
    huber_px = float(ctx.options["huber_px"])
    rotation, translation = pose["rotation"].astype(np.float64), pose["translation"].astype(np.float64)

    stage1_started = time.time()
    points = triangulate(tracks, visible, rotation, translation, camera, huber_px, int(ctx.options["init_iterations"]))
    before = track_errors(points, tracks, visible, rotation, translation, camera)
    stage1_seconds = time.time() - stage1_started

    stage2_started = time.time()
    refined_rotation, refined_translation, refined_points = adjust(
        points, tracks, visible, rotation, translation, camera, huber_px,
        steps=int(ctx.options["steps"]), lr=float(ctx.options["lr"]), progress=ctx.progress,
    )
    fitted = pose["fitted"]
    refined_rotation, refined_translation, refined_points = align_gauge(
        refined_rotation, refined_translation, refined_points, rotation, translation, fitted
    )
    after = track_errors(refined_points, tracks, visible, refined_rotation, refined_translation, camera)
    stage2_seconds = time.time() - stage2_started

    landmarks = np.asarray(ctx.load("landmarks", str(pose["landmark_file"])), np.float64)[
        :, pose["landmark_columns"], :2
    ]
    reproj_error = np.linalg.norm(
        project(pose["model_points"].astype(np.float64), refined_rotation, refined_translation, camera) - landmarks,
        axis=-1,
    ).mean(axis=1)
    reproj_error[~pose["fitted"]] = np.nan
    euler = rotation_to_euler(refined_rotation)
    np.savez_compressed(
        ctx.out / "pose.npz",
        **{**pose, "rotation": refined_rotation, "translation": refined_translation, "euler": euler,
           "reproj_error": reproj_error, "points3d": refined_points, "ba_reproj_error": after},
    )
    return {
        "keypoints": int(tracks.shape[1]),
        "visible_observations": int(visible.sum()),
        "frames_without_visible_keypoints": np.flatnonzero(~visible.any(axis=1)).tolist(),
        "focal": camera.focal,
        "jitter_rotation_deg": {"before": jitter(pose["euler"], np.degrees(1.0)), "after": jitter(euler, np.degrees(1.0))},
        "jitter_translation_mm": {"before": jitter(translation, 1000.0), "after": jitter(refined_translation, 1000.0)},
        "mean_track_error_px": {"before": float(np.nanmean(before)), "after": float(np.nanmean(after))},
        "median_landmark_error_px": {"pose_step": float(np.nanmedian(pose["reproj_error"])),
                                     "after": float(np.nanmedian(reproj_error))},
        "seconds": {"stage1": round(stage1_seconds, 2), "stage2": round(stage2_seconds, 2),
                    "total": round(time.time() - started, 2)},
    }


def jitter(series: np.ndarray, scale: float) -> float:
    """Median over frames of the norm of the second difference of (N, 3) ``series`` times ``scale``."""
    if len(series) < 3:
        return 0.0
    return float(np.median(np.linalg.norm(np.diff(np.asarray(series, np.float64), n=2, axis=0), axis=1)) * scale)


def track_errors(points, tracks, visible, rotation, translation, camera) -> np.ndarray:
    """(N,) mean pixel distance of the visible track points to the projected keypoints; NaN without any."""
    distance = np.linalg.norm(project(points, rotation, translation, camera) - np.nan_to_num(tracks), axis=-1)
    counts = visible.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, (distance * visible).sum(axis=1) / counts, np.nan)


def triangulate(tracks, visible, rotation, translation, camera, huber_px: float, iterations: int) -> np.ndarray:
    """Stage 1 (Eq. 7): keypoints (K, 3) in the head frame minimising their Huber reprojection loss, poses held."""
    n_frames, n_points = visible.shape
    observed = np.nan_to_num(tracks)
    first = visible.argmax(axis=0)
    pixel = observed[first, np.arange(n_points)]
    ray = np.stack([(pixel[:, 0] - camera.cx) / camera.focal, -(pixel[:, 1] - camera.cy) / camera.focal,
                    -np.ones(n_points)], axis=-1)
    rotation_first, translation_first = rotation[first], translation[first]
    model_z = rotation_first[:, :, 2]  # the head frame's z axis in camera coordinates
    scale = (model_z * translation_first).sum(-1) / (model_z * ray).sum(-1)
    points = np.einsum("kji,kj->ki", rotation_first, scale[:, None] * ray - translation_first)
    mask = visible.astype(np.float64)

    def costs(points: np.ndarray) -> np.ndarray:
        distance = np.linalg.norm(pixels_of(to_camera(points, rotation, translation), camera) - observed, axis=-1)
        return (huber_cost(distance, huber_px) * mask).sum(axis=0)

    damping = np.full(n_points, 1e-3)
    current = costs(points)
    for _ in range(iterations):
        camera_points = to_camera(points, rotation, translation)
        residual = pixels_of(camera_points, camera) - observed
        weight = huber_weights(np.linalg.norm(residual, axis=-1), huber_px) * mask  # (N, K)
        d_pixels = projection_jacobian(camera_points, camera.focal).reshape(n_frames, 2 * n_points, 3)
        jacobian = (d_pixels @ rotation).reshape(n_frames, n_points, 2, 3)
        weighted = jacobian * weight[..., None, None]
        normal = np.einsum("nkai,nkaj->kij", weighted, jacobian)
        gradient = np.einsum("nkai,nka->ki", weighted, residual)
        diagonal = np.diagonal(normal, axis1=1, axis2=2)
        damped = normal + (damping[:, None] * (diagonal + 1e-9))[..., None] * np.eye(3)
        candidate_points = points - np.linalg.solve(damped, gradient[..., None])[..., 0]
        candidate = costs(candidate_points)
        better = candidate < current
        points = np.where(better[:, None], candidate_points, points)
        current = np.where(better, candidate, current)
        damping = np.clip(np.where(better, damping * 0.3, damping * 10.0), 1e-9, 1e9)
    return points


def adjust(points, tracks, visible, rotation, translation, camera, huber_px: float, steps: int, lr: float,
           progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage 2 (Eq. 8): keypoints, rotations (axis-angle increments on ``rotation``) and translations jointly with
    Adam; returns (rotation (N, 3, 3), translation (N, 3), points (K, 3))."""
    import torch
    from tqdm import tqdm

    dtype = torch.float32
    observed = torch.as_tensor(np.nan_to_num(tracks), dtype=dtype)
    mask = torch.as_tensor(visible, dtype=dtype)
    base_rotation = torch.as_tensor(rotation, dtype=dtype)
    increment = torch.zeros(len(rotation), 3, dtype=dtype, requires_grad=True)
    shift = torch.as_tensor(translation, dtype=dtype).clone().requires_grad_(True)
    keypoints = torch.as_tensor(points, dtype=dtype).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([keypoints, increment, shift], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1), eta_min=lr * FINAL_LR_FRACTION)
    count = mask.sum().clamp(min=1.0)

    def current_rotation() -> torch.Tensor:
        return _rotation_from_vector(increment) @ base_rotation

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these small ops run faster on one thread, and far faster on a shared machine
    try:
        for _ in tqdm(range(steps), desc="bundle adjustment", disable=not progress):
            loss = _track_loss(keypoints, current_rotation(), shift, observed, mask, camera, huber_px) / count
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        return current_rotation().numpy(), shift.detach().numpy().copy(), keypoints.detach().numpy().copy()


def _track_loss(keypoints, rotation, shift, observed, mask, camera, huber_px: float):
    """Sum over visible observations of the Huber loss (torch's, half the squared distance for inliers) of the
    pixel distance between projected keypoints and tracks."""
    import torch

    camera_points = keypoints @ rotation.transpose(1, 2) + shift[:, None, :]
    depth = camera_points[..., 2]
    u = camera.cx - camera.focal * camera_points[..., 0] / depth
    v = camera.cy + camera.focal * camera_points[..., 1] / depth
    distance = torch.sqrt((u - observed[..., 0]) ** 2 + (v - observed[..., 1]) ** 2 + 1e-12)
    huber = torch.nn.functional.huber_loss(distance, torch.zeros_like(distance), reduction="none", delta=huber_px)
    return (huber * mask).sum()


def align_gauge(rotation, translation, points, reference_rotation, reference_translation, frames=None):
    """Fix the similarity of the head frame that Eq. 8 leaves free (rotating, shifting and scaling the keypoints
    with the opposite change in every pose reprojects identically): X -> s Q^T (X - c) with Q, then s and c,
    chosen in least squares so the poses match the reference poses (the pose step's) over ``frames`` (a mask;
    all by default). Returns (rotation R Q, translation s t + R s c, points) for all frames."""
    use = slice(None) if frames is None else np.asarray(frames, bool)
    correlation = np.einsum("nji,njk->ik", rotation[use], reference_rotation[use])  # sum of R_n^T P_n
    u, _, vt = np.linalg.svd(correlation)
    flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    q = u @ flip @ vt
    # s t_n + R_n d ~ t_ref_n, linear in (d = s c, s)
    design = np.concatenate([rotation[use], translation[use][..., None]], axis=-1).reshape(-1, 4)
    solution = np.linalg.lstsq(design, reference_translation[use].reshape(-1), rcond=None)[0]
    shift, scale = solution[:3], solution[3]
    return rotation @ q, scale * translation + rotation @ shift, (scale * points - shift) @ q


def _rotation_from_vector(vector):
    """Rodrigues' formula in torch, differentiable at 0 (the Taylor terms take over for tiny angles)."""
    import torch

    angle_squared = (vector**2).sum(-1, keepdim=True)[..., None]
    small = angle_squared < 1e-12
    angle = torch.sqrt(torch.where(small, torch.ones_like(angle_squared), angle_squared))
    sine_term = torch.where(small, 1.0 - angle_squared / 6.0, torch.sin(angle) / angle)
    cosine_term = torch.where(small, 0.5 - angle_squared / 24.0, (1.0 - torch.cos(angle)) / angle**2)
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1),
                        torch.stack([-y, x, zero], -1)], -2)
    return torch.eye(3, dtype=vector.dtype) + sine_term * skew + cosine_term * (skew @ skew)
