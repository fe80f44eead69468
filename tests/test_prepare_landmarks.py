"""Preparation steps ``landmarks`` and ``capture``: gap filling, ARKit order, OpenFace AU45, and both steps on real
frames of the cnn clip (MediaPipe vs dlib agreement, blink vs eye aspect ratio), plus the FAN path with
random-weight networks saved in the real asset formats."""

from __future__ import annotations

import csv
import itertools
import time
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from conftest import install_fan_test_weights
from prep_fixtures import context, fake_step

from bench import assets, media
from bench.contracts import BenchError
from bench.datasets.preprocess import capture, landmarks
from bench.datasets.preprocess.mediapipe_face import MEDIAPIPE_BLENDSHAPES
from bench.metrics import lmd

# Corresponding points (MediaPipe mesh index, iBUG-68 index): outer/inner eye corners and mouth corners.
CORNERS = ((33, 36), (133, 39), (362, 42), (263, 45), (61, 48), (291, 54))


@cache
def cnn_head(video: Path, n_frames: int) -> np.ndarray:
    """The first ``n_frames`` frames of the cnn clip (decoded once per test session)."""
    frames = np.stack(list(itertools.islice(media.iter_video(video), n_frames)))
    frames.flags.writeable = False
    return frames


def run_landmarks(root: Path, frames: np.ndarray, options: dict) -> tuple[Path, dict, Path]:
    """The landmarks step over an ingest folder holding ``frames``: its folder, its summary, the ingest folder."""
    ingest = fake_step(root, "ingest", frames=frames)
    ctx = context(root, "landmarks", {"ingest": ingest}, options)
    return ctx.out, landmarks.run(ctx), ingest


# ---------------------------------------------------------------------------------------------------------------
# Gaps


def test_gaps_are_interpolated_inside_and_copied_at_the_ends():
    found = np.ones(20, bool)
    found[[0, 1, 5, 6, 7, 12, 19]] = False
    assert landmarks.missing_runs(found) == [(0, 1), (5, 7), (12, 12), (19, 19)]
    frames = np.arange(20, dtype=np.float64)
    values = np.stack([frames * 2.0, -frames], axis=1)[:, :, None] + np.zeros((1, 2, 3))  # linear in frame
    truth = values.copy()
    values[~found] = 0
    interpolated, nearest = landmarks.fill_gaps(values, found)
    assert interpolated == [5, 6, 7, 12] and nearest == [0, 1, 19]
    np.testing.assert_allclose(values[found], truth[found])
    np.testing.assert_allclose(values[[5, 6, 7, 12]], truth[[5, 6, 7, 12]])  # a line is interpolated exactly
    np.testing.assert_array_equal(values[[0, 1]], truth[[2, 2]])
    np.testing.assert_array_equal(values[19], truth[18])


def test_gaps_longer_than_the_limit_name_the_frames_and_the_option():
    found = np.ones(60, bool)
    found[10:22] = False  # 12 frames: allowed with the default limit
    landmarks.check_gaps({"mediapipe": found, "dlib": found}, max_gap=12)
    found[22] = False  # 13 frames: 0.52 s
    with pytest.raises(BenchError) as raised:
        landmarks.check_gaps({"mediapipe": np.ones(60, bool), "dlib": found}, max_gap=12)
    message = str(raised.value)
    assert "frames 10-22 (0.52 s) have no face (dlib)" in message
    assert "landmarks.max_gap_frames=12" in message and "mediapipe" not in message and "\n" not in message
    with pytest.raises(BenchError, match=r"no face found in any of the 5 frames \(mediapipe\)"):
        landmarks.check_gaps({"mediapipe": np.zeros(5, bool), "dlib": np.ones(5, bool)}, max_gap=12)


# ---------------------------------------------------------------------------------------------------------------
# Blendshape order, AU45


def test_arkit_order_is_alphabetical_by_name_and_matches_synctalks_reordering():
    assert list(capture.ARKIT_BLENDSHAPES) == sorted(capture.ARKIT_BLENDSHAPES)
    assert set(capture.ARKIT_BLENDSHAPES) == set(MEDIAPIPE_BLENDSHAPES[1:]) | {"tongueOut"}
    scores = np.random.default_rng(0).random((7, 52)).astype(np.float32)
    arkit = capture.to_arkit(scores)
    synctalk = np.concatenate([scores[:, 1:], np.zeros((7, 1), np.float32)], axis=1)  # drop _neutral, append 0
    np.testing.assert_array_equal(arkit, synctalk)
    # SyncTalk's default --bs_area upper reads columns 0-4 and 8-9 (provider.py)
    assert [capture.ARKIT_BLENDSHAPES.index(name) for name in capture.UPPER7] == [0, 1, 2, 3, 4, 8, 9]


