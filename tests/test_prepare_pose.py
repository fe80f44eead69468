"""Head-Sync Stabilizer fitting: the face models, the pose step (Eq. 5-6) and the bundle step (Eq. 7-8), on
landmarks and tracks made here by projecting known 3D points with a known focal and known smooth head motion."""

from __future__ import annotations

import numpy as np
import pytest
from prep_fixtures import context, fake_step

from bench.contracts import BenchError
from bench.datasets.preprocess import bundle, face_model, pose

SIZE = 512
TRUE_FOCAL = 1100.0
FPS = 25


def synctalk_euler2rot(euler: np.ndarray) -> np.ndarray:
    """SyncTalk/AD-NeRF ``euler2rot`` transcribed literally: each matrix is three columns side by side."""
    theta, phi, psi = euler

    def columns(*cols) -> np.ndarray:
        return np.stack([np.asarray(c, float) for c in cols], axis=1)

    rot_x = columns([1, 0, 0], [0, np.cos(theta), np.sin(theta)], [0, -np.sin(theta), np.cos(theta)])
    rot_y = columns([np.cos(phi), 0, -np.sin(phi)], [0, 1, 0], [np.sin(phi), 0, np.cos(phi)])
    rot_z = columns([np.cos(psi), -np.sin(psi), 0], [np.sin(psi), np.cos(psi), 0], [0, 0, 1])
    return rot_x @ (rot_y @ rot_z)


def test_euler_convention_is_synctalks_and_inverts():
    rng = np.random.default_rng(0)
    euler = rng.uniform(-0.6, 0.6, size=(50, 3))
    rotation = pose.euler_to_rotation(euler)
    reference = np.stack([synctalk_euler2rot(e) for e in euler])
    np.testing.assert_allclose(rotation, reference, atol=1e-12)
    np.testing.assert_allclose(pose.rotation_to_euler(rotation), euler, atol=1e-10)
    np.testing.assert_allclose(pose.rotation_from_vector(np.array([0.0, 0.0, 0.3])), pose.euler_to_rotation([0, 0, -0.3]),
                               atol=1e-12)


def test_canonical_mesh_matches_mediapipe_obj(mirror):
    model = face_model.mediapipe_canonical()
    assert model.points.shape == (468, 3) and model.triangles.shape == (898, 3)
    assert model.triangles.min() == 0 and model.triangles.max() == 467
    np.testing.assert_allclose(model.points.mean(axis=0), 0.0, atol=1e-12)
    # vertices from MediaPipe's canonical_face_model.obj (cm; "line i+1: v x y z"), compared after our centring
    obj_cm = {1: (0.0, -1.126865, 7.475604), 0: (0.0, -3.406404, 5.979507), 152: (0.0, -9.403378, 4.264492),
              263: (4.445859, 2.663991, 3.173422), 61: (-2.456206, -4.342621, 4.283884), 362: (1.856432, 2.585245, 3.757904)}
    first = np.array(obj_cm[1]) / 100.0
    for index, cm in obj_cm.items():
        np.testing.assert_allclose(model.points[index] - model.points[1], np.array(cm) / 100.0 - first, atol=1e-6)
    # a frontal face (rotation I) shows landmark 33 (subject's right eye corner) on the image left, the nose forward
    assert model.points[33, 0] < 0 < model.points[263, 0] and model.points[1, 2] > model.points[[33, 263, 152], 2].max()


def test_damaged_geometry_metadata_is_a_bench_error():
    with pytest.raises(BenchError, match="damaged"):
        face_model.parse_canonical_mesh(b"\x0a\x05\x1d\x00\x00")


