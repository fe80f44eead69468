"""Preparation step ``pose``: the Head Motion Tracker of SyncTalk §3.3 (Eq. 5-6), a per-frame rigid head pose
fitted to the landmarks with a 3D face model (``face_model.py``: MediaPipe's canonical mesh against the
FaceLandmarker mesh by default, or BFM 2009 against iBUG-68 points as SyncTalk does).

Eq. 5: for each candidate focal length (``focal_min`` to ``focal_max`` by ``focal_step``; by default SyncTalk's
500-1450 step 50, scaled by W/512) the poses of every ``keyframe_stride``-th frame are fitted afresh and the focal
with the smallest landmark error is kept. Eq. 6: with that focal, every frame's rotation and translation are
fitted. The error is a Huber loss on each landmark's pixel distance (quadratic up to ``huber_px``, linear beyond:
robust to landmark outliers and to the non-rigid mouth and eyes), averaged per coordinate as SyncTalk's MSE.

A subject's face is not the model's, so a shared shape correction is fitted too, with a prior that keeps it
small, as SyncTalk fits BFM identity coefficients: for MediaPipe a per-vertex offset costing ``shape_weight``
times the mean of its squared millimetres; for BFM the identity and per-frame expression coefficients with
SyncTalk's weights 8 and 0.5 on their mean squares. Shape (and expression) updates start after a third of the
iterations, once the poses have settled (SyncTalk starts identity/expression after half of its steps).
Landmarks pin the focal only weakly (perspective is a small effect at 1 m, and a shape correction can absorb part
of it): on the real cnn clip the search curve is flat within 1 % from 1100 to 1450 px, and its minimum moves with
the prior (about 700, 1400 and 2100 px for ``shape_weight`` 0.1, 1 and 10). On exact synthetic landmarks it finds
the true focal.

The fit is a batched Levenberg-Marquardt over all frames at once (IRLS weights for the Huber loss, rotations
updated multiplicatively by exp([w]x) on the left), alternating with a Gauss-Newton step of the shape correction
with the poses held; numpy float64, no torch needed.

Conventions: model point X (metres) -> Xc = R X + t, camera looking down -Z (t_z < 0), u = -f Xc_x / Xc_z + cx,
v = f Xc_y / Xc_z + cy, cx = W/2, cy = H/2. Euler angles (theta, phi, psi) are SyncTalk's ``euler2rot``
(``data_utils/face_tracking/util.py``, also AD-NeRF's): its three matrices are built column by column
(``torch.cat(..., 2)``), giving R = Rx(theta) @ Ry(phi) @ Rz(-psi) in the usual right-handed matrices, i.e. the
z angle enters with the opposite sign to the x and y angles. ``rotation_to_euler`` inverts it (phi in [-90°, 90°]).

Output ``pose.npz``: focal, cx, cy (floats), rotation (N, 3, 3), translation (N, 3) metres, euler (N, 3)
radians, reproj_error (N,) mean landmark distance in px (NaN where a frame had no landmarks), face_model (name),
fitted (N,) bool (False: no landmarks, pose interpolated from the neighbouring frames), model_points (N, V, 3)
float32 the fitted subject model per frame (model plus shape correction plus expression), landmark_file and
landmark_columns (which landmarks-step array and columns the model points pair with).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.datasets.preprocess import face_model
from bench.datasets.preprocess.core import Step, StepContext
from bench.datasets.preprocess.face_model import FaceModel

STEP = Step(
    name="pose",
    version="1",
    depends=("landmarks",),
    impl="bench.datasets.preprocess.pose:run",
    description="Head Motion Tracker: focal search on keyframes, then per-frame head rotation and translation "
    "fitted to the landmarks with a 3D face model (MediaPipe canonical mesh or BFM)",
    options={
        "face_model": "mediapipe",
        "bfm_path": None,
        "focal": None,  # fixed focal in px (skips the search)
        "focal_min": None,  # None: 500 * W / 512
        "focal_max": None,  # None: 1450 * W / 512
        "focal_step": None,  # None: 50 * W / 512
        "keyframe_stride": 10,
        "huber_px": 2.0,
        "shape_weight": 1.0,
        "iterations": 20,
    },
)

REFERENCE_WIDTH = 512  # SyncTalk's focal range is for 512-px frames
SYNCTALK_FOCALS = (500.0, 1450.0, 50.0)
MILLIMETRE = 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Rotations


def euler_to_rotation(euler: np.ndarray) -> np.ndarray:
    """SyncTalk's euler2rot: (..., 3) angles (theta, phi, psi) in radians -> (..., 3, 3) Rx(theta) Ry(phi) Rz(-psi)."""
    theta, phi, psi = np.moveaxis(np.asarray(euler, np.float64), -1, 0)
    return _axis_rotation(theta, 0) @ _axis_rotation(phi, 1) @ _axis_rotation(-psi, 2)


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """The inverse of ``euler_to_rotation`` for (..., 3, 3) rotations, phi in [-pi/2, pi/2]."""
    r = np.asarray(rotation, np.float64)
    theta = np.arctan2(-r[..., 1, 2], r[..., 2, 2])
    phi = np.arcsin(np.clip(r[..., 0, 2], -1.0, 1.0))
    psi = -np.arctan2(-r[..., 0, 1], r[..., 0, 0])
    return np.stack([theta, phi, psi], axis=-1)


