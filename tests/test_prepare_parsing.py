"""Preparation steps parsing, background and torso (datasets/preprocess/{bisenet,parsing,background,torso}.py)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from prep_fixtures import context, fake_step

from bench import assets, media
from bench.contracts import BenchError
from bench.datasets.preprocess import background, bisenet, parsing, torso

# Key names and shapes of zllrunning/face-parsing.PyTorch's BiSeNet (model.py + resnet.py), as in 79999_iter.pth.
RELEASE_KEYS = {
    "cp.resnet.conv1.weight": (64, 3, 7, 7),
    "cp.resnet.bn1.running_var": (64,),
    "cp.resnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "cp.resnet.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "cp.resnet.layer4.1.bn2.num_batches_tracked": (),
    "cp.arm16.conv.conv.weight": (128, 256, 3, 3),
    "cp.arm32.conv_atten.weight": (128, 128, 1, 1),
    "cp.arm32.bn_atten.running_mean": (128,),
    "cp.conv_head32.conv.weight": (128, 128, 3, 3),
    "cp.conv_avg.conv.weight": (128, 512, 1, 1),
    "ffm.convblk.conv.weight": (256, 256, 1, 1),
    "ffm.conv1.weight": (64, 256, 1, 1),
    "ffm.conv2.weight": (256, 64, 1, 1),
    "conv_out.conv.conv.weight": (256, 256, 3, 3),
    "conv_out.conv_out.weight": (19, 256, 1, 1),
    "conv_out16.conv_out.weight": (19, 64, 1, 1),
    "conv_out32.conv.bn.weight": (64,),
}
RELEASE_TENSORS = 191  # tensors in the released file (its sha256 twin facexlib parsing_bisenet.pth is listed with 191)

# SyncTalk's parsing colours by class, written out independently of parsing.CLASS_TO_LABEL.
EXPECTED_LABEL = {0: 0, 14: 2, 15: 2, 16: 3, **{c: 1 for c in (*range(1, 14), 17, 18)}}


def save_release_checkpoint(path: Path, network: bisenet.BiSeNet) -> Path:
    """A state dict saved like the 2019 release (torch.save of the module's OrderedDict, legacy format)."""
    torch.save(network.state_dict(), path, _use_new_zipfile_serialization=False)
    return path


def test_bisenet_loads_a_checkpoint_in_the_release_layout(tmp_path):
    torch.manual_seed(0)
    network = bisenet.BiSeNet()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = network.state_dict()
    assert len(state) == RELEASE_TENSORS
    for key, shape in RELEASE_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    weights = save_release_checkpoint(tmp_path / "79999_iter.pth", network)
    loaded = bisenet.load(weights, device="cpu")
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert not loaded.training
    with torch.inference_mode():
        assert loaded(torch.zeros(1, 3, 64, 64)).shape == (1, 19, 64, 64)
    truncated = {k: v for k, v in state.items() if not k.startswith("conv_out16.")}
    torch.save(truncated, tmp_path / "partial.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        bisenet.load(tmp_path / "partial.pth", device="cpu")


def test_class_mapping_and_face_only_classes():
    classes = np.arange(19, dtype=np.uint8)[None, :]
    assert parsing.labels_from_classes(classes).tolist() == [[EXPECTED_LABEL[c] for c in range(19)]]
    assert np.nonzero(parsing.face_only_from_classes(classes)[0])[0].tolist() == [1, 2, 3, 4, 5, 6, 10, 11, 12, 13]


def synthetic_class_map(height: int = 200, width: int = 160) -> np.ndarray:
    """A BiSeNet-like class map: hair and hat above a skin ellipse with eyes, nose and lips, ears at the sides,
    neck with a necklace below, cloth at the bottom."""
    classes = np.zeros((height, width), np.uint8)
    cv2.ellipse(classes, (80, 70), (52, 62), 0, 0, 360, 17, -1)  # hair
    cv2.rectangle(classes, (50, 2), (110, 12), 18, -1)  # hat
    cv2.rectangle(classes, (62, 110), (98, 165), 14, -1)  # neck
    cv2.rectangle(classes, (62, 140), (98, 144), 15, -1)  # necklace
    cv2.rectangle(classes, (10, 160), (150, 199), 16, -1)  # cloth
    cv2.ellipse(classes, (80, 85), (40, 50), 0, 0, 360, 1, -1)  # skin
    cv2.ellipse(classes, (38, 85), (5, 12), 0, 0, 360, 7, -1)  # ears
    cv2.ellipse(classes, (122, 85), (5, 12), 0, 0, 360, 8, -1)
    classes[72:78, 60:72], classes[72:78, 88:100] = 4, 5  # eyes
    classes[66:69, 58:74], classes[66:69, 86:102] = 2, 3  # brows
    classes[80:100, 76:84] = 10  # nose
    classes[108:112, 68:92], classes[112:116, 68:92] = 12, 13  # lips
    return classes


def reference_face_soft(face_only: np.ndarray) -> np.ndarray:
    """SyncTalk's face_parsing/test.py face image, step by step as written there (colour image, lexsort, per-pixel
    loop), returning 255 - G."""
    image = np.zeros(face_only.shape + (3,)) + np.array([255, 255, 255])
    image[face_only] = [255, 0, 0]
    pad = 5
    image = image.astype(np.uint8)
    face_part = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)
    coords = np.stack(np.nonzero(face_part), axis=-1)
    coords = coords[np.lexsort((-coords[:, 0], coords[:, 1]))]
    _, first = np.unique(coords[:, 1], return_index=True)
    bottom = coords[first] + np.array([pad, 0])
    rows = image.shape[0]
    bottom[:, 0] = np.clip(bottom[:, 0], 0, rows - 1)
    y_min, y_max = bottom[:, 1].min(), bottom[:, 1].max()
    part = (y_max - y_min) // 4
    start1, end1 = y_min + part, y_min + 2 * part
    start2, end2 = end1, end1 + part
    for x, y in bottom:
        if start1 <= y <= end1 or start2 <= y <= end2:
            image[max(x - pad, 0) : min(x + pad, rows), y] = [255, 0, 0]
    blurred = cv2.GaussianBlur(image, (9, 9), cv2.BORDER_DEFAULT)
    return 255 - blurred[..., 1]


def test_face_soft_matches_synctalk_on_a_synthetic_label_map():
    classes = synthetic_class_map()
    face_only = parsing.face_only_from_classes(classes)
    assert not face_only[85, 38] and not face_only[20, 80]  # ears and hair are not face
    soft = parsing.face_soft(face_only)
    assert soft.dtype == np.uint8 and soft.shape == classes.shape
    np.testing.assert_array_equal(soft, reference_face_soft(face_only))
    lowest = 134  # skin ellipse bottom row (85 + 50 - 1)
    assert soft[90, 80] == 255 and soft[5, 5] == 0 and soft[190, 80] == 0
    # the middle half of the jaw is extended downwards, the sides are not
    side_lowest = np.nonzero(face_only[:, 48])[0].max()  # column 48 lies outside the middle half (60..100)
    assert soft[lowest + 8, 80] > 100 and soft[side_lowest + 8, 48] < 30
    labels = parsing.labels_from_classes(classes)
    assert (
        labels[20, 80] == 1
        and labels[85, 38] == 1
        and labels[142, 80] == 2
        and labels[190, 80] == 3
        and labels[190, 2] == 0
    )


def test_bisenet_method_labels_frames_with_a_created_checkpoint(tmp_path):
    torch.manual_seed(1)
    network = bisenet.BiSeNet().eval()
    weights = save_release_checkpoint(tmp_path / "79999_iter.pth", network)
    frames = np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    ingest = fake_step(tmp_path, "ingest", frames=frames)
    landmarks = fake_step(tmp_path, "landmarks", {"mesh.npy": np.full((1, 478, 3), np.nan, np.float32)})
    ctx = context(tmp_path, "parsing", {"ingest": ingest, "landmarks": landmarks}, {"bisenet_weights": str(weights)})
    started = time.time()
    summary = parsing.run(ctx)
    print(f"BiSeNet step on CPU, 1 frame (with loading): {time.time() - started:.2f} s")
    assert summary["method"] == "bisenet" and summary["reason"] == "parsing.bisenet_weights"
    labels, soft = np.load(ctx.out / "labels.npy"), np.load(ctx.out / "face_soft.npy")
    assert labels.shape == soft.shape == (1, 96, 128) and labels.dtype == soft.dtype == np.uint8
    # independent path: the network on the SyncTalk-preprocessed input, argmax, then resize back with nearest
    from PIL import Image

    for i, frame in enumerate(frames):
        resized = np.asarray(Image.fromarray(frame).resize((512, 512), Image.BILINEAR), np.float32) / 255
        tensor = torch.from_numpy((resized - bisenet.IMAGENET_MEAN) / bisenet.IMAGENET_STD).permute(2, 0, 1)[None]
        with torch.inference_mode():
            classes = network(tensor.float())[0].argmax(0).numpy().astype(np.uint8)
        expected_labels = np.vectorize(EXPECTED_LABEL.get)(classes).astype(np.uint8)
        np.testing.assert_array_equal(
            labels[i], cv2.resize(expected_labels, (128, 96), interpolation=cv2.INTER_NEAREST)
        )
        expected_soft = (
            reference_face_soft(np.isin(classes, parsing.FACE_CLASSES))
            if np.isin(classes, parsing.FACE_CLASSES).any()
            else np.zeros_like(classes)
        )
        np.testing.assert_array_equal(soft[i], cv2.resize(expected_soft, (128, 96), interpolation=cv2.INTER_NEAREST))

    offline_ctx = context(tmp_path / "b", "parsing", {"ingest": ingest, "landmarks": landmarks}, {"method": "bisenet"})
    with pytest.raises(BenchError, match="needs BiSeNet weights"):
        parsing.run(offline_ctx)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    for folder, weights, error in (("c", "nope.pth", "no such file"), ("d", "other.pth", "not a face-parsing.PyTorch BiSeNet")):
        bad = context(tmp_path / folder, "parsing", {"ingest": ingest, "landmarks": landmarks},
                      {"bisenet_weights": str(tmp_path / weights)})
        with pytest.raises(BenchError, match=error):
            parsing.run(bad)


def test_background_recovers_the_static_background_where_it_is_seen(tmp_path):
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(3)
    height, width, n = 60, 90, 61
    scene = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frames = np.repeat(scene[None], n, axis=0)
    labels = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        left = 5 + i  # a person moving right, plus a block that never moves (never seen behind)
        labels[i, 20:60, left : left + 20] = 3
        labels[i, 10:20, left + 5 : left + 15] = 1
        labels[i, 0:12, 70:90] = 1
        frames[i][labels[i] > 0] = rng.integers(0, 256, (int((labels[i] > 0).sum()), 3), dtype=np.uint8)
    frames[25, labels[25] == 0] = 0  # an unsampled frame must not matter
    empty_labels = labels.copy()
    empty_labels[40] = 0  # a sampled frame with no person sees every pixel
    empty_frames = frames.copy()
    empty_frames[40] = scene
    plate, observed = background.plate(empty_frames, empty_labels, every=20, min_distance=5.0)
    assert observed.all()
    np.testing.assert_array_equal(plate, scene)

    plate, observed = background.plate(frames, labels, every=20, min_distance=5.0)
    grid = np.stack(np.mgrid[0:height, 0:width], axis=-1).reshape(-1, 2)
    largest = np.zeros(height * width)
    for index in (0, 20, 40, 60):
        distances, _ = cKDTree(np.argwhere(labels[index] > 0)).query(grid)
        largest = np.maximum(largest, distances)
    expected_observed = (largest > 5).reshape(height, width)
    np.testing.assert_array_equal(observed, expected_observed)
    assert not observed[5, 80] and observed[40, 2]
    np.testing.assert_array_equal(plate[observed], scene[observed])
    seen = np.argwhere(observed)
    distances, _ = cKDTree(seen).query(np.argwhere(~observed))
    for (row, column), distance in zip(np.argwhere(~observed), distances, strict=True):
        candidates = seen[np.isclose(np.hypot(*(seen - (row, column)).T), distance)]
        assert any((plate[row, column] == scene[r, c]).all() for r, c in candidates)

    ingest = fake_step(tmp_path, "ingest", frames=frames)
    parsed = fake_step(tmp_path, "parsing", {"labels.npy": labels})
    ctx = context(tmp_path, "background", {"ingest": ingest, "parsing": parsed})
    summary = background.run(ctx)
    np.testing.assert_array_equal(cv2.imread(str(ctx.out / "bc.png"))[..., ::-1], plate)
    assert summary["sampled_frames"] == 4
    assert summary["observed_fraction"] == round(float(observed.mean()), 4)
    assert summary["filled_fraction"] == round(1 - float(observed.mean()), 4)

    labels[:] = 3
    with pytest.raises(BenchError, match="visible background"):
        background.plate(frames, labels)


def synthetic_torso_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 110 x 40 frame: head rows 5-59 (cols 8-31), neck rows 60-71 (cols 14-25), torso from row 60 right under
    the head (cols 8-13, 26-31), from row 72 under the neck, from row 75 under background (cols 0-7, 32-39)."""
    height, width = 110, 40
    labels = np.zeros((height, width), np.uint8)
    labels[5:60, 8:32] = 1
    labels[60:72, 14:26] = 2
    labels[60:, 8:14] = labels[60:, 26:32] = 3
    labels[72:, 14:26] = 3
    labels[75:, :8] = labels[75:, 32:] = 3
    rows, columns = np.mgrid[0:height, 0:width]
    frame = np.stack([(rows * 2) % 256, (columns * 6 + 20) % 256, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    frame[labels == 2] = (200, 150, 120)  # a uniform neck
    plate = np.random.default_rng(5).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return frame, labels, plate


def test_torso_alpha_and_inpainted_strips_follow_the_rules(tmp_path):
    frame, labels, plate = synthetic_torso_case()
    gt, rgba, counts = torso.torso_frame(frame, labels, plate)
    background_pixels = labels == 0
    np.testing.assert_array_equal(gt[background_pixels], plate[background_pixels])
    np.testing.assert_array_equal(gt[~background_pixels], frame[~background_pixels])
    assert (rgba[background_pixels] == 0).all()
    assert (rgba[labels == 3, 3] == 255).all() and (rgba[labels == 2, 3] == 255).all()
    assert counts == {"torso_columns": 12, "neck_columns": 12}

    # torso strip: rows 52..60 of the columns right under the head, colour of row 60 darkened by 0.98^k, no blur
    for column in (*range(8, 14), *range(26, 32)):
        for k in range(9):
            expected = np.floor(gt[60, column].astype(float) * 0.98**k)
            np.testing.assert_array_equal(rgba[60 - k, column, :3], expected)
            assert rgba[60 - k, column, 3] == 255
        assert rgba[51, column, 3] == 0  # head above the strip: removed
    # neck strip: the neck grown 3 px is rows 57..74; source row 57 + min(18 - 1, 4) = 61; it and the 52 rows above
    # fade from the source colour to the mean colour of the grown neck, then are blurred
    grown = np.zeros_like(labels, bool)
    grown[57:75, 14:26] = True
    mean_neck = gt[grown].mean(axis=0)
    assert (rgba[9:62, 14:26, 3] == 255).all() and (rgba[5:9, 14:26, 3] == 0).all()
    for row in range(11, 58):  # inside the strip, where the 5 x 5 blur of a linear ramp is the ramp
        weight = 1 - (61 - row) / 52
        expected = np.array([200, 150, 120]) * weight + mean_neck * (1 - weight)
        assert np.abs(rgba[row, 16:24, :3].astype(float) - expected).max() <= 1.5, row
    assert rgba[60, 19, 2] - rgba[11, 19, 2] > 30  # it does fade (blue: 120 in the neck, 0 around it)

    high = np.zeros_like(labels)  # a head at the top row: the strips stop there instead of wrapping to the bottom
    high[0:20, 8:32] = 1
    high[20:32, 14:26] = 2
    high[20:, 8:14] = high[32:, 14:26] = 3
    gt, rgba, _ = torso.torso_frame(frame, high, plate)
    assert (rgba[:24, 14:26, 3] == 255).all()
    np.testing.assert_array_equal(rgba[60:, 8:26, :3], gt[60:, 8:26])

    empty = np.zeros_like(labels)
    gt, rgba, counts = torso.torso_frame(frame, empty, plate)
    np.testing.assert_array_equal(gt, plate)
    assert (rgba == 0).all() and counts == {"torso_columns": 0, "neck_columns": 0}

    frames = np.stack([frame, frame])
    all_labels = np.stack([labels, empty])
    ingest = fake_step(tmp_path, "ingest", frames=frames)
    parsed = fake_step(tmp_path, "parsing", {"labels.npy": all_labels})
    plate_step = tmp_path / "background"
    plate_step.mkdir()
    cv2.imwrite(str(plate_step / "bc.png"), plate[..., ::-1])
    fake_step(tmp_path, "background")
    ctx = context(tmp_path, "torso", {"ingest": ingest, "parsing": parsed, "background": plate_step})
    summary = torso.run(ctx)
    stored_gt, stored_torso = np.load(ctx.out / "gt.npy"), np.load(ctx.out / "torso.npy")
    assert stored_gt.shape == (2, 110, 40, 3) and stored_torso.shape == (2, 110, 40, 4)
    np.testing.assert_array_equal(stored_torso[0], torso.torso_frame(frame, labels, plate)[1])
    assert summary["frames_without_neck_inpaint"] == 1


def test_face_oval_indices_are_mediapipes():
    from mediapipe.tasks.python import vision

    chain = {c.start: c.end for c in vision.FaceLandmarksConnections.FACE_LANDMARKS_FACE_OVAL}
    walk = [parsing.FACE_OVAL[0]]
    while len(walk) < len(chain):
        walk.append(chain[walk[-1]])
    assert tuple(walk) == parsing.FACE_OVAL
    assert all(index in parsing.FACE_OVAL for index in parsing.JAW)


def mediapipe_mesh(frames: np.ndarray, indices: list[int]) -> np.ndarray:
    """(N, 478, 3) FaceLandmarker points in pixels (x*W, y*H, z*W), VIDEO mode at the frames' own timestamps."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    height, width = frames.shape[1:3]
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(assets.fetch("mediapipe_face_landmarker"))),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=1,
    )
    mesh = np.full((len(frames), 478, 3), np.nan, np.float32)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for row, (index, frame) in enumerate(zip(indices, frames, strict=True)):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            found = landmarker.detect_for_video(image, index * 40)
            if found.face_landmarks:
                points = np.array([[p.x, p.y, p.z] for p in found.face_landmarks[0]], np.float32)
                mesh[row] = points * np.array([width, height, width], np.float32)
    return mesh


