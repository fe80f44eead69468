"""LSE-C / LSE-D (SyncNet): scoring against a brute-force reference and against syncnet-python's own
SyncNetInstance.evaluate, tracking and cropping against the reference rules, the real loading path with
checkpoints of the real architectures (the VGG weights are not available here), and the refusals."""

import dataclasses
import types

import cv2
import numpy as np
import pytest
import torch
from scipy.io import wavfile
from syncnet_python.detectors.s3fd.nets import S3FDNet
from syncnet_python.syncnet_pipeline import PipelineConfig, SyncNetPipeline
from syncnet_python.SyncNetInstance import SyncNetInstance
from syncnet_python.SyncNetModel import S

from bench import assets, media, pipeline, registry
from bench.contracts import BenchError, DrivingAudio, MetricInput, MetricKind
from bench.hashing import sha256_file
from bench.metrics import lse

LSE_C = "lse_c@syncnet-v2-vshift15"
LSE_D = "lse_d@syncnet-v2-vshift15"


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Randomly initialised SyncNet v2 and S3FD saved as the real files are: plain state dicts, real file names."""
    folder = tmp_path_factory.mktemp("syncnet_weights")
    torch.manual_seed(0)
    torch.save(S().state_dict(), folder / "syncnet_v2.model")
    torch.save(S3FDNet(device="cpu").state_dict(), folder / "sfd_face.pth")
    return folder


@pytest.fixture
def catalogued_checkpoints(checkpoints, monkeypatch):
    """The two catalog entries name the created files (their sha256 and size), found in a mirror folder."""
    catalog = dict(assets.catalog())
    for name in (lse.SYNCNET_ASSET, lse.S3FD_ASSET):
        path = checkpoints / catalog[name].filename
        catalog[name] = dataclasses.replace(catalog[name], sha256=sha256_file(path), size=path.stat().st_size)
    monkeypatch.setattr(assets, "catalog", lambda: catalog)
    monkeypatch.setenv("BENCH_ASSET_MIRROR", str(checkpoints))
    return checkpoints


def _metric(variant, checkpoints):
    spec = registry.metrics.get(variant)
    paths = {lse.SYNCNET_ASSET: checkpoints / "syncnet_v2.model", lse.S3FD_ASSET: checkpoints / "sfd_face.pth"}
    return registry.load_object(spec.impl)(spec, paths)


def _audio(tmp_path, n_frames, seed=0):
    rng = np.random.default_rng(seed)
    path = tmp_path / "speech.wav"
    media.write_wav(path, (0.3 * rng.standard_normal(n_frames * 640)).astype(np.float32))
    return DrivingAudio(id="test", path=path, n_frames=n_frames, sha256=sha256_file(path), has_ground_truth=False)


def _reference_mean_distances(video, audio, vshift):
    """Mean over windows of |video_i - audio_(i+k)| for k = -vshift..vshift, zero vectors past the ends
    (torch's pairwise_distance adds 1e-6 to the difference)."""
    padded = np.vstack([np.zeros((vshift, video.shape[1])), audio, np.zeros((vshift, video.shape[1]))])
    window = np.arange(len(video))
    return np.array(
        [np.linalg.norm(video - padded[window + j] + 1e-6, axis=1) for j in range(2 * vshift + 1)]
    )  # (offsets, windows)


def test_two_specs_two_directions_one_implementation_module():
    c, d = registry.metrics.get(LSE_C), registry.metrics.get(LSE_D)
    assert c.higher_is_better and not d.higher_is_better
    assert c.kind is d.kind is MetricKind.AUDIO_VISUAL
    assert c.assets == d.assets == (lse.SYNCNET_ASSET, lse.S3FD_ASSET)
    assert c.impl.partition(":")[0] == d.impl.partition(":")[0] == "bench.metrics.lse"


@pytest.mark.parametrize("shift", [-4, 0, 3, 15])
def test_sync_scores_find_the_offset_of_audio_shifted_against_video(shift):
    rng = np.random.default_rng(shift + 100)
    base = rng.standard_normal((80 + 40, 64)).astype(np.float32)
    video = base[20:100]
    audio = base[20 + shift : 100 + shift] + 0.05 * rng.standard_normal((80, 64)).astype(np.float32)  # a_i = v_(i+k)
    scores = lse.sync_scores(torch.from_numpy(video), torch.from_numpy(audio), vshift=15)

    expected = _reference_mean_distances(video.astype(np.float64), audio.astype(np.float64), 15)
    mean = expected.mean(axis=1)
    assert scores.av_offset == shift == 15 - int(np.argmin(mean))
    assert scores.distance == pytest.approx(mean.min(), rel=1e-5)
    assert scores.confidence == pytest.approx(np.median(mean) - mean.min(), rel=1e-5)
    np.testing.assert_allclose(scores.window_distances, expected[np.argmin(mean)], rtol=1e-5)
    assert scores.window_distances.mean() == pytest.approx(scores.distance, rel=1e-5)


def test_embeddings_and_scores_match_syncnet_instance_evaluate(tmp_path):
    """syncnet-python's SyncNetInstance.evaluate (the reference's scoring loop) on the same crops and audio,
    read from the files it expects (lossless PNG bytes under its .jpg names, 16-bit wav)."""
    torch.manual_seed(1)
    net = S().eval()
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (32, 224, 224, 3), dtype=np.uint8)
    pcm = (8000 * rng.standard_normal(32 * 640 + 300)).astype(np.int16)
    for index, crop in enumerate(crops, start=1):
        (tmp_path / f"{index:06d}.jpg").write_bytes(cv2.imencode(".png", crop)[1].tobytes())
    wavfile.write(tmp_path / "audio.wav", 16000, pcm)
    opt = types.SimpleNamespace(tmp_dir=str(tmp_path), batch_size=20, vshift=15)
    offset, confidence, distance = SyncNetInstance(net=net, device="cpu").evaluate(opt)

    video, audio = lse.syncnet_embeddings(net, crops, lse.mfcc(pcm), n_windows=32 - 5, device="cpu")
    scores = lse.sync_scores(video, audio)
    assert scores.av_offset == offset
    assert scores.distance == pytest.approx(distance, rel=1e-5)
    assert scores.confidence == pytest.approx(confidence, rel=1e-4, abs=1e-6)