def _axis_rotation(angle: np.ndarray, axis: int) -> np.ndarray:
    """Right-handed rotation matrices by ``angle`` about coordinate axis 0, 1 or 2."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    matrix = np.zeros((*np.shape(angle), 3, 3))
    matrix[..., axis, axis] = 1.0
    matrix[..., i, i] = c
    matrix[..., j, j] = c
    matrix[..., i, j] = -s
    matrix[..., j, i] = s
    return matrix


def rotation_from_vector(vector: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) axis-angle vectors -> (..., 3, 3) rotations."""
    vector = np.asarray(vector, np.float64)
    angle = np.linalg.norm(vector, axis=-1)[..., None, None]
    k = _skew(vector)
    small = angle < 1e-8
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, (1.0 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * k + b * (k @ k)


def rotation_angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees of the rotation taking ``b`` to ``a`` for stacks of rotation matrices."""
    cosine = (np.trace(np.swapaxes(b, -1, -2) @ a, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) with _skew(a) @ b = a x b."""
    zero = np.zeros_like(v[..., 0])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack(
        [np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], axis=-2
    )


# ---------------------------------------------------------------------------------------------------------------
# Projection


@dataclass(frozen=True)
class Camera:
    focal: float
    cx: float
    cy: float


def project(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: Camera) -> np.ndarray:
    """Pixels (F, V, 2) of model points (V, 3) or (F, V, 3) under poses (F, 3, 3), (F, 3)."""
    return pixels_of(to_camera(points, rotation, translation), camera)


def to_camera(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Camera coordinates R X + t, (F, V, 3), of model points (V, 3) or (F, V, 3)."""
    return points @ np.swapaxes(rotation, -1, -2) + translation[:, None, :]


def pixels_of(camera_points: np.ndarray, camera: Camera) -> np.ndarray:
    pixels = np.empty((*camera_points.shape[:-1], 2))
    inverse_depth = camera.focal / camera_points[..., 2]
    pixels[..., 0] = camera.cx - camera_points[..., 0] * inverse_depth
    pixels[..., 1] = camera.cy + camera_points[..., 1] * inverse_depth
    return pixels


def projection_jacobian(camera_points: np.ndarray, focal: float) -> np.ndarray:
    """d(u, v)/d(Xc): (..., 2, 3)."""
    x, y, z = camera_points[..., 0], camera_points[..., 1], camera_points[..., 2]
    jacobian = np.zeros((*camera_points.shape[:-1], 2, 3))
    jacobian[..., 0, 0] = -focal / z
    jacobian[..., 0, 2] = focal * x / z**2
    jacobian[..., 1, 1] = focal / z
    jacobian[..., 1, 2] = -focal * y / z**2
    return jacobian


def huber_weights(distance: np.ndarray, threshold: float) -> np.ndarray:
    """IRLS weights of the Huber loss on a point's pixel distance."""
    return np.where(distance <= threshold, 1.0, threshold / np.maximum(distance, 1e-12))


def huber_cost(distance: np.ndarray, threshold: float) -> np.ndarray:
    """Huber loss of pixel distances, equal to the squared distance up to ``threshold``, linear beyond."""
    return np.where(distance <= threshold, distance**2, 2.0 * threshold * distance - threshold**2)


# ---------------------------------------------------------------------------------------------------------------
# The fit


@dataclass
class Fit:
    rotation: np.ndarray  # (F, 3, 3)
    translation: np.ndarray  # (F, 3)
    model_points: np.ndarray  # (F, V, 3) subject model per frame
    cost: float  # mean Huber cost per coordinate (px²), data term only: the focal search's criterion
    error: np.ndarray  # (F,) mean landmark distance in px


def fit_poses(
    model: FaceModel,
    landmarks: np.ndarray,
    camera: Camera,
    huber_px: float,
    shape_weight: float,
    iterations: int,
) -> Fit:
    """Rotation and translation of every frame (plus the shared shape correction and, for models with an
    expression basis, per-frame expression) minimising the Huber landmark loss; ``landmarks`` (F, V, 2) px."""
    problem = _LandmarkFit(model, np.asarray(landmarks, np.float64), camera, huber_px, shape_weight)
    rotation, translation = _initial_poses(problem.base, problem.observed, camera)
    expression = np.zeros((len(landmarks), problem.n_expression))
    damping = np.full(len(landmarks), 1e-3)
    current = problem.frame_costs(rotation, translation, expression)
    for iteration in range(iterations):
        settled = iteration >= iterations // 3  # shape and expression join once the poses have settled
        rotation, translation, expression, current, damping = problem.pose_step(
            rotation, translation, expression, current, damping, with_expression=settled
        )
        if settled:
            problem.shape.step(problem.geometry(expression), problem.observed, rotation, translation, camera, huber_px)
            current = problem.frame_costs(rotation, translation, expression)
    points = problem.geometry(expression)
    distance = np.linalg.norm(project(points, rotation, translation, camera) - problem.observed, axis=-1)
    cost = float(huber_cost(distance, huber_px).mean() / 2)
    return Fit(rotation, translation, np.array(points, dtype=np.float32), cost, distance.mean(axis=1))


def _initial_poses(points: np.ndarray, observed: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Frontal rotation, depth from the landmarks' spread against the model's, x/y from their centroid."""
    n_frames = len(observed)
    centre = observed.mean(axis=1)
    image_spread = np.sqrt(((observed - centre[:, None]) ** 2).sum(-1).mean(-1))
    model_spread = np.sqrt(((points[:, :2] - points[:, :2].mean(0)) ** 2).sum(-1).mean())
    depth = camera.focal * model_spread / np.maximum(image_spread, 1e-6)
    translation = np.stack(
        [(centre[:, 0] - camera.cx) * depth / camera.focal, -(centre[:, 1] - camera.cy) * depth / camera.focal, -depth],
        axis=-1,
    )
    return np.broadcast_to(np.eye(3), (n_frames, 3, 3)).copy(), translation


class _LandmarkFit:
    """The landmark-fitting problem of a set of frames: model, observations, camera, loss and shape correction."""

    def __init__(self, model: FaceModel, observed: np.ndarray, camera: Camera, huber_px: float, shape_weight: float):
        self.model = model
        self.observed = observed
        self.camera = camera
        self.huber_px = huber_px
        self.base = np.asarray(model.points, np.float64)
        self.n_points = len(self.base)
        self.n_expression = 0 if model.expression_basis is None else model.expression_basis.shape[-1]
        self.shape = _ShapeCorrection(model, shape_weight, len(observed))

    def geometry(self, expression: np.ndarray) -> np.ndarray:
        """Model points per frame (F, V, 3): model + shape correction (+ expression)."""
        points = np.broadcast_to(self.base + self.shape.offsets(), (len(expression), self.n_points, 3))
        if self.n_expression:
            points = points + np.einsum("vce,fe->fvc", self.model.expression_basis, expression)
        return points

    def frame_costs(self, rotation, translation, expression) -> np.ndarray:
        """(F,) per-coordinate mean Huber cost of each frame plus its expression prior."""
        pixels = project(self.geometry(expression), rotation, translation, self.camera)
        distance = np.linalg.norm(pixels - self.observed, axis=-1)
        cost = huber_cost(distance, self.huber_px).sum(axis=1) / (2 * self.n_points)
        if self.n_expression:
            cost = cost + self.model.expression_weight * (expression**2).mean(axis=1)
        return cost

    def pose_step(self, rotation, translation, expression, current, damping, with_expression: bool):
        """One Levenberg-Marquardt step per frame (of the expression too when ``with_expression``), accepted only
        where it lowers that frame's cost; returns the new (rotation, translation, expression, costs, damping)."""
        n_frames, n_points = len(self.observed), self.n_points
        n_expression = self.n_expression if with_expression else 0
        rotated = self.geometry(expression) @ np.swapaxes(rotation, 1, 2)
        camera_points = rotated + translation[:, None, :]
        residual = pixels_of(camera_points, self.camera) - self.observed
        weight = huber_weights(np.linalg.norm(residual, axis=-1), self.huber_px)
        d_pixels = projection_jacobian(camera_points, self.camera.focal)  # (F, V, 2, 3)
        jacobian = np.empty((n_frames, n_points, 2, 6 + n_expression))
        # a left rotation increment w moves R X by w x (R X): d(pixel)/dw = (R X) x d(pixel)/dXc, row by row
        jacobian[..., 0, :3] = np.cross(rotated, d_pixels[..., 0, :])
        jacobian[..., 1, :3] = np.cross(rotated, d_pixels[..., 1, :])
        jacobian[..., 3:6] = d_pixels
        if n_expression:
            jacobian[..., 6:] = d_pixels @ np.einsum("fij,vje->fvie", rotation, self.model.expression_basis)
        jacobian = jacobian.reshape(n_frames, 2 * n_points, -1)
        weighted = np.swapaxes(jacobian * np.repeat(weight, 2, axis=1)[..., None], 1, 2)
        normal = weighted @ jacobian
        gradient = (weighted @ residual.reshape(n_frames, -1, 1))[..., 0]
        if n_expression:  # the prior's mean square, on the data term's sum scale
            prior = 2 * n_points * self.model.expression_weight / n_expression
            normal[:, 6:, 6:] += prior * np.eye(n_expression)
            gradient[:, 6:] += prior * expression
        diagonal = np.diagonal(normal, axis1=1, axis2=2)
        damped = normal + (damping[:, None] * (diagonal + 1e-9))[..., None] * np.eye(normal.shape[-1])
        step = -np.linalg.solve(damped, gradient[..., None])[..., 0]
        new_rotation = rotation_from_vector(step[:, :3]) @ rotation
        new_translation = translation + step[:, 3:6]
        new_expression = expression + step[:, 6:] if n_expression else expression
        candidate = self.frame_costs(new_rotation, new_translation, new_expression)
        better = candidate < current
        return (
            np.where(better[:, None, None], new_rotation, rotation),
            np.where(better[:, None], new_translation, translation),
            np.where(better[:, None], new_expression, expression),
            np.where(better, candidate, current),
            np.clip(np.where(better, damping * 0.3, damping * 10.0), 1e-9, 1e9),
        )


class _ShapeCorrection:
    """The subject's deviation from the face model, shared by all frames, with its prior.

    Models with an identity basis fit its coefficients (prior ``identity_weight`` * mean(coef²)); otherwise every
    vertex gets a free 3D offset (prior ``shape_weight`` * mean((offset / mm)²)). Priors are on the same scale as
    the per-coordinate mean Huber cost in px².
    """

    def __init__(self, model: FaceModel, shape_weight: float, n_frames: int):
        self.basis = model.identity_basis
        n_points = len(model.points)
        if self.basis is not None:
            self.coefficients = np.zeros(self.basis.shape[-1])
            # data term is sum/(2 F V): scale the prior's mean-square weight to the same sum
            self.prior = 2 * n_frames * n_points * model.identity_weight / self.basis.shape[-1]
        else:
            self.coefficients = np.zeros((n_points, 3))
            self.prior = 2 * n_frames * shape_weight / (3 * MILLIMETRE**2)

    def offsets(self) -> np.ndarray:
        if self.basis is not None:
            return self.basis @ self.coefficients
        return self.coefficients

    def step(self, points, observed, rotation, translation, camera: Camera, huber_px: float) -> None:
        """One Gauss-Newton step on the coefficients with the poses held."""
        n_frames, n_points = observed.shape[:2]
        camera_points = to_camera(points, rotation, translation)
        residual = pixels_of(camera_points, camera) - observed
        weight = huber_weights(np.linalg.norm(residual, axis=-1), huber_px)[..., None, None]
        d_pixels = projection_jacobian(camera_points, camera.focal).reshape(n_frames, 2 * n_points, 3)
        d_model = (d_pixels @ rotation).reshape(n_frames, n_points, 2, 3)  # d(pixel)/dX
        if self.basis is not None:
            jacobian = (d_model @ self.basis).reshape(-1, self.basis.shape[-1])  # (F V 2, D)
            w = np.broadcast_to(weight, (*d_model.shape[:2], 2, 1)).reshape(-1, 1)
            normal = (jacobian * w).T @ jacobian + self.prior * np.eye(len(self.coefficients))
            gradient = (jacobian * w).T @ residual.reshape(-1) + self.prior * self.coefficients
            self.coefficients = self.coefficients - np.linalg.solve(normal, gradient)
            return
        by_vertex = d_model.transpose(1, 0, 2, 3).reshape(n_points, 2 * n_frames, 3)
        weighted = np.swapaxes((d_model * weight).transpose(1, 0, 2, 3).reshape(n_points, 2 * n_frames, 3), 1, 2)
        normal = weighted @ by_vertex + self.prior * np.eye(3)
        gradient = (weighted @ residual.transpose(1, 0, 2).reshape(n_points, -1, 1))[..., 0]
        gradient += self.prior * self.coefficients
        self.coefficients = self.coefficients - np.linalg.solve(normal, gradient[..., None])[..., 0]


# ---------------------------------------------------------------------------------------------------------------
# The step


def focal_candidates(options: dict[str, Any], width: int) -> np.ndarray:
    """The focal lengths Eq. 5 searches, in px."""
    scale = width / REFERENCE_WIDTH
    low, high, step = (
        float(options[name]) if options.get(name) is not None else default * scale
        for name, default in zip(("focal_min", "focal_max", "focal_step"), SYNCTALK_FOCALS)
    )
    if step <= 0 or high < low:
        raise BenchError(f"pose.focal_min={low}, focal_max={high}, focal_step={step}: need 0 < step and min <= max")
    return np.arange(low, high + step / 2, step)


def run(ctx: StepContext) -> dict[str, Any]:
    started = time.time()
    options = dict(ctx.options)
    model = face_model.load(options["face_model"], options.get("bfm_path"))
    width, height = ctx.size
    all_landmarks = np.asarray(ctx.load("landmarks", model.landmark_file), np.float64)[..., model.landmark_columns, :2]
    n_frames = len(all_landmarks)
    usable = np.isfinite(all_landmarks).all(axis=(1, 2))
    if not usable.any():
        raise BenchError(f"no frame has {model.landmark_file} landmarks; the pose step needs a visible face")
    frames = np.flatnonzero(usable)
    landmarks = all_landmarks[frames]
    cx, cy = width / 2.0, height / 2.0
    fit_options = {name: float(options[name]) for name in ("huber_px", "shape_weight")}
    iterations = int(options["iterations"])

    search_started = time.time()
    curve: list[dict[str, float]] = []
    if options.get("focal") is not None:
        focal = float(options["focal"])
    else:
        keyframes = landmarks[:: max(1, int(options["keyframe_stride"]))]
        for candidate in focal_candidates(options, width):
            trial = fit_poses(model, keyframes, Camera(candidate, cx, cy), iterations=iterations, **fit_options)
            curve.append({"focal": float(candidate), "cost": trial.cost, "median_error_px": float(np.median(trial.error))})
        focal = min(curve, key=lambda entry: entry["cost"])["focal"]
    search_seconds = time.time() - search_started

    fit_started = time.time()
    fit = fit_poses(model, landmarks, Camera(focal, cx, cy), iterations=iterations, **fit_options)
    fit_seconds = time.time() - fit_started

    rotation, translation = fill_missing(frames, fit.rotation, fit.translation, n_frames)
    error = np.full(n_frames, np.nan)
    error[frames] = fit.error
    model_points = np.empty((n_frames, *fit.model_points.shape[1:]), np.float32)
    model_points[frames] = fit.model_points
    model_points[~usable] = fit.model_points.mean(axis=0)
    np.savez_compressed(
        ctx.out / "pose.npz",
        focal=focal, cx=cx, cy=cy, rotation=rotation, translation=translation, euler=rotation_to_euler(rotation),
        reproj_error=error, face_model=model.name, fitted=usable, model_points=model_points,
        landmark_file=model.landmark_file, landmark_columns=model.landmark_columns,
    )
    return {
        "face_model": model.name,
        "landmarks": f"{model.landmark_file} ({len(model.landmark_columns)} points)",
        "focal": focal,
        "focal_search": curve or "fixed by pose.focal",
        "median_reproj_error_px": float(np.nanmedian(error)),
        "p95_reproj_error_px": float(np.nanpercentile(error, 95)),
        "frames_without_landmarks": np.flatnonzero(~usable).tolist(),
        "seconds": {"focal_search": round(search_seconds, 2), "fit": round(fit_seconds, 2),
                    "total": round(time.time() - started, 2)},
    }


def fill_missing(frames: np.ndarray, rotation: np.ndarray, translation: np.ndarray, n_frames: int):
    """Poses for all ``n_frames`` from those fitted at ``frames``: linear in Euler angles and translation between
    the nearest fitted frames (held at the ends)."""
    if len(frames) == n_frames:
        return rotation, translation
    everything = np.arange(n_frames)
    euler = np.unwrap(rotation_to_euler(rotation), axis=0)
    filled_euler = np.stack([np.interp(everything, frames, euler[:, i]) for i in range(3)], axis=-1)
    filled_translation = np.stack([np.interp(everything, frames, translation[:, i]) for i in range(3)], axis=-1)
    filled_rotation = euler_to_rotation(filled_euler)
    filled_rotation[frames] = rotation
    return filled_rotation, filled_translation
