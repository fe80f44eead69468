"""The points step (SyncTalk's Head Points Tracker) and its RAFT-small flow."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from prep_fixtures import context, fake_step

from bench.contracts import BenchError
from bench.datasets.preprocess import points

# Approximate iBUG-68 points from MediaPipe mesh vertices (jaw, brows, nose, eyes, outer and inner lips), standing in
# for the landmarks step's FAN/dlib points in these tests.
MESH_TO_68 = [
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 397, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    78, 81, 13, 311, 308, 402, 14, 178,
]  # fmt: skip
# Mesh vertices on the forehead and nose bridge: they move with the skull, not with the mouth.
MESH_RIGID = [9, 10, 66, 67, 103, 104, 107, 108, 109, 151, 168, 296, 297, 332, 333, 336, 337, 338]


def cnn_frames(count: int) -> np.ndarray:
    from bench import assets, media

    video = assets.fetch("cnn2_25fps")
    return media.read_video_range(video, range(count))


def mediapipe_mesh(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 478, 3) MediaPipe FaceLandmarker points in pixels and (N,) found, as the landmarks step writes them."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from bench import assets

    count, height, width = frames.shape[:3]
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.fetch("mediapipe_face_landmarker"))),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=1,
    )
    mesh = np.zeros((count, 478, 3), np.float32)
    found = np.zeros(count, bool)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for index, frame in enumerate(frames):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            result = landmarker.detect_for_video(image, index * 40)
            if result.face_landmarks:
                found[index] = True
                mesh[index] = [(p.x * width, p.y * height, p.z * width) for p in result.face_landmarks[0]]
    return mesh, found


def head_labels(mesh: np.ndarray, found: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W): 1 inside the hull of the mesh and of the mesh raised by a third of its height (forehead and
    hair), standing in for the parsing step's head label."""
    import cv2

    labels = np.zeros((len(mesh), size[1], size[0]), np.uint8)
    for index in np.flatnonzero(found):
        face = mesh[index, :, :2]
        raised = face - (0, np.ptp(face[:, 1]) / 3)
        hull = cv2.convexHull(np.round(np.concatenate([face, raised])).astype(np.int32))
        cv2.fillConvexPoly(labels[index], hull, 1)
    return labels


def upstream_folders(root: Path, frames: np.ndarray) -> dict[str, Path]:
    """Finished ingest, parsing and landmarks folders for ``frames`` (MediaPipe stand-ins for FAN and BiSeNet)."""
    mesh, found = mediapipe_mesh(frames)
    labels = head_labels(mesh, found, (frames.shape[2], frames.shape[1]))
    lms68 = mesh[:, MESH_TO_68, :2].copy()
    return {
        "ingest": fake_step(root, "ingest", frames=frames),
        "parsing": fake_step(root, "parsing", {"labels.npy": labels}),
        "landmarks": fake_step(
            root, "landmarks", {"mesh.npy": mesh, "lms68.npy": lms68, "found.npy": np.stack([found, found], 1)}
        ),
    }