def test_pcm16_gives_back_the_wav_samples(tmp_path):
    audio = _audio(tmp_path, 10)
    _, written = wavfile.read(audio.path)
    np.testing.assert_array_equal(lse.pcm16(audio.samples()), written)


def _face(frame, box, conf=0.99):
    return {"frame": frame, "bbox": list(box), "conf": conf}


def test_track_faces_interpolates_gaps_like_syncnet_python():
    """One drifting face with a 5-frame detection gap, against syncnet-python's own tracker (same rule for a
    single face; its default min_track is 50, set to the reference's 100)."""
    detections = [[_face(i, (100 + i, 80, 260 + i, 250))] if not 40 <= i < 45 else [] for i in range(150)]
    given = [list(faces) for faces in detections]
    tracks = lse.track_faces(detections)
    owner = types.SimpleNamespace(cfg=PipelineConfig(min_track=100), _iou=SyncNetPipeline._iou)
    expected = SyncNetPipeline._track(owner, [list(faces) for faces in detections])
    assert len(tracks) == len(expected) == 1
    np.testing.assert_array_equal(tracks[0]["frame"], np.arange(150))
    np.testing.assert_allclose(tracks[0]["bbox"], expected[0]["bbox"])
    np.testing.assert_allclose(tracks[0]["bbox"][42], [142, 80, 302, 250])
    assert detections == given  # the caller's lists are left as they were


def test_track_faces_applies_length_size_and_gap_rules():
    big, small, other = (100, 80, 260, 250), (10, 10, 90, 95), (300, 300, 420, 420)
    both = [[_face(i, big), _face(i, other)] for i in range(120)]
    assert len(lse.track_faces(both)) == 2
    assert len(lse.track_faces([[_face(i, big)] for i in range(101)])) == 1
    assert lse.track_faces([[_face(i, big)] for i in range(100)]) == []  # needs more than 100 detections
    assert lse.track_faces([[_face(i, small)] for i in range(150)]) == []  # mean size 85 px
    split = [[_face(i, big)] if not 70 <= i < 96 else [] for i in range(200)]  # 26-frame gap ends the track
    assert [len(t["frame"]) for t in lse.track_faces(split)] == [104]


def test_crop_track_cuts_the_reference_window():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (20, 200, 240, 3), dtype=np.uint8)
    box = np.array([60.0, 40.0, 170.0, 160.0])
    track = {"frame": np.arange(3, 18), "bbox": np.tile(box, (15, 1))}
    crops = lse.crop_track(frames, track)

    size = 60.0  # half of the larger side; centre (115, 100)
    pad = int(size * 1.8)
    padded = np.pad(frames[7], ((pad, pad), (pad, pad), (0, 0)), "constant", constant_values=(110, 110))
    y, x = 100 + pad, 115 + pad
    face = padded[int(y - size) : int(y + size * 1.8), int(x - size * 1.4) : int(x + size * 1.4)]
    np.testing.assert_array_equal(crops[4], cv2.resize(face, (224, 224))[..., ::-1])
    assert crops.shape == (15, 224, 224, 3) and crops.dtype == np.uint8


def test_s3fd_detections_come_from_the_loaded_detector_with_the_reference_settings(checkpoints):
    detector = lse.load_s3fd(checkpoints / "sfd_face.pth", "cpu")
    frames = np.random.default_rng(3).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    detections = lse.detect_faces(frames, detector)
    for index, faces in enumerate(detections):
        direct = detector.detect_faces(frames[index], conf_th=0.9, scales=[0.25])
        assert [f["bbox"] + [f["conf"]] for f in faces] == pytest.approx(direct.tolist())
        assert all(f["frame"] == index and f["conf"] > 0.9 for f in faces)