def read_au45_reference(path: Path, n_frames: int) -> np.ndarray:
    """AU45_r of the first ``n_frames`` CSV rows, read with the csv module, clipped to [0, 2] and halved."""
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    column = [name.strip() for name in rows[0]].index("AU45_r")
    return np.clip([float(row[column]) for row in rows[1 : n_frames + 1]], 0, 2) / 2


def test_au45_from_the_real_openface_csv(mirror, tmp_path):
    path = assets.fetch("openface_au_csv")
    au45, info = capture.read_au45(path, 300)
    assert au45.shape == (300,) and au45.dtype == np.float32
    np.testing.assert_allclose(au45, read_au45_reference(path, 300), atol=1e-7)
    assert au45[0] == pytest.approx(0.29) and au45[2] == pytest.approx(0.09)  # rows 1 and 3: AU45_r 0.58, 0.18
    assert info["openface_rows_beyond_clip"] == 8000 - 300 and info["openface_failed_frames"] == 0
    # the same table without the spaces after the commas (other writers): same values
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join(line.replace(", ", ",") for line in path.read_text().splitlines()[:301]) + "\n")
    np.testing.assert_array_equal(capture.read_au45(plain, 300)[0], au45)


def test_au45_from_a_csv_missing_frames_is_an_error(mirror, tmp_path):
    lines = assets.fetch("openface_au_csv").read_text().splitlines()
    gappy = tmp_path / "au.csv"
    gappy.write_text("\n".join(lines[:5] + lines[8:101]) + "\n")  # OpenFace frames 5-7 dropped; 1-100 otherwise
    with pytest.raises(BenchError) as raised:
        capture.read_au45(gappy, 50)
    assert "OpenFace frames 5-7 (clip frames 4-6)" in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(BenchError, match=r"OpenFace frames 5-7, 101-120 \(clip frames 4-6, 100-119\)"):
        capture.read_au45(gappy, 120)


# ---------------------------------------------------------------------------------------------------------------
# Both steps on the cnn clip


def test_landmarks_and_capture_on_real_frames_with_a_blank_stretch(mirror, tmp_path):
    frames = cnn_head(assets.fetch("cnn2_25fps"), 150).copy()
    frames[60:65] = 0  # five frames without a face: filled, never shifted
    started = time.perf_counter()
    landmark_out, summary, ingest = run_landmarks(tmp_path, frames, {"backend68": "dlib"})
    folders = {"ingest": ingest, "landmarks": landmark_out}
    capture_ctx = context(tmp_path, "capture", folders, {"openface_csv": str(assets.fetch("openface_au_csv"))})
    capture_summary = capture.run(capture_ctx)
    capture_out = capture_ctx.out
    seconds = time.perf_counter() - started

    found = np.load(landmark_out / "found.npy")
    blank = list(range(60, 65))
    assert found.shape == (150, 2) and not found[blank].any() and found.sum() == 2 * 145
    assert summary["backend68"] == "dlib" and summary["missing"] == {"mediapipe": blank, "dlib": blank}
    assert summary["interpolated"] == {"mediapipe": blank, "dlib": blank} and summary["nearest_filled"]["dlib"] == []
    assert summary["backend68_stats"]["full_resolution_retries"] == 5  # only the blank frames needed the retry
    mesh, lms68 = np.load(landmark_out / "mesh.npy"), np.load(landmark_out / "lms68.npy")
    assert mesh.shape == (150, 478, 3) and lms68.shape == (150, 68, 2) and np.isfinite(lms68).all()
    np.testing.assert_allclose(lms68[62], (lms68[59] + lms68[65]) / 2, atol=1e-4)  # midpoint of the neighbours
    assert np.load(landmark_out / "mediapipe_matrix.npy").shape == (150, 4, 4)

    # MediaPipe and dlib put eye and mouth corners in nearly the same place (faces are ~250 px wide here)
    seen = found.all(axis=1)
    mesh_index, dlib_index = (list(column) for column in zip(*CORNERS))
    distance = np.linalg.norm(mesh[seen][:, mesh_index, :2] - lms68[seen][:, dlib_index], axis=2)
    print(f"corner distance mesh vs dlib: mean {distance.mean():.2f} px, per corner {distance.mean(0).round(2)}")
    assert distance.mean() < 4.0 and distance.mean(axis=0).max() < 7.0

    bs_raw, bs = np.load(capture_out / "bs_raw.npy"), np.load(capture_out / "bs.npy")
    upper7 = np.load(capture_out / "upper7.npy")
    blendshapes = np.load(landmark_out / "blendshapes_mediapipe.npy")
    assert bs.shape == bs_raw.shape == (150, 52) and bs.dtype == np.float32 and upper7.shape == (150, 7)
    np.testing.assert_array_equal(bs_raw[:, 8], blendshapes[:, MEDIAPIPE_BLENDSHAPES.index("eyeBlinkLeft")])
    assert (bs_raw[:, 51] == 0).all()
    np.testing.assert_array_equal(upper7[:, 5:], bs[:, 8:10])
    assert 0 < np.abs(bs - bs_raw).mean() < 0.02  # smoothed, not replaced
    # blinks peak where the eye aspect ratio dips
    print(f"blink vs eye aspect ratio correlation {capture_summary['blink_ear_correlation']}; both steps {seconds:.1f} s")
    assert capture_summary["blink_ear_correlation"] < -0.6 and capture_summary["blink_ear_frames"] == 145
    au45 = np.load(capture_out / "au45.npy")
    np.testing.assert_allclose(au45, read_au45_reference(assets.fetch("openface_au_csv"), 150), atol=1e-7)


