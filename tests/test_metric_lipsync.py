"""Offline lip-sync metrics (``metrics/lipsync.py``): THEval's two scores against a plain re-statement of its
``Synchronization/`` code on a real clip, frames without a face, the GT row, the offset search, and the recommended
variant's separation of true from shifted audio on the mirror's real clips.

``MIRROR_CLIPS`` and ``clip_input`` are also what ``benchmarks/lipsync_separation.py`` runs every variant on.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path

import numpy as np
import pytest

from bench import assets, media, registry
from bench.contracts import AUDIO_RATE, SAMPLES_PER_FRAME, DrivingAudio, MetricInput
from bench.hashing import sha256_file
from bench.metrics import lipsync
from bench.pipeline import compute_metric

MIRROR_CLIPS = (
    "cnn2_25fps", "hdtf_WDA_KatieHill_000", "hdtf_WDA_AlexandriaOcasioCortez_000", "hdtf_RD_Radio34_000",
    "hdtf_RD_Radio2_000", "videoretalking_face1", "videoretalking_face2", "videoretalking_face3",
    "videoretalking_face4", "videoretalking_face5", "mimictalk_german_20s",
)  # fmt: skip
SHIFT_SECONDS = 1.0
RECOMMENDED = "lipsync@offset-conf-whisper"


def clip_input(name: str, seconds: float, folder: Path) -> tuple[np.ndarray, dict[str, DrivingAudio]]:
    """The first ``seconds`` of a mirror clip at 25 fps, and its 16 kHz audio as is ("true") and rolled by 1 s
    ("shifted"): beyond the ±15-frame offset search, so the shifted audio has no sync to find."""
    path = assets.fetch(name)
    frames = np.stack(list(itertools.islice(media.iter_video(path), int(seconds * 25))))
    samples = media.decode_audio(path)[: len(frames) * SAMPLES_PER_FRAME]
    audios = {}
    for label, audio in (("true", samples), ("shifted", np.roll(samples, int(SHIFT_SECONDS * AUDIO_RATE)))):
        wav = folder / f"{name}.{label}.wav"
        media.write_wav(wav, audio)
        audios[label] = DrivingAudio(id=label, path=wav, n_frames=len(frames), sha256=sha256_file(wav), has_ground_truth=False)
    return frames, audios


def _score(variant: str, frames: np.ndarray, audio: DrivingAudio | None = None, gt: np.ndarray | None = None):
    return compute_metric(registry.metrics.get(variant), MetricInput(pred=frames, gt=gt, audio=audio))


# THEval's Synchronization/ code, re-stated line by line on the same landmarks (no vectorisation, its own set logic).
# silero_vad.read_audio needs torchaudio, which bench does not install: the wav is read with librosa at 16 kHz, mono,
# as read_audio would return it.


def read_audio(path: str):
    import librosa
    import torch

    return torch.from_numpy(librosa.load(path, sr=16000, mono=True)[0])


def theval_lip_sync(points: list, width: int, height: int, wav_path: Path, fps: float = 25.0) -> float:
    import librosa
    from silero_vad import get_speech_timestamps, load_silero_vad

    openness, frame_times = [], []
    for i, landmarks in enumerate(points):
        if landmarks is not None:
            xs, ys = landmarks[:, 0] / width, landmarks[:, 1] / height
            upper = np.mean([ys[j] for j in [191, 80, 81, 82, 13, 312, 311, 310]])
            lower = np.mean([ys[j] for j in [95, 88, 178, 87, 14, 317, 402, 318]])
            eye_left = np.mean([xs[j] for j in [33, 133]])
            eye_right = np.mean([xs[j] for j in [362, 263]])
            interocular = abs(eye_right - eye_left)
            openness.append(abs(upper - lower) / interocular if interocular > 0 else np.nan)
        else:
            openness.append(np.nan)
        frame_times.append(i / fps)
    o, t = np.array(openness), np.array(frame_times)
    y, sr = librosa.load(str(wav_path), sr=None)
    rms = librosa.feature.rms(y=y, frame_length=int(sr * 0.05), hop_length=int(sr * 0.05))[0]
    v = np.interp(t, librosa.frames_to_time(range(len(rms)), sr=sr, hop_length=int(sr * 0.05)), rms)
    total = len(points)
    speech_frames = set()
    for seg in get_speech_timestamps(read_audio(str(wav_path)), load_silero_vad(), return_seconds=True):
        speech_frames.update(range(int(seg["start"] * fps), min(int(seg["end"] * fps) + 1, total)))
    mask = np.array([i in speech_frames for i in range(total)]) & ~np.isnan(o)
    if len(speech_frames) / total < 0.1 or np.sum(mask) < 2:
        return float("nan")
    o_s, v_s = o[mask], v[mask]
    o_n = (o_s - np.min(o_s)) / (np.max(o_s) - np.min(o_s) + 1e-8)
    v_n = (v_s - np.min(v_s)) / (np.max(v_s) - np.min(v_s) + 1e-8)
    return float(np.mean(np.abs(o_n - v_n)))


def theval_silent_mad(points: list, width: int, height: int, wav_path: Path, fps: float = 25.0) -> float:
    from silero_vad import get_speech_timestamps, load_silero_vad

    total = len(points)
    silence = set(range(total))
    for seg in get_speech_timestamps(read_audio(str(wav_path)), load_silero_vad(), return_seconds=True):
        for f in range(int(seg["start"] * fps), int(seg["end"] * fps) + 1):
            silence.discard(f)
    kept, start, count = set(), None, 0
    for f in sorted(silence):
        if start is None:
            start, count = f, 1
        elif f == start + count:
            count += 1
        else:
            if count >= 300 / 1000 * fps:
                kept.update(range(start, start + count))
            start, count = f, 1
    if start is not None and count >= 300 / 1000 * fps:
        kept.update(range(start, start + count))
    distances = []
    for f in sorted(kept):
        landmarks = points[f]
        if landmarks is None:
            continue
        xs, ys = landmarks[:, 0] / width * 256, landmarks[:, 1] / height * 256
        eye = np.linalg.norm(np.array([xs[33], ys[33]]) - np.array([xs[263], ys[263]]))
        if eye < 1e-3:
            continue
        pairs = zip([191, 80, 81, 82, 13, 312, 311, 310], [95, 88, 178, 87, 14, 317, 402, 318], strict=True)
        distances.append(np.mean([abs(ys[u] - ys[lo]) / eye for u, lo in pairs]))
    if len(distances) < 2:
        return float("nan")
    mean = float(np.mean(distances))
    return float(statistics.median([abs(x - mean) for x in distances]))


@pytest.fixture(scope="module")
def cnn_clip(tmp_path_factory):
    """The first 12 s of cnn (speech with pauses) and its audio, from the mirror."""
    import os

    from conftest import _unavailable

    mirror = Path(os.environ.get("BENCH_ASSET_MIRROR", "").split(os.pathsep)[0] or "/nonexistent")
    clip = mirror / "videos" / "cnn2_25fps.mp4"
    if not clip.is_file():
        _unavailable(f"{clip} is missing: CI runs with ../shared/assets")
    frames = np.stack(list(itertools.islice(media.iter_video(clip), 300)))
    wav = tmp_path_factory.mktemp("cnn") / "audio.wav"
    media.write_wav(wav, media.decode_audio(clip)[: len(frames) * SAMPLES_PER_FRAME])
    audio = DrivingAudio(id="cnn", path=wav, n_frames=len(frames), sha256=sha256_file(wav), has_ground_truth=True)
    return frames, audio


@pytest.mark.usefixtures("mirror")
def test_theval_scores_match_a_restatement_of_its_code(cnn_clip):
    from bench.datasets.preprocess.mediapipe_face import FaceMesh

    frames, audio = cnn_clip
    points = []
    with FaceMesh(assets.fetch(lipsync.MEDIAPIPE), video=True) as mesh:
        for index, frame in enumerate(frames):
            detection = mesh.detect(frame, index)
            points.append(None if detection is None else detection.points.astype(np.float64))
    height, width = frames.shape[1:3]
    sync = _score("lipsync@theval-sync", frames, audio)
    silent = _score("lipsync@theval-silent-mad", frames, audio)
    assert sync.aggregate == pytest.approx(theval_lip_sync(points, width, height, audio.path), abs=1e-6)
    assert silent.aggregate == pytest.approx(theval_silent_mad(points, width, height, audio.path), abs=1e-9)
    assert 0.1 < sync.aggregate < 0.4 and sync.extras["speech_ratio"] > 0.5 and silent.extras["silent_frames"] > 10


@pytest.mark.usefixtures("mirror")
def test_frames_without_a_face_are_counted_not_fatal(cnn_clip):
    frames, audio = cnn_clip
    holed = np.array(frames[:100])
    holed[10:15] = 0
    for variant in ("lipsync@theval-sync", "lipsync@offset-conf-rms", RECOMMENDED):
        value = _score(variant, holed, audio)
        assert value.extras["no_face_frames"] == 5 and np.isfinite(value.aggregate), variant
    blank = np.zeros((30, 64, 64, 3), np.uint8)
    value = _score("lipsync@offset-conf-rms", blank, audio)
    assert value.extras["no_face_frames"] == 30 and np.isnan(value.aggregate)
    assert np.isnan(_score("lipsync@mouth-corr-gt", blank, gt=blank).aggregate)


@pytest.mark.usefixtures("mirror")
def test_mouth_correlation_with_gt_and_its_lag(cnn_clip):
    frames, _ = cnn_clip
    gt = np.asarray(frames[:150])
    itself = _score("lipsync@mouth-corr-gt", gt, gt=gt)  # the GT row
    assert itself.aggregate == pytest.approx(1.0) and itself.extras["lag_frames"] == 0
    assert itself.extras["spread_ratio"] == pytest.approx(1.0)
    late = np.concatenate([gt[:3], gt[:-3]])  # the same mouth three frames late
    delayed = _score("lipsync@mouth-corr-gt", late, gt=gt)
    assert delayed.extras["lag_frames"] == 3 and delayed.extras["best_lag_correlation"] > 0.95
    assert delayed.aggregate < delayed.extras["best_lag_correlation"]


def test_offset_search_and_held_out_fit():
    rng = np.random.default_rng(0)
    audio = np.convolve(rng.standard_normal(300), np.ones(4) / 4, mode="same")
    mouth = lipsync.shifted(audio, 3) + 0.1 * rng.standard_normal(300)  # the video lags the audio by 3 frames
    mouth[50:55] = np.nan  # no face there
    offset, confidence = lipsync.offset_confidence(lipsync.offset_curve(mouth, audio))
    assert offset == 3 and confidence > 0.5
    late = lipsync.shifted(audio, 9) + 0.1 * rng.standard_normal(300)  # outside ±2 frames: no credit near 0
    assert lipsync.offset_confidence(lipsync.offset_curve(late, audio)) [1] < 0.3
    unrelated = rng.standard_normal((300, 8))
    assert abs(lipsync.held_out_correlation(mouth, unrelated)) < 0.25  # an in-sample fit would give R ≈ 0.2-0.3 > 0
    informative = np.column_stack([lipsync.shifted(audio, 3), unrelated])
    assert lipsync.held_out_correlation(mouth, informative) > 0.9
    assert np.isnan(lipsync.held_out_correlation(mouth[:10], informative[:10]))


@pytest.mark.usefixtures("mirror")
def test_recommended_variant_prefers_true_audio_on_every_mirror_clip(tmp_path):
    """Measured (benchmarks/lipsync_separation.py, first 20 s of each clip): offset-conf-whisper orders all 11
    clips correctly; offset-conf-rms 8, THEval's lip sync 6, its silent-lip MAD 4."""
    wrong = []
    for name in MIRROR_CLIPS:
        frames, audios = clip_input(name, 20.0, tmp_path)
        true, shifted = (_score(RECOMMENDED, frames, audios[k]).aggregate for k in ("true", "shifted"))
        if not true > shifted:
            wrong.append(f"{name}: {true:.3f} <= {shifted:.3f}")
    assert not wrong