def textured_image(size: int, seed: int) -> np.ndarray:
    """Smooth random texture at several scales, uint8 RGB: trackable everywhere, like skin with shading."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    layers = [ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma) * sigma for sigma in (1.5, 4, 12)]
    grey = sum(layers)
    grey = (grey - grey.min()) / np.ptp(grey) * 200 + 25
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


# ---------------------------------------------------------------------------------------------------
# RAFT-small


def test_raft_small_weights_measure_a_known_shift(mirror):
    from bench.datasets.preprocess.raft import RaftSmall

    frame = cnn_frames(3)[2]
    raft = RaftSmall()
    face = (slice(160, 352), slice(160, 352))
    first = np.stack([frame[face], frame[face]])
    # content moved 3 px right and 2 px down (a crop offset); then 4 px left and 1.5 px down (interpolated)
    second = np.stack([frame[158:350, 157:349], warp(frame, np.float32([[1, 0, -4], [0, 1, 1.5]]))[face]])
    started = time.perf_counter()
    flow = raft(first, second)
    print(f"RAFT-small, 2 pairs of 192x192, {raft.iterations} iterations: {time.perf_counter() - started:.2f} s")
    inner = flow[:, 8:-8, 8:-8].reshape(2, -1, 2)
    assert np.abs(np.median(inner[0], axis=0) - (3, 2)).max() < 0.3
    assert np.abs(np.median(inner[1], axis=0) - (-4, 1.5)).max() < 0.3
    # a single pair of a size that is not a multiple of 8: padded, and cropped back
    odd = raft(frame[190:325, 190:339], frame[188:323, 187:336])
    assert odd.shape == (135, 149, 2)
    assert np.abs(np.median(odd[8:-8, 8:-8].reshape(-1, 2), axis=0) - (3, 2)).max() < 0.3


def test_raft_rejects_a_checkpoint_of_another_layout(tmp_path):
    import torch

    from bench.datasets.preprocess.raft import load_raft_small

    path = tmp_path / "raft-large-ish.pth"
    torch.save({"module.fnet.conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(BenchError, match="not a princeton-vl RAFT-small checkpoint"):
        load_raft_small(path)


# ---------------------------------------------------------------------------------------------------
# Tracking with dense DIS flow


def test_dis_tracks_known_motion_and_flags_points_that_leave_or_are_hidden(tmp_path):
    import cv2

    size, count = 256, 24
    rng = np.random.default_rng(4)
    reference_image = textured_image(size, seed=1)
    matrices, frames = [], []
    occluder = textured_image(60, seed=7) // 3  # a darker object with its own texture, as a hand or a microphone
    for index in range(count):
        angle = 3 * np.sin(index / 5)
        shift = (14 * np.sin(index / 6) + (40 if index >= 18 else 0), 6 * np.cos(index / 4) - 6)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        matrix[:, 2] += shift
        image = warp(reference_image, matrix)
        if 8 <= index < 14:  # a patch with its own texture covers part of the image, as a hand would
            image[150:210, 40:100] = occluder
        matrices.append(matrix)
        frames.append(image)
    frames = np.stack(frames)
    ys, xs = np.mgrid[20:236:6, 20:236:6]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1)
    truth = np.stack([pixels @ matrix[:, :2].T + matrix[:, 2] for matrix in matrices])

    # the rough alignment (landmarks, in the step) off by up to 2 px and 1 degree: the flow takes the rest
    rough = []
    for matrix in matrices:
        jitter = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-1, 1), 1.0)
        jitter[:, 2] += rng.uniform(-2, 2, 2)
        rough.append(np.vstack([matrix, (0, 0, 1)]) @ np.vstack([jitter, (0, 0, 1)]))
    started = time.perf_counter()
    flow = points.flow_pass(frames, 0, pixels, (0, 0, size, size), np.array(rough)[:, :2], points.DisFlow(), tmp_path)
    tracks, fb_error, visible = points.track(flow, np.arange(len(pixels)), (size, size), 1.0, 20.0)
    print(f"DIS: {count} frames of {size}x{size}, {len(pixels)} points: {time.perf_counter() - started:.2f} s")

    left = (truth[..., 0] < 0) | (truth[..., 0] > size - 1) | (truth[..., 1] < 0) | (truth[..., 1] > size - 1)
    hidden = np.zeros_like(left)
    hidden[8:14] = (truth[8:14, :, 0] >= 40) & (truth[8:14, :, 0] < 100) & (truth[8:14, :, 1] >= 150) & (
        truth[8:14, :, 1] < 210
    )
    border = (truth < 12).any(axis=2) | (truth > size - 13).any(axis=2)  # near the edge flow is extrapolated
    clean = ~left & ~hidden & ~border
    error = np.linalg.norm(tracks - truth, axis=2)
    print(f"median error {np.median(error[clean]):.3f} px, visible: clean {visible[clean].mean():.3f}, "
          f"left the frame {visible[left].mean():.3f}, hidden {visible[hidden].mean():.3f}")
    assert np.median(error[clean]) < 0.5
    assert np.percentile(error[clean], 90) < 1.0
    assert visible[clean].mean() > 0.9
    assert left.sum() > 100 and not visible[left].any()
    assert hidden.sum() > 100 and visible[hidden].mean() < 0.1
    assert np.isfinite(fb_error[clean]).all()


def test_bilinear_samples_beyond_opencv_map_limit():
    from scipy import ndimage

    rng = np.random.default_rng(2)
    image = rng.normal(size=(300, 280, 2)).astype(np.float32)
    where = rng.uniform((0, 0), (279, 299), size=(40_000, 2)).astype(np.float32)  # more than 32767 rows
    grid = np.round(where[:, ::-1].T * 32) / 32  # OpenCV interpolates at 1/32 px steps
    expected = np.stack([ndimage.map_coordinates(image[..., c], grid, order=1) for c in range(2)], axis=1)
    assert np.allclose(points.sample_at(image, where), expected, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Keypoint selection


def synctalk_selection(scores: np.ndarray, window: int = 5, threshold: int = 40, distance: int = 5) -> np.ndarray:
    """SyncTalk's pixel loop (extract_flow in data_utils/process.py), written out as the reference; neighbourhood
    slices clipped at the image edge (SyncTalk's negative start indices wrap around there)."""
    height, width = scores.shape
    taken = np.zeros(scores.shape, np.int32)
    kept = []
    for y in range(0, height - window, window):
        for x in range(0, width - window, window):
            lowest, best = threshold, None
            for dy in range(window):
                for dx in range(window):
                    if scores[y + dy, x + dx] < lowest:
                        lowest, best = scores[y + dy, x + dx], (x + dx, y + dy)
            if best is not None:
                bx, by = best
                if taken[max(by - distance, 0) : by + distance + 1, max(bx - distance, 0) : bx + distance + 1].sum() == 0:
                    kept.append(best)
                    taken[by, bx] = 1
    return np.array(kept).reshape(-1, 2)


def test_selection_matches_synctalk_loop_on_random_scores():
    rng = np.random.default_rng(3)
    for shape in ((63, 88), (101, 57)):  # sides not multiples of 5: SyncTalk's range(0, side - 5, 5) covers them all
        scores = rng.integers(0, 90, size=shape).astype(np.uint8)
        scores[rng.random(shape) < 0.3] = 255
        mine = points.select_keypoints(scores, 5, 40, 5)
        reference = synctalk_selection(scores)
        assert len(mine) > 20
        assert np.array_equal(mine, reference)


def synthetic_face(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A round head mask and 68 landmarks laid out like a frontal face (eyes at y=80, mouth at y=150)."""
    yy, xx = np.mgrid[:size, :size]
    head = (xx - 100) ** 2 / 70**2 + (yy - 105) ** 2 / 90**2 < 1
    ring = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    jaw = np.linspace(-0.45 * np.pi, 0.45 * np.pi, 17)
    lms = np.concatenate([
        np.stack([100 + 62 * np.sin(jaw), 95 + 85 * np.cos(jaw)], axis=1),  # 0-16 jaw, chin at (100, 180)
        np.stack([np.r_[np.linspace(60, 90, 5), np.linspace(110, 140, 5)], np.full(10, 65)], axis=1),  # brows
        np.stack([np.full(4, 100), np.linspace(80, 115, 4)], axis=1),  # nose bridge
        np.stack([np.linspace(88, 112, 5), np.full(5, 120)], axis=1),  # nose base
        np.stack([np.cos(ring[::3][:6]) * 10 + 75, np.sin(ring[::3][:6]) * 4 + 80], axis=1),  # right eye
        np.stack([np.cos(ring[::3][:6]) * 10 + 125, np.sin(ring[::3][:6]) * 4 + 80], axis=1),  # left eye
        np.stack([np.cos(ring) * 20 + 100, np.sin(ring) * 8 + 150], axis=1),  # mouth
    ])
    return head, lms


def test_keypoints_land_on_steady_rigid_pixels_apart_from_each_other():
    import cv2

    size, count = 200, 40
    head, lms = synthetic_face(size)
    rigid = points.rigid_region(head, lms, edge_margin=4)
    ys, xs = np.nonzero(rigid)
    pixels = np.stack([xs, ys], axis=1)
    rng = np.random.default_rng(5)
    # smooth global head motion everywhere, small noise, plus a jittering patch on the forehead's left half
    t = np.arange(count)[:, None, None]
    forward = np.concatenate([3 * np.sin(t / 6), 2 * np.cos(t / 9)], axis=2) + rng.normal(0, 0.02, (count, len(pixels), 2))
    jitter = (xs < 95) & (ys < 60)
    forward[:, jitter] += rng.normal(0, 0.8, (count, int(jitter.sum()), 2))
    forward[17] += 25 * rng.normal(size=(len(pixels), 2))  # one broken frame: its Laplacian rows are outliers
    forward = forward.astype(np.float32)
    laplacian = points.laplacian_norm(forward[:-2], forward[1:-1], forward[2:]).astype(np.float16)
    mean, counts = points.stability_scores(laplacian, np.ones(count, bool), outlier_factor=3.0)
    assert counts == {"laplacian_frames": count - 2, "outlier_frames": 3}
    assert np.allclose(mean, np.delete(laplacian.astype(np.float64), [15, 16, 17], axis=0).mean(axis=0))
    scores = points.score_image(head.shape, pixels, mean)
    keypoints = points.select_keypoints(scores, 5, 40, 5)

    assert len(keypoints) > 100
    assert rigid[keypoints[:, 1], keypoints[:, 0]].all()
    assert not jitter[np.searchsorted(np.flatnonzero(rigid.ravel()), keypoints[:, 1] * size + keypoints[:, 0])].any()
    gaps = np.abs(keypoints[:, None] - keypoints[None]).max(axis=2) + np.eye(len(keypoints), dtype=int) * 99
    assert gaps.min() > 5
    # nothing on the eyes, brows or the lower face: the region leaves them out with margins
    eye_distance = np.linalg.norm(lms[36:42].mean(0) - lms[42:48].mean(0))
    for part, margin in ((np.r_[2:15, 31:36, 48:68], 0.15), (np.r_[17:22, 36:42], 0.2), (np.r_[22:27, 42:48], 0.2)):
        hull = cv2.convexHull(lms[part].astype(np.float32))
        inside = [cv2.pointPolygonTest(hull, (float(x), float(y)), True) for x, y in keypoints]
        assert max(inside) < -margin * eye_distance + 1

    spread = points.spread_subset(keypoints, scores[keypoints[:, 1], keypoints[:, 0]], 30)
    assert len(spread) == 30 and len(np.unique(spread)) == 30

    def smallest_gap(subset: np.ndarray) -> float:
        chosen = keypoints[subset]
        return np.linalg.norm(chosen[:, None] - chosen[None], axis=2)[np.triu_indices(len(subset), 1)].min()

    random_gaps = [smallest_gap(rng.choice(len(keypoints), 30, replace=False)) for _ in range(20)]
    assert smallest_gap(spread) > 2 * np.median(random_gaps)


# ---------------------------------------------------------------------------------------------------
# The step on real frames


def test_points_step_on_real_frames(mirror, tmp_path):
    frames = cnn_frames(60)
    folders = upstream_folders(tmp_path, frames)
    labels_file = folders["parsing"] / "labels.npy"
    labels = np.load(labels_file)
    labels[30] = 0  # one frame without a face: listed, never visible, indices unchanged
    np.save(labels_file, labels)
    mesh = np.load(folders["landmarks"] / "mesh.npy")

    ctx = context(tmp_path, "points", folders)
    started = time.perf_counter()
    summary = points.run(ctx)
    print(f"points on 60 real frames: {time.perf_counter() - started:.2f} s; {summary}")

    keypoints = np.load(ctx.out / "keypoints.npy")
    tracks = np.load(ctx.out / "tracks.npy")
    visible = np.load(ctx.out / "visible.npy")
    count = len(keypoints)
    assert keypoints.dtype == tracks.dtype == np.float32 and visible.dtype == bool
    assert tracks.shape == (60, count, 2) and visible.shape == (60, count)
    assert 50 <= count <= 200 == ctx.options["max_keypoints"]
    assert summary["reference_frame"] == 2 and summary["frames_without_face"] == [30]
    assert not visible[30].any()
    assert summary["visible_fraction"] > 0.85 and summary["median_fb_error_px"] < 0.5
    assert np.allclose(tracks[2], keypoints, atol=0.05)  # the reference frame maps onto itself
    assert not any(ctx.out.glob(".flow-*"))  # the scratch flow is gone
    # keypoints on the head, above the mouth
    assert (labels[2][keypoints[:, 1].astype(int), keypoints[:, 0].astype(int)] == 1).all()
    lms68 = mesh[2, MESH_TO_68, :2]
    assert (keypoints[:, 1] < lms68[48:68, 1].min()).mean() > 0.95
    # the tracks agree with pyramidal Lucas-Kanade, an independent tracker, where it is self-consistent
    reference_tracks, consistent = lucas_kanade(frames, 2, keypoints)
    compared = consistent & visible
    gap = np.linalg.norm(tracks - reference_tracks, axis=2)[compared]
    # and move with MediaPipe's forehead and nose-bridge vertices (semantic points that slide by a pixel or two)
    moved = np.median(tracks - keypoints, axis=1)
    mesh_moved = np.median(mesh[:, MESH_RIGID, :2] - mesh[2, MESH_RIGID, :2], axis=1)
    mesh_gap = np.linalg.norm(moved - mesh_moved, axis=1)[np.arange(60) != 30]
    print(f"head moves up to {np.abs(mesh_moved).max():.1f} px; DIS vs Lucas-Kanade on {compared.mean():.0%} of the "
          f"points: median {np.median(gap):.2f} px; vs mesh: median {np.median(mesh_gap):.2f} px, max {mesh_gap.max():.2f}")
    assert compared.mean() > 0.5 and np.median(gap) < 0.6
    assert np.abs(mesh_moved).max() > 20 and np.median(mesh_gap) < 3 and mesh_gap.max() < 6


def lucas_kanade(frames: np.ndarray, reference: int, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade (21x21, 4 levels) from the reference frame to each frame, started from the previous
    frame's result; consistent where tracking back lands within 0.3 px."""
    import cv2

    def grey(image: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)

    settings = {"winSize": (21, 21), "maxLevel": 3, "flags": cv2.OPTFLOW_USE_INITIAL_FLOW,
                "criteria": (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)}
    first, guess = grey(frames[reference]), start.copy()
    tracks, consistent = [], []
    for frame in frames:
        image = grey(frame)
        ahead, found, _ = cv2.calcOpticalFlowPyrLK(first, image, start, guess.copy(), **settings)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(image, first, ahead, start.copy(), **settings)
        tracks.append(ahead)
        consistent.append((found[:, 0] == 1) & (found_back[:, 0] == 1) & (np.linalg.norm(back - start, axis=1) < 0.3))
        guess = ahead
    return np.stack(tracks), np.stack(consistent)


def test_points_step_needs_a_face(tmp_path):
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    folders = {
        "ingest": fake_step(tmp_path, "ingest", frames=frames),
        "parsing": fake_step(tmp_path, "parsing", {"labels.npy": np.zeros((5, 64, 64), np.uint8)}),
        "landmarks": fake_step(tmp_path, "landmarks", {"lms68.npy": np.zeros((5, 68, 2), np.float32),
                                                     "found.npy": np.ones((5, 2), bool)}),
    }
    with pytest.raises(BenchError, match="no frame has both a head mask"):
        points.run(context(tmp_path, "points", folders))
    with pytest.raises(BenchError, match="points.flow"):
        points.run(context(tmp_path, "points", folders, {"flow": "farneback"}))


@pytest.mark.slow
def test_points_step_with_raft_agrees_with_dis(mirror, tmp_path):
    frames = cnn_frames(12)
    ctx = context(tmp_path, "points", upstream_folders(tmp_path, frames), {"flow": "raft"})
    started = time.perf_counter()
    summary = points.run(ctx)
    print(f"points, flow=raft, 12 frames: {time.perf_counter() - started:.1f} s; {summary}")
    keypoints, tracks, visible = (np.load(ctx.out / name) for name in ("keypoints.npy", "tracks.npy", "visible.npy"))
    assert summary["method"].startswith("RAFT-small") and len(keypoints) > 0 and tracks.shape == (12, len(keypoints), 2)
    assert summary["visible_fraction"] > 0.8 and summary["median_fb_error_px"] < 0.5
    # DIS flow from the same reference frame at the same pixels gives the same tracks
    lms68 = np.load(ctx.folder("landmarks") / "lms68.npy")
    alignments = points.landmark_alignments(lms68, np.ones(len(frames), bool), 2)
    dis = points.flow_pass(frames, 2, keypoints.astype(int), (0, 0, 512, 512), alignments, points.DisFlow(), tmp_path)
    dis_tracks, _, dis_visible = points.track(dis, np.arange(len(keypoints)), (512, 512), 1.0, 20.0)
    gap = np.linalg.norm(tracks - dis_tracks, axis=2)[visible & dis_visible]
    print(f"RAFT vs DIS at {len(keypoints)} keypoints: median gap {np.median(gap):.2f} px, 90th pct {np.percentile(gap, 90):.2f}")
    assert np.median(gap) < 0.5