def cnn_frames(root: Path, indices: list[int]) -> tuple[Path, np.ndarray, np.ndarray]:
    """The ingest folder of the given frames of the real cnn clip, the frames and their MediaPipe mesh."""
    wanted = set(indices)
    frames = []
    for index, frame in enumerate(media.iter_video(assets.fetch("cnn2_25fps"))):
        if index in wanted:
            frames.append(frame)
        if index >= max(indices):
            break
    frames = np.stack(frames)
    mesh = mediapipe_mesh(frames, indices)
    assert np.isfinite(mesh).all()
    return fake_step(root, "ingest", frames=frames), frames, mesh


def test_offline_parsing_on_real_frames(tmp_path, mirror):
    indices = list(range(0, 400, 40))
    ingest, frames, mesh = cnn_frames(tmp_path, indices)
    mesh_missing = mesh.copy()
    mesh_missing[3] = np.nan  # a frame without a face: parsed with its neighbour's mesh, indices unchanged
    folders = {"ingest": ingest, "landmarks": fake_step(tmp_path, "landmarks", {"mesh.npy": mesh_missing})}
    ctx = context(tmp_path, "parsing", folders)
    started = time.time()
    summary = parsing.run(ctx)
    elapsed = time.time() - started
    print(f"offline parsing: {elapsed / len(frames) * 1000:.0f} ms/frame ({summary})")
    assert summary["method"] == "offline" and "unavailable" in summary["reason"]
    assert summary["frames_without_face"] == [3]
    labels, soft = np.load(ctx.out / "labels.npy"), np.load(ctx.out / "face_soft.npy")
    assert labels.shape == soft.shape == (len(frames), 512, 512)
    for i in range(len(frames)):
        assert (labels[i, :8, :8] == 0).all() and (labels[i, :8, -8:] == 0).all(), i  # top corners: background
        assert (labels[i, -8:, :8] != 1).all() and (labels[i, -8:, -8:] != 1).all(), i  # bottom corners: the suit
        used = mesh[2 if i == 3 else i, :, :2]  # frame 3 is parsed with the mesh of frame 2
        points = np.clip(np.round(used).astype(int), 0, 511)
        assert (labels[i, points[:, 1], points[:, 0]] == 1).all(), i  # head covers every mesh point
        nose = np.round(used[4]).astype(int)
        assert soft[i, nose[1], nose[0]] >= 250, i
        assert soft[i, 0, 0] == soft[i, 0, -1] == soft[i, -1, 0] == soft[i, -1, -1] == 0, i
        assert labels[i, -10, 256] == 3, i  # torso at the bottom centre
        assert 0.2 < (labels[i] == 1).mean() < 0.5 and (labels[i] == 3).mean() > 0.08, i
    # the frame without a face got the neighbour's geometry: nearly the same labels as that neighbour
    assert np.mean(labels[3] == labels[2]) > 0.9

    parsed = ctx.out
    bg_ctx = context(tmp_path, "background", {"ingest": ingest, "parsing": parsed})
    started = time.time()
    bg_summary = background.run(bg_ctx)
    print(f"background: {time.time() - started:.2f} s ({bg_summary})")
    plate = cv2.imread(str(bg_ctx.out / "bc.png"))[..., ::-1]
    np.testing.assert_array_equal(plate[:8, :8], frames[0, :8, :8])
    torso_ctx = context(tmp_path, "torso", {"ingest": ingest, "parsing": parsed, "background": bg_ctx.out})
    started = time.time()
    torso_summary = torso.run(torso_ctx)
    print(f"torso: {(time.time() - started) / len(frames) * 1000:.0f} ms/frame ({torso_summary})")
    rgba = np.load(torso_ctx.out / "torso.npy")
    assert (rgba[:, :8, :8, 3] == 0).all() and (rgba[:, -10, 256, 3] == 255).all()
    assert torso_summary["mean_neck_inpaint_columns"] > 10  # the offline parser finds neck skin under the chin