def test_lse_through_the_asset_path_with_created_checkpoints(catalogued_checkpoints, tmp_path, monkeypatch):
    """Catalog -> mirror -> sha256 check -> strict state-dict loading -> crops, MFCC, SyncNet, scores, equal to
    the steps run by hand on the track's frames and its slice of the wav; the second spec reuses the first one's
    computation. Tracks are shortened and detection fixed: random S3FD weights find no faces, and 100-frame
    tracks are slow on a CPU."""
    monkeypatch.setattr(lse, "MIN_TRACK", 20)
    box = (20, 20, 140, 140)
    fixed_faces = lambda frames, detector: [[_face(i, box)] if i >= 3 else [] for i in range(len(frames))]  # noqa: E731
    monkeypatch.setattr(lse, "detect_faces", fixed_faces)
    loads = []
    real_load = lse.load_syncnet
    monkeypatch.setattr(lse, "load_syncnet", lambda path, device: loads.append(path) or real_load(path, device))
    frames = np.random.default_rng(4).integers(0, 256, (33, 160, 160, 3), dtype=np.uint8)
    data = MetricInput(pred=frames, gt=None, audio=_audio(tmp_path, 33))

    confidence = pipeline.compute_metric(registry.metrics.get(LSE_C), data)
    distance = pipeline.compute_metric(registry.metrics.get(LSE_D), data)
    assert len(loads) == 1
    assert all(assets.locate(name) == "cache" for name in (lse.SYNCNET_ASSET, lse.S3FD_ASSET))

    net = real_load(catalogued_checkpoints / "syncnet_v2.model", "cpu")
    crops = lse.crop_track(frames, {"frame": np.arange(3, 33), "bbox": np.tile(np.array(box, float), (30, 1))})
    pcm = wavfile.read(data.audio.path)[1][3 * 640 : 33 * 640]
    expected = lse.sync_scores(*lse.syncnet_embeddings(net, crops, lse.mfcc(pcm), n_windows=25, device="cpu"))
    (track,) = distance.extras["tracks"]
    assert track == confidence.extras["tracks"][0]
    assert (track["first_frame"], track["frames"], track["windows"]) == (3, 30, 25)
    assert distance.aggregate == track["lse_d"] == pytest.approx(expected.distance, rel=1e-5)
    assert confidence.aggregate == track["lse_c"] == pytest.approx(expected.confidence, rel=1e-4, abs=1e-6)
    assert distance.extras["av_offset"] == track["av_offset"] == expected.av_offset
    for value in (confidence, distance):
        assert value.per_frame.shape == (33,)
        scored = np.arange(3 + 2, 3 + 2 + 25)  # window centres
        assert not np.isnan(value.per_frame[scored]).any() and np.isnan(np.delete(value.per_frame, scored)).all()
        assert np.mean(value.per_frame[scored]) == pytest.approx(value.aggregate, rel=1e-5, abs=1e-6)

    pipeline.compute_metric(registry.metrics.get(LSE_D), dataclasses.replace(data, pred=frames.copy()))
    assert len(loads) == 2  # another frames array: computed again


def test_short_clip_is_refused_before_any_model_runs(checkpoints, tmp_path):
    data = MetricInput(pred=np.zeros((100, 8, 8, 3), np.uint8), gt=None, audio=_audio(tmp_path, 100))
    with pytest.raises(BenchError, match=r"^clip too short: 100 frames < 101 \(") as caught:
        _metric(LSE_D, checkpoints).compute(data)
    assert "\n" not in str(caught.value)


def test_clip_without_a_face_track_is_refused_once_for_both_specs(checkpoints, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(lse, "detect_faces", lambda frames, detector: calls.append(1) or [[] for _ in frames])
    data = MetricInput(pred=np.zeros((110, 8, 8, 3), np.uint8), gt=None, audio=_audio(tmp_path, 110))
    for variant in (LSE_C, LSE_D):
        with pytest.raises(BenchError, match=r"^no face track to score: S3FD .* in 0 of 110 frames"):
            _metric(variant, checkpoints).compute(data)
    assert calls == [1]


def test_missing_weights_make_lse_unavailable_naming_the_asset(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    spec = registry.metrics.get(LSE_C)
    assert lse.SYNCNET_ASSET in pipeline.missing_requirement(spec)
    data = MetricInput(pred=np.zeros((120, 8, 8, 3), np.uint8), gt=None, audio=_audio(tmp_path, 120))
    with pytest.raises(assets.AssetUnavailable, match=lse.SYNCNET_ASSET) as caught:
        pipeline.compute_metric(spec, data)
    assert "\n" not in str(caught.value) and "robots.ox.ac.uk" in str(caught.value)