def test_auto_falls_back_to_dlib_and_fan_asked_for_without_weights_is_an_error(mirror):
    build, reason = landmarks.choose_backend68("auto", 2)
    assert reason.startswith("auto: FAN weights unavailable") and lmd.FAN_DETECTOR in reason
    assert isinstance(build(), landmarks.DlibLandmarks68)
    with pytest.raises(assets.AssetUnavailable, match=lmd.FAN_DETECTOR):
        landmarks.choose_backend68("fan", 2)
    with pytest.raises(BenchError, match="backend68='openface'"):
        landmarks.choose_backend68("openface", 2)


@pytest.fixture
def fan_weights(mirror, tmp_path, monkeypatch):
    """Created S3FD and 2D-FAN-4 checkpoints in the published formats, ahead of the shared mirror."""
    install_fan_test_weights(tmp_path / "fan_mirror", monkeypatch)
    return tmp_path / "fan_mirror"


def test_fan_backend_runs_from_checkpoints_in_the_real_formats(fan_weights, tmp_path):
    import cv2

    # one small frame: face-alignment's first call compiles its heatmap decoder with numba (about 20 s), 2D-FAN-4
    # takes seconds per face on a CPU, and random S3FD weights return many boxes
    head = cnn_head(assets.fetch("cnn2_25fps"), 1)
    frames = cv2.resize(head[0], (128, 128), interpolation=cv2.INTER_AREA)[None]
    landmark_out, summary, _ = run_landmarks(tmp_path, frames, {"backend68": "auto"})
    assert summary["backend68"] == "fan" and summary["backend68_reason"] == "auto: both FAN assets resolve"
    assert "S3FD" in summary["backend68_scheme"]
    lms68 = np.load(landmark_out / "lms68.npy")
    assert lms68.shape == (1, 68, 2) and np.isfinite(lms68).all()
    assert np.load(landmark_out / "found.npy").all()  # random weights still return boxes


@pytest.mark.slow
def test_full_cnn_clip(mirror, tmp_path):
    """Both steps on all 1779 frames with default options (prints seconds per step and per backend)."""
    folder = tmp_path / "ingest"
    folder.mkdir()
    n_frames = media.write_frames(folder / "frames", media.iter_video(assets.fetch("cnn2_25fps")))
    ingest = fake_step(tmp_path, "ingest", summary={"n_frames": n_frames, "width": 512, "height": 512})
    landmarks_ctx = context(tmp_path, "landmarks", {"ingest": ingest})
    started = time.perf_counter()
    summary = landmarks.run(landmarks_ctx)
    landmark_seconds = time.perf_counter() - started
    capture_ctx = context(tmp_path, "capture", {"ingest": ingest, "landmarks": landmarks_ctx.out})
    started = time.perf_counter()
    capture_summary = capture.run(capture_ctx)
    capture_seconds = time.perf_counter() - started
    print(
        f"{n_frames} frames: landmarks {landmark_seconds:.1f} s ({summary['seconds']}), capture {capture_seconds:.1f} s; "
        f"missing {summary['missing']}; blink vs EAR correlation {capture_summary['blink_ear_correlation']}"
    )
    assert n_frames == 1779 and summary["missing"] == {"mediapipe": [], summary["backend68"]: []}
    assert capture_summary["blink_ear_correlation"] < -0.6