@pytest.mark.slow
def test_full_cnn_clip_timings(tmp_path, mirror):
    """Parsing (offline), background and torso on all 1779 frames of cnn; prints seconds per step."""
    video = assets.fetch("cnn2_25fps")
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    n = media.write_frames(ingest / "frames", media.iter_video(video))
    fake_step(tmp_path, "ingest", summary={"n_frames": n, "width": 512, "height": 512})
    frames = media.open_frames(ingest / "frames")
    mesh = mediapipe_mesh(frames, list(range(n)))
    folders = {"ingest": ingest, "landmarks": fake_step(tmp_path, "landmarks", {"mesh.npy": mesh})}
    seconds = {}
    started = time.time()
    parsed = context(tmp_path, "parsing", folders)
    parsing.run(parsed)
    seconds["parsing"] = time.time() - started
    started = time.time()
    plate = context(tmp_path, "background", {"ingest": ingest, "parsing": parsed.out})
    summary = background.run(plate)
    seconds["background"] = time.time() - started
    started = time.time()
    torso.run(context(tmp_path, "torso", {"ingest": ingest, "parsing": parsed.out, "background": plate.out}))
    seconds["torso"] = time.time() - started
    print(f"cnn, {n} frames: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + f"; plate {summary}")
    labels = np.load(parsed.out / "labels.npy", mmap_mode="r")
    assert (labels[:, :4, :4] == 0).mean() > 0.99 and (labels[:, -10, 256] == 3).mean() > 0.99
    assert summary["observed_fraction"] > 0.4
