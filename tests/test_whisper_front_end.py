"""The Whisper tiny.en audio front end: frame alignment, 30 s windows and their seams, position debiasing, the
feature cache (the engine's audio slot trains on them in test_synctalk_adapter)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import media
from bench.methods.engine import whisper


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def cnn_speech() -> np.ndarray:
    """The first 45 s of the cnn subject's speech, 16 kHz mono (from the mirror)."""
    import os
    from pathlib import Path

    from conftest import _unavailable

    mirror = Path(os.environ.get("BENCH_ASSET_MIRROR", "").split(os.pathsep)[0] or "/nonexistent")
    clip = mirror / "videos" / "cnn2_25fps.mp4"
    if not clip.is_file():
        _unavailable(f"{clip} is missing: CI runs with ../shared/assets")
    return media.decode_audio(clip)[: 45 * 16000]


def test_frame_i_takes_features_2i_and_2i_plus_1():
    features = np.arange(7 * 384, dtype=np.float32).reshape(7, 384)  # 3.5 video frames of features
    inputs = whisper.frame_features(features, 5)
    assert inputs.shape == (5, 384, 2)
    np.testing.assert_array_equal(inputs[1, :, 0], features[2])
    np.testing.assert_array_equal(inputs[1, :, 1], features[3])
    np.testing.assert_array_equal(inputs[4], inputs[2])  # frames past the audio repeat its last whole frame
    with pytest.raises(Exception, match="shorter than one video frame"):
        whisper.frame_features(features[:1], 3)


def test_each_feature_comes_from_the_window_where_it_is_furthest_from_an_edge():
    assert whisper.window_starts(1500) == [0] and whisper.window_starts(900) == [0]
    starts = whisper.window_starts(3560)  # cnn: 71.2 s
    assert starts == [0, 1000, 2000, 3000]
    owner = whisper.owner_of(np.arange(3560), starts)
    assert (np.diff(owner) >= 0).all() and owner[0] == 0 and owner[-1] == 3
    # seams in the middle of each 500-feature overlap: features keep >= 5 s of context on both sides
    assert list(np.flatnonzero(np.diff(owner)) + 1) == [1250, 2250, 3250]
    offsets = np.arange(3560) - np.asarray(starts)[owner]
    assert offsets.min() >= 0 and offsets.max() < whisper.FEATURES_PER_WINDOW


def test_log_mel_is_whispers():
    """Whisper's log-mel of a tone: 100 frames per second, 80 bands, peak in the tone's band, the 8-decade floor."""
    t = np.arange(16000) / 16000
    mel = whisper.log_mel(0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32))
    assert mel.shape == (80, (16000 + 480000) // 160)
    assert mel.max() - mel.min() == pytest.approx(2.0, abs=1e-5)  # floor at max - 8 decades, scaled by 1/4
    band = mel[:, 10:90].mean(axis=1).argmax()
    centres = whisper._mel_filters().argmax(axis=1) * 16000 / 400
    assert abs(centres[band] - 440) < 80


@pytest.mark.usefixtures("mirror")
def test_seams_and_positions_do_not_change_the_features(cnn_speech):
    """Features of the same speech agree whether it sits at a window's start or middle, and across a seam."""
    full = whisper.encode(cnn_speech)  # 45 s: two windows, seam at feature 1250 (25 s)
    assert full.shape == (2250, 384)
    centred = whisper.encode(cnn_speech[(1250 - 750) * 320 : (1250 + 750) * 320])  # one window centred on the seam
    assert _cosine(full[1230:1270], centred[730:770]).mean() > 0.85  # measured 0.95
    later = whisper.encode(cnn_speech[10 * 16000 : 40 * 16000])  # the same speech 500 features earlier in its window
    assert _cosine(full[600:1200], later[100:700]).mean() > 0.85  # measured 0.93; 0.47 without the silence debiasing


@pytest.mark.usefixtures("mirror")
def test_features_are_cached_per_audio_content(cnn_speech, monkeypatch):
    calls = []
    real_encode = whisper.encode
    monkeypatch.setattr(whisper, "encode", lambda samples: calls.append(len(samples)) or real_encode(samples))
    clip = cnn_speech[: 3 * 16000]
    first = whisper.frame_inputs(clip, 75)
    again = whisper.frame_inputs(clip.copy(), 75)
    other = whisper.frame_inputs(clip[::-1].copy(), 75)
    assert len(calls) == 2 and np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.shape == (75, 384, 2)