def head_motion(n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth talking-head motion: a few degrees of pitch/yaw/roll sinusoids, centimetres of translation, 0.9 m away."""
    t = np.arange(n_frames) / FPS
    euler = np.radians(np.stack([4 * np.sin(2 * np.pi * 0.30 * t), 6 * np.sin(2 * np.pi * 0.20 * t + 1),
                                 3 * np.sin(2 * np.pi * 0.25 * t + 2)], axis=1))
    translation = np.stack([0.010 * np.sin(2 * np.pi * 0.10 * t), -0.005 + 0.008 * np.cos(2 * np.pi * 0.15 * t),
                            -0.90 + 0.02 * np.sin(2 * np.pi * 0.07 * t)], axis=1)
    return pose.euler_to_rotation(euler), translation


def noisy(pixels: np.ndarray, rng, sigma: float, outlier_fraction: float = 0.0) -> np.ndarray:
    """Gaussian pixel noise plus a fraction of points displaced 20-40 px in random directions."""
    observed = pixels + rng.normal(size=pixels.shape) * sigma
    outlier = rng.random(pixels.shape[:2]) < outlier_fraction
    angle = rng.uniform(0, 2 * np.pi, size=pixels.shape[:2])
    radius = rng.uniform(20, 40, size=pixels.shape[:2])
    observed[outlier] += (np.stack([np.cos(angle), np.sin(angle)], -1) * radius[..., None])[outlier]
    return observed


def mesh_landmarks(points: np.ndarray, rotation, translation, rng, sigma=1.0, outliers=0.05) -> np.ndarray:
    """A landmarks-step ``mesh.npy`` (N, 478, 3): the 468 model points projected; iris points copied from eyes."""
    camera = pose.Camera(TRUE_FOCAL, SIZE / 2, SIZE / 2)
    pixels = noisy(pose.project(points, rotation, translation, camera), rng, sigma, outliers)
    mesh = np.zeros((len(rotation), 478, 3), np.float32)
    mesh[:, :468, :2] = pixels
    mesh[:, 468:, :2] = pixels[:, [33] * 5 + [263] * 5]
    return mesh


def run_pose(tmp_path, n_frames: int, arrays: dict, options: dict | None = None):
    ingest = fake_step(tmp_path, "ingest", summary={"n_frames": n_frames, "width": SIZE, "height": SIZE})
    landmarks = fake_step(tmp_path, "landmarks", arrays)
    ctx = context(tmp_path, "pose", {"ingest": ingest, "landmarks": landmarks}, options)
    summary = pose.run(ctx)
    with np.load(ctx.out / "pose.npz") as stored:
        return summary, {name: stored[name] for name in stored.files}, ctx.out


def rotation_errors(result, rotation) -> np.ndarray:
    return pose.rotation_angle_between(result["rotation"], rotation)


def test_pose_step_recovers_focal_and_poses_despite_noise_and_outliers(mirror, tmp_path):
    n_frames = 150
    rng = np.random.default_rng(1)
    model = face_model.mediapipe_canonical()
    rotation, translation = head_motion(n_frames)
    mesh = mesh_landmarks(model.points, rotation, translation, rng)
    mesh[[40, 41]] = np.nan  # frames without a face: interpolated, never dropped
    summary, result, _ = run_pose(tmp_path, n_frames, {"mesh.npy": mesh})

    error = rotation_errors(result, rotation)
    focal_error = abs(float(result["focal"]) - TRUE_FOCAL) / TRUE_FOCAL
    translation_error_mm = np.linalg.norm(result["translation"] - translation, axis=1) * 1000
    print(f"\npose: focal {float(result['focal']):.0f} (error {100 * focal_error:.1f} %), rotation error median "
          f"{np.median(error):.3f} deg, 95th {np.percentile(error, 95):.3f} deg, translation error median "
          f"{np.median(translation_error_mm):.2f} mm, reprojection median {summary['median_reproj_error_px']:.2f} px, "
          f"{summary['seconds']}")
    assert focal_error < 0.05
    assert np.median(error) < 1.0 and np.percentile(error, 95) < 1.0
    assert np.median(translation_error_mm) < 10.0
    assert summary["frames_without_landmarks"] == [40, 41]
    assert not result["fitted"][[40, 41]].any() and result["fitted"].sum() == n_frames - 2
    assert np.isnan(result["reproj_error"][[40, 41]]).all() and error[[40, 41]].max() < 1.0
    assert result["rotation"].shape == (n_frames, 3, 3) and result["translation"][:, 2].max() < 0
    np.testing.assert_allclose(pose.euler_to_rotation(result["euler"]), result["rotation"], atol=1e-9)
    assert str(result["face_model"]) == "mediapipe_canonical"
    assert len(summary["focal_search"]) == 20 and summary["focal"] == float(result["focal"])


def test_pose_step_with_fixed_focal_skips_search(mirror, tmp_path):
    n_frames = 30
    rng = np.random.default_rng(2)
    rotation, translation = head_motion(n_frames)
    mesh = mesh_landmarks(face_model.mediapipe_canonical().points, rotation, translation, rng, outliers=0.0)
    summary, result, _ = run_pose(tmp_path, n_frames, {"mesh.npy": mesh}, {"focal": TRUE_FOCAL})
    assert summary["focal_search"] == "fixed by pose.focal" and float(result["focal"]) == TRUE_FOCAL
    assert np.median(rotation_errors(result, rotation)) < 0.5


def synthetic_bfm(folder, rng) -> dict:
    """A 3DMM folder in the layout of AD-NeRF/SyncTalk's convert_BFM.py output, small: P vertices in micrometres
    with smooth identity/expression bases, and lands_info.txt whose last 68 entries are landmark vertices."""
    canonical = face_model.parse_canonical_mesh(_canonical_bytes())[0][:, :3] / 100.0  # metres, uncentred
    n_vertices = len(canonical)
    centred = canonical / 0.08

    x, y, z = centred.T
    zero, one = np.zeros(n_vertices), np.ones(n_vertices)
    similarity = np.stack([np.stack(field, axis=1).reshape(-1) for field in (
        (one, zero, zero), (zero, one, zero), (zero, zero, one), (x, y, z),
        (zero, -z, y), (z, zero, -x), (-y, x, zero))], axis=1)
    similarity = np.linalg.qr(similarity)[0]

    def smooth_fields(count: int, region: np.ndarray) -> np.ndarray:
        """Random quadratic deformation fields with the head's similarity motions projected out, as BFM's PCA of
        Procrustes-aligned scans has them (a rotation in the basis would trade off against the pose)."""
        monomials = np.stack([x * y, y * z, x * z, x * x, y * y, z * z], axis=1) * region[:, None]
        fields = np.einsum("vm,cma->cva", monomials, rng.normal(size=(count, 6, 3))).reshape(count, -1)
        return fields - (fields @ similarity) @ similarity.T

    mouth = (canonical[:, 1] < -0.02).astype(float)
    info = {
        "mu_shape": canonical.reshape(-1) * 1e6 + 12345.0,  # an offset the loader's centring removes
        "b_shape": smooth_fields(199, np.ones(n_vertices)) * 1e6 * 1e-3,  # ~1 mm per unit before sigma
        "sig_shape": np.linspace(2.0, 0.1, 199),
        "mu_exp": np.zeros(3 * n_vertices),
        "b_exp": smooth_fields(79, mouth) * 1e6 * 1e-3,
        "sig_exp": np.linspace(1.0, 0.1, 79),
        "mu_tex": np.zeros(3 * n_vertices), "b_tex": np.zeros((199, 3 * n_vertices)), "sig_tex": np.ones(199),
    }
    np.save(folder / "3DMM_info.npy", info, allow_pickle=True)
    landmark_vertices = rng.choice(n_vertices, 68, replace=False)
    (folder / "lands_info.txt").write_text("\n".join(map(str, [7, 3, 5, *landmark_vertices])) + "\n")
    return {"info": info, "landmarks": landmark_vertices}


def _canonical_bytes() -> bytes:
    import zipfile

    from bench import assets

    with zipfile.ZipFile(assets.fetch(face_model.MEDIAPIPE_ASSET)) as bundle_file:
        return bundle_file.read(face_model.GEOMETRY_MEMBER)


def test_bfm_loader_follows_synctalk_facemodel(mirror, tmp_path):
    truth = synthetic_bfm(tmp_path, np.random.default_rng(3))
    info, vertices = truth["info"], truth["landmarks"][17:]
    model = face_model.load("bfm", tmp_path)
    # SyncTalk: mu = mu_shape + mu_exp, centred per axis over all vertices, /1000 -> mm; here /1e6 -> m
    mean = (info["mu_shape"] + info["mu_exp"]).reshape(-1, 3)
    mean = mean - mean.mean(axis=0)
    np.testing.assert_allclose(model.points, mean[vertices] / 1e6, atol=1e-12)
    coefficients = np.random.default_rng(4).normal(size=100)
    offsets = (coefficients * info["sig_shape"][:100]) @ info["b_shape"][:100]  # SyncTalk's forward_geo
    np.testing.assert_allclose(model.identity_basis @ coefficients, offsets.reshape(-1, 3)[vertices] / 1e6, atol=1e-12)
    assert model.expression_basis.shape == (51, 3, 79) and model.landmark_file == "lms68.npy"
    np.testing.assert_array_equal(model.landmark_columns, np.arange(17, 68))
    with pytest.raises(BenchError, match="bfm_path"):
        face_model.load("bfm", None)
    with pytest.raises(BenchError, match="3DMM_info.npy"):
        face_model.load("bfm", tmp_path / "nowhere")


def test_pose_step_fits_bfm_with_identity_and_expression(mirror, tmp_path):
    rng = np.random.default_rng(5)
    folder = tmp_path / "3DMM"
    folder.mkdir()
    synthetic_bfm(folder, rng)
    model = face_model.load("bfm", folder)
    n_frames = 60
    rotation, translation = head_motion(n_frames)
    identity = rng.normal(size=100) * 0.05  # ~2 mm offsets: plausible under SyncTalk's strong identity prior
    expression = 0.5 * np.sin(np.arange(n_frames)[:, None] * 0.3 + rng.uniform(0, 6, 79))
    points = model.points + model.identity_basis @ identity + np.einsum("vce,fe->fvc", model.expression_basis, expression)
    camera = pose.Camera(TRUE_FOCAL, SIZE / 2, SIZE / 2)
    lms68 = np.zeros((n_frames, 68, 2), np.float32)
    lms68[:, 17:] = noisy(pose.project(points, rotation, translation, camera), rng, 1.0)
    summary, result, _ = run_pose(tmp_path / "run", n_frames, {"lms68.npy": lms68},
                                  {"face_model": "bfm", "bfm_path": str(folder), "focal_min": 700, "focal_max": 1500,
                                   "focal_step": 200, "keyframe_stride": 5})
    error = rotation_errors(result, rotation)
    print(f"\nbfm pose: focal {float(result['focal']):.0f}, rotation error median {np.median(error):.3f} deg, "
          f"reprojection median {summary['median_reproj_error_px']:.2f} px")
    assert str(result["face_model"]) == "bfm2009" and result["model_points"].shape == (n_frames, 51, 3)
    # 51 landmarks and per-frame expression leave the focal weakly determined (a flat search curve), so only the
    # poses are held to the truth here
    assert [entry["focal"] for entry in summary["focal_search"]] == [700, 900, 1100, 1300, 1500]
    assert np.median(error) < 1.5
    assert summary["median_reproj_error_px"] < 2.0


def test_bundle_adjustment_reduces_jitter_and_stays_on_truth(mirror, tmp_path):
    n_frames, n_keypoints = 150, 120
    rng = np.random.default_rng(6)
    model = face_model.mediapipe_canonical()
    rotation, translation = head_motion(n_frames)
    mesh = mesh_landmarks(model.points, rotation, translation, rng)
    _, raw, pose_folder = run_pose(tmp_path, n_frames, {"mesh.npy": mesh})

    # keypoints on the upper face (above the mouth), a little off the mesh, tracked with 0.2 px noise (the points
    # step measured DIS flow at 0.16 px median on a real frame), 10 % occluded
    upper = np.flatnonzero(model.points[:, 1] > -0.01)
    keypoints3d = model.points[rng.choice(upper, n_keypoints, replace=False)] + rng.normal(size=(n_keypoints, 3)) * 0.002
    camera = pose.Camera(TRUE_FOCAL, SIZE / 2, SIZE / 2)
    tracks = noisy(pose.project(keypoints3d, rotation, translation, camera), rng, 0.2).astype(np.float32)
    visible = rng.random((n_frames, n_keypoints)) > 0.1
    tracks[~visible] = np.nan
    points = fake_step(tmp_path, "points", {"tracks.npy": tracks, "visible.npy": visible, "keypoints.npy": tracks[0]})
    folders = {"ingest": tmp_path / "ingest", "landmarks": tmp_path / "landmarks", "pose": pose_folder, "points": points}
    ctx = context(tmp_path, "bundle", folders)
    summary = bundle.run(ctx)
    with np.load(ctx.out / "pose.npz") as stored:
        adjusted = {name: stored[name] for name in stored.files}

    def jitter(result):
        return bundle.jitter(result["euler"], np.degrees(1.0)), bundle.jitter(result["translation"], 1000.0)

    true_jitter = jitter({"euler": pose.rotation_to_euler(rotation), "translation": translation})
    raw_error, adjusted_error = rotation_errors(raw, rotation), rotation_errors(adjusted, rotation)
    raw_translation = np.linalg.norm(raw["translation"] - translation, axis=1) * 1000
    adjusted_translation = np.linalg.norm(adjusted["translation"] - translation, axis=1) * 1000
    print(f"\nbundle: rotation error median/95th {np.median(raw_error):.3f}/{np.percentile(raw_error, 95):.3f} -> "
          f"{np.median(adjusted_error):.3f}/{np.percentile(adjusted_error, 95):.3f} deg; translation error median "
          f"{np.median(raw_translation):.2f} -> {np.median(adjusted_translation):.2f} mm; jitter rotation/translation "
          f"{jitter(raw)[0]:.3f} deg/{jitter(raw)[1]:.3f} mm -> {jitter(adjusted)[0]:.3f}/{jitter(adjusted)[1]:.3f} "
          f"(truth {true_jitter[0]:.3f}/{true_jitter[1]:.3f}); track error {summary['mean_track_error_px']['before']:.3f} -> "
          f"{summary['mean_track_error_px']['after']:.3f} px; {summary['seconds']}")
    assert jitter(adjusted)[0] < 0.7 * jitter(raw)[0] and jitter(adjusted)[1] < 0.8 * jitter(raw)[1]
    assert summary["jitter_rotation_deg"]["after"] == pytest.approx(jitter(adjusted)[0])
    assert np.median(adjusted_error) < 0.7 * np.median(raw_error) and np.percentile(adjusted_error, 95) < 0.3
    assert np.median(adjusted_translation) < 1.0
    assert summary["mean_track_error_px"]["after"] < 0.3  # the 0.2 px track noise's mean distance is 0.25 px
    assert adjusted["points3d"].shape == (n_keypoints, 3) and adjusted["ba_reproj_error"].shape == (n_frames,)
    assert set(raw) <= set(adjusted) and float(adjusted["focal"]) == float(raw["focal"])
    np.testing.assert_allclose(np.median(adjusted["reproj_error"]), np.median(raw["reproj_error"]), rtol=0.2)


def test_pose_on_real_frames_agrees_with_mediapipes_own_head_rotation(mirror, tmp_path):
    """On real cnn frames, the fitted rotations match the rotation in MediaPipe's facial transformation matrix
    (its canonical model placed in an OpenGL camera, y up and looking down -z, as ours): a check of the axes, signs
    and handedness of the whole chain (it shares the landmarks and model, so it does not measure accuracy)."""
    from mediapipe import Image, ImageFormat
    from mediapipe.tasks.python import BaseOptions, vision

    from bench import assets, media

    n_frames = 60
    frames = []
    for frame in media.iter_video(assets.fetch("cnn2_25fps")):
        frames.append(frame)
        if len(frames) == n_frames:
            break
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.fetch(face_model.MEDIAPIPE_ASSET))),
        running_mode=vision.RunningMode.VIDEO, num_faces=1, output_facial_transformation_matrixes=True,
    )
    mesh = np.zeros((n_frames, 478, 3), np.float32)
    mediapipe_rotation = np.zeros((n_frames, 3, 3))
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for index, frame in enumerate(frames):
            result = landmarker.detect_for_video(Image(image_format=ImageFormat.SRGB, data=frame), index * 40)
            mesh[index] = [(p.x * SIZE, p.y * SIZE, p.z * SIZE) for p in result.face_landmarks[0]]
            u, _, vt = np.linalg.svd(np.asarray(result.facial_transformation_matrixes[0])[:3, :3])
            mediapipe_rotation[index] = u @ vt
    summary, result, _ = run_pose(tmp_path, n_frames, {"mesh.npy": mesh}, {"keyframe_stride": 5})
    difference = pose.rotation_angle_between(result["rotation"], mediapipe_rotation)
    print(f"\nreal cnn frames: focal {summary['focal']:.0f}, reprojection median {summary['median_reproj_error_px']:.2f} px, "
          f"rotation vs MediaPipe's matrix median {np.median(difference):.2f} deg, max {difference.max():.2f} deg")
    assert np.median(difference) < 2.0 and difference.max() < 4.0
    assert summary["median_reproj_error_px"] < 2.0
