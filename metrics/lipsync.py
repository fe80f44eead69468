"""Lip-sync measures that need no unobtainable weights: MediaPipe mouth opening against the audio.

Every variant reads one mouth-opening series per clip from bench's MediaPipe FaceLandmarker (478 points, VIDEO
mode, the asset ``mediapipe_face_landmarker``); a frame with no face is NaN there, counted in
``extras["no_face_frames"]`` and left out of every sum, never a crash. ``bench score pred.mp4 --audio speech.wav
--metrics lipsync`` runs all of them that apply (no GT needed but for ``mouth-corr-gt``).

THEval (``../shared/upstream/THEval/Synchronization``, CVPR 2026 Findings), computed as its code does:

- ``lipsync@theval-sync`` (``lip_sync.py``, lower is better): per frame, mouth openness = |mean y of the inner upper
  lip (191 80 81 82 13 312 311 310) − mean y of the inner lower lip (95 88 178 87 14 317 402 318)| over
  |mean x of the right eye corners (362 263) − mean x of the left (33 133)|, in coordinates normalised by the frame's
  width and height; loudness = librosa RMS in 50 ms windows and hops, linearly interpolated at the frame times;
  speech frames = Silero VAD segments, int(start·fps) … int(end·fps) inclusive. Over speech frames with a face, both
  series are min-max normalised and the score is the mean absolute difference. NaN when speech covers under 10 % of
  the clip.
- ``lipsync@theval-silent-mad`` (``silent_lip_stability.py``, lower is better): frames outside every VAD segment, in
  runs of at least 0.3 s; per frame, the mean over the 8 inner-lip pairs of |Δy| over the distance between points 33
  and 263, on the frame resized to 256² (so both axes count 256 units); the score is the median absolute deviation
  from the mean. NaN with under two such frames.
  Difference: THEval runs MediaPipe's legacy FaceMesh on the 256² resize; bench detects once per frame at the
  frame's own size (the landmark model sees a 256² face crop either way) and rescales the points.

Bench's own measures:

- ``lipsync@offset-conf-rms`` / ``lipsync@offset-conf-whisper`` (higher is better), in the spirit of LSE-C: for
  each audio offset k in −15…+15 frames (positive: the video lags the audio) a correlation of the mouth-opening
  series with an audio description of the same frames; the score is the best value within ±2 frames of 0 (real
  footage has its own small audio/video skew; a generated clip should be in sync at 0) minus the median over all
  offsets. ``extras``: the offset of the curve's peak and the curve. The RMS variant uses the Pearson correlation
  with the 50 ms loudness. The Whisper variant (recommended) uses the held-out correlation of a ridge fit of the
  mouth series on the top 8 principal components of the clip's Whisper tiny.en encoder features
  (``engine.whisper``, the frame's two averaged), predicted block by block (5 contiguous folds): a pretrained
  speech representation that tells an open vowel from a closed consonant at equal loudness, and a fit that scores
  about 0 on unrelated audio however many components it uses. (An in-sample fit, or the peak over all offsets
  instead of near 0, ordered 7-8 of the 11 clips below.)
- ``lipsync@mouth-corr-gt`` (higher is better, needs GT): the Pearson correlation of the prediction's
  mouth-opening series with the GT's, frame by frame (``extras``: the lag of the maximum cross-correlation within
  ±5 frames and its value, and the spread ratio std(pred) / std(GT): a mouth that moves in time but too little). It says directly whether the mouth moves with the speech; the GT row is 1.

How often each variant prefers a clip's own audio over the same audio rolled by 1 s, on the mirror's 11 real clips
(the first 20 s of cnn and MimicTalk's German clip, the whole 5-8 s of the four HDTF and five VideoReTalking clips;
``benchmarks/lipsync_separation.py``, this 2-core CPU). Scores are true / shifted; for the offset variants the
offset of the true audio's peak follows (short clips put it far off 0: their curves are noisy).

======================================  =============  ================  ====================  =====================
clip (frames)                           theval-sync ↓  theval-silent ↓   offset-conf-rms ↑     offset-conf-whisper ↑
======================================  =============  ================  ====================  =====================
cnn2_25fps (500)                        0.194 / 0.285  0.007 / 0.029     0.363 / -0.016 (+0)   0.450 / 0.078 (+0)
hdtf_WDA_KatieHill_000 (200)            0.251 / 0.305  0.016 / 0.017     -0.001 / -0.060 (-10) 0.207 / 0.155 (-8)
hdtf_WDA_AlexandriaOcasioCortez (200)   0.210 / 0.299  0.004 / 0.020     0.217 / -0.044 (+2)   0.280 / 0.071 (-3)
hdtf_RD_Radio34_000 (200)               0.280 / 0.272  0.013 / 0.009     0.000 / -0.136 (+8)   0.042 / -0.107 (-7)
hdtf_RD_Radio2_000 (200)                0.297 / 0.287  nan / nan         0.055 / 0.065 (-8)    0.139 / -0.082 (-6)
videoretalking_face1 (154)              0.331 / 0.320  0.010 / 0.040     0.101 / 0.071 (+3)    0.265 / -0.038 (-7)
videoretalking_face2 (125)              0.281 / 0.329  nan / 0.013       0.122 / -0.086 (-15)  0.134 / 0.000 (-14)
videoretalking_face3 (125)              0.296 / 0.206  nan / nan         0.167 / 0.113 (+5)    0.348 / 0.245 (-1)
videoretalking_face4 (166)              0.256 / 0.254  nan / nan         -0.089 / 0.119 (-15)  0.473 / 0.109 (+1)
videoretalking_face5 (122)              0.254 / 0.293  0.033 / 0.014     0.059 / 0.071 (-7)    0.312 / -0.015 (+5)
mimictalk_german_20s (500)              0.157 / 0.183  0.005 / nan       0.144 / 0.038 (-1)    0.373 / 0.035 (-1)
**true beats shifted**                  **6 / 11**     **4 / 11**        **8 / 11**            **11 / 11**
======================================  =============  ================  ====================  =====================

THEval's silent-lip MAD is NaN where the clip has no pause of 0.3 s; it measures stillness in silence, not sync, and
is reported for comparability. ``tests/test_metric_lipsync.py`` holds the Whisper variant to 11 of 11.
"""

from __future__ import annotations

import abc
import weakref
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import AUDIO_RATE, BenchError, Metric, MetricInput, MetricKind, MetricSpec, MetricValue

LIPS_UPPER = (191, 80, 81, 82, 13, 312, 311, 310)
LIPS_LOWER = (95, 88, 178, 87, 14, 317, 402, 318)
EYE_CORNERS_LEFT = (33, 133)
EYE_CORNERS_RIGHT = (362, 263)
SILENT_EYES = (33, 263)
SILENT_SIDE = 256  # THEval resizes frames to 256² for the silent-lip measure
MIN_SILENCE_SECONDS = 0.3
MIN_SPEECH_RATIO = 0.1
RMS_SECONDS = 0.05
MAX_OFFSET = 15  # frames, as SyncNet's vshift
MAX_GT_LAG = 5
WHISPER_COMPONENTS = 8
CV_FOLDS = 5
RIDGE = 1.0
SYNC_TOLERANCE = 2  # frames either side of 0 that count as in sync (real footage's own audio/video skew)

MEDIAPIPE = "mediapipe_face_landmarker"
SILERO = "silero_vad_jit"
WHISPER_ASSETS = (
    "whisper_tiny_en_ct2_config_json", "whisper_tiny_en_ct2_model_bin", "whisper_tiny_en_ct2_tokenizer_json",
    "whisper_tiny_en_ct2_vocabulary_txt",
)  # fmt: skip

SPECS = (
    MetricSpec(
        id="lipsync",
        variant="lipsync@theval-sync",
        impl="bench.metrics.lipsync:THEvalSync",
        higher_is_better=False,
        kind=MetricKind.AUDIO_VISUAL,
        description="THEval lip sync: mean |min-max mouth openness − min-max RMS loudness| over Silero-VAD speech "
        "frames (MediaPipe inner lips / interocular)",
        assets=(MEDIAPIPE, SILERO),
        requires=("mediapipe", "librosa", "silero_vad"),
    ),
    MetricSpec(
        id="lipsync",
        variant="lipsync@theval-silent-mad",
        impl="bench.metrics.lipsync:THEvalSilentMAD",
        higher_is_better=False,
        kind=MetricKind.AUDIO_VISUAL,
        description="THEval silent-lip stability: median absolute deviation of the inner-lip gap / interocular over "
        "silent runs of at least 0.3 s (Silero VAD)",
        assets=(MEDIAPIPE, SILERO),
        requires=("mediapipe", "silero_vad"),
    ),
    MetricSpec(
        id="lipsync",
        variant="lipsync@offset-conf-rms",
        impl="bench.metrics.lipsync:OffsetConfidenceRMS",
        higher_is_better=True,
        kind=MetricKind.AUDIO_VISUAL,
        description="mouth opening vs 50 ms RMS loudness over offsets ±15 frames: peak correlation minus median "
        "(offset of the peak in extras)",
        assets=(MEDIAPIPE,),
        requires=("mediapipe", "librosa"),
    ),
    MetricSpec(
        id="lipsync",
        variant="lipsync@offset-conf-whisper",
        impl="bench.metrics.lipsync:OffsetConfidenceWhisper",
        higher_is_better=True,
        kind=MetricKind.AUDIO_VISUAL,
        description=f"mouth opening vs Whisper tiny.en features (multiple correlation on {WHISPER_COMPONENTS} "
        "principal components) over offsets ±15 frames: peak minus median (offset of the peak in extras)",
        assets=(MEDIAPIPE, *WHISPER_ASSETS),
        requires=("mediapipe", "ctranslate2"),
    ),
    MetricSpec(
        id="lipsync",
        variant="lipsync@mouth-corr-gt",
        impl="bench.metrics.lipsync:MouthCorrelationGT",
        higher_is_better=True,
        kind=MetricKind.FULL_REFERENCE,
        description="Pearson correlation of the mouth-opening series with the GT's (lag of the best "
        "cross-correlation within ±5 frames in extras)",
        assets=(MEDIAPIPE,),
        requires=("mediapipe",),
        ground_truth_row=True,
    ),
)


# ---------------------------------------------------------------------------------------------------
# Mouth opening per frame


@dataclass
class MouthSeries:
    """Per-frame mouth measures of one clip (NaN where no face was found)."""

    openness: np.ndarray  # THEval lip_sync.py: inner-lip gap / eye-corner x distance, normalised coordinates
    silent_openness: np.ndarray  # THEval silent_lip_stability.py: mean inner-lip pair gap / |p33 − p263| at 256²

    @property
    def no_face_frames(self) -> int:
        return int(np.isnan(self.openness).sum())


def openness_of(points: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """(THEval sync openness, THEval silent openness) of one face's (478, ≥2) pixel points."""
    normalised = points[:, :2] / np.array([width, height], dtype=np.float64)
    upper = normalised[list(LIPS_UPPER), 1]
    lower = normalised[list(LIPS_LOWER), 1]
    interocular = abs(normalised[list(EYE_CORNERS_RIGHT), 0].mean() - normalised[list(EYE_CORNERS_LEFT), 0].mean())
    sync = abs(upper.mean() - lower.mean()) / interocular if interocular > 0 else np.nan
    at_256 = normalised * SILENT_SIDE
    eyes = np.linalg.norm(at_256[SILENT_EYES[0]] - at_256[SILENT_EYES[1]])
    silent = float(np.mean(np.abs(upper - lower) * SILENT_SIDE / eyes)) if eyes >= 1e-3 else np.nan
    return float(sync), silent


def measure_mouth(frames: np.ndarray, task_path: Path) -> MouthSeries:
    """One MediaPipe pass (VIDEO mode) over uint8 RGB frames."""
    from tqdm import tqdm

    from bench.datasets.preprocess.mediapipe_face import FaceMesh

    values = np.full((len(frames), 2), np.nan)
    height, width = frames.shape[1:3]
    with FaceMesh(task_path, video=True) as mesh:
        for index in tqdm(range(len(frames)), desc="mouth opening", unit="frame", leave=False, mininterval=2):
            detection = mesh.detect(np.asarray(frames[index]), index)
            if detection is not None:
                values[index] = openness_of(detection.points, width, height)
    return MouthSeries(openness=values[:, 0], silent_openness=values[:, 1])


@dataclass
class _Remembered:
    """Mouth series of the last frames arrays measured in this process (by identity): the variants share them."""

    entries: list[tuple[weakref.ref, str, MouthSeries]] = field(default_factory=list)

    def get(self, frames: np.ndarray, task_path: Path) -> MouthSeries:
        for ref, path, series in self.entries:
            if ref() is frames and path == str(task_path):
                return series
        series = measure_mouth(frames, task_path)
        self.entries = [*[e for e in self.entries if e[0]() is not None][-1:], (weakref.ref(frames), str(task_path), series)]
        return series


_remembered = _Remembered()


def mouth_series(frames: np.ndarray, task_path: Path) -> MouthSeries:
    return _remembered.get(frames, task_path)


# ---------------------------------------------------------------------------------------------------
# Audio per frame


@cache
def _silero(model_path: str):
    """The Silero VAD model, loaded once per process (THEval's two scores both need it)."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript loading; the model ships only as TorchScript/ONNX
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(model_path, map_location="cpu").eval()


def speech_segments(samples: np.ndarray, model_path: Path) -> list[tuple[float, float]]:
    """Silero VAD speech segments (seconds) of 16 kHz mono samples, with the package's default thresholds."""
    import torch
    from silero_vad import get_speech_timestamps

    wav = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    stamps = get_speech_timestamps(wav, _silero(str(model_path)), sampling_rate=AUDIO_RATE, return_seconds=True)
    return [(float(s["start"]), float(s["end"])) for s in stamps]


def speech_mask(segments: list[tuple[float, float]], n_frames: int, fps: float) -> np.ndarray:
    """Frames inside a speech segment: int(start·fps) … int(end·fps), inclusive (THEval's lip_sync.py)."""
    mask = np.zeros(n_frames, dtype=bool)
    for start, end in segments:
        mask[int(start * fps) : min(int(end * fps) + 1, n_frames)] = True
    return mask


def silence_mask(segments: list[tuple[float, float]], n_frames: int, fps: float) -> np.ndarray:
    """Frames outside every speech segment, kept only in runs of at least 0.3 s (THEval's silent_lip_stability.py)."""
    silent = ~speech_mask(segments, n_frames, fps)
    minimum = MIN_SILENCE_SECONDS * fps
    kept = np.zeros_like(silent)
    start = None
    for index in range(n_frames + 1):
        if index < n_frames and silent[index]:
            start = index if start is None else start
        elif start is not None:
            if index - start >= minimum:
                kept[start:index] = True
            start = None
    return kept


def loudness(samples: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """RMS in 50 ms windows and hops (librosa, centred), interpolated at the frame times i / fps."""
    import librosa

    hop = int(AUDIO_RATE * RMS_SECONDS)
    rms = librosa.feature.rms(y=np.asarray(samples, dtype=np.float32), frame_length=hop, hop_length=hop)[0]
    times = librosa.frames_to_time(np.arange(len(rms)), sr=AUDIO_RATE, hop_length=hop)
    return np.interp(np.arange(n_frames) / fps, times, rms)


def whisper_components(samples: np.ndarray, n_frames: int, components: int = WHISPER_COMPONENTS) -> np.ndarray:
    """(n_frames, components) top principal components of the clip's Whisper features (two per frame averaged)."""
    from bench.methods.engine import whisper

    per_frame = whisper.frame_inputs(samples, n_frames).mean(axis=2).astype(np.float64)  # (n, 384)
    centred = per_frame - per_frame.mean(axis=0)
    _, _, basis = np.linalg.svd(centred, full_matrices=False)
    return centred @ basis[:components].T


# ---------------------------------------------------------------------------------------------------
# Scores


def _rounded(value: float) -> float | None:
    """A value for ``extras`` (stored and printed as JSON): rounded, None where it is not finite."""
    return round(float(value), 4) if np.isfinite(value) else None


def _min_max(values: np.ndarray) -> np.ndarray:
    return (values - values.min()) / (values.max() - values.min() + 1e-8)


def theval_sync(openness: np.ndarray, volume: np.ndarray, speech: np.ndarray) -> float:
    """THEval's lip-sync mean difference (NaN when speech covers under 10 % of frames or under two are usable)."""
    mask = speech & ~np.isnan(openness)
    if speech.mean() < MIN_SPEECH_RATIO or mask.sum() < 2:
        return float("nan")
    return float(np.mean(np.abs(_min_max(openness[mask]) - _min_max(volume[mask]))))


def silent_mad(silent_openness: np.ndarray, silence: np.ndarray) -> float:
    """THEval's silent-lip MAD: median |x − mean| over silent frames with a face (NaN with fewer than two)."""
    values = silent_openness[silence & ~np.isnan(silent_openness)]
    if len(values) < 2:
        return float("nan")
    return float(np.median(np.abs(values - values.mean())))


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation over frames where both are finite (NaN with fewer than 3 or a constant series)."""
    valid = np.isfinite(a) & np.isfinite(b)
    if valid.sum() < 3 or np.std(a[valid]) == 0 or np.std(b[valid]) == 0:
        return float("nan")
    return float(np.corrcoef(a[valid], b[valid])[0, 1])


def held_out_correlation(target: np.ndarray, regressors: np.ndarray, folds: int = CV_FOLDS, ridge: float = RIDGE) -> float:
    """Correlation of ``target`` with its out-of-fold ridge prediction from ``regressors``: ``folds`` contiguous
    blocks of the frames where both are finite, each predicted by a fit on the others (standardised regressors,
    penalty ``ridge`` × training frames). Unlike an in-sample fit, a regressor set unrelated to the target scores
    about 0 however many columns it has. NaN with fewer than 20 usable frames."""
    valid = np.flatnonzero(np.isfinite(target) & np.isfinite(regressors).all(axis=1))
    if len(valid) < 20:
        return float("nan")
    predicted = np.full(len(target), np.nan)
    for block in np.array_split(valid, folds):
        train = np.setdiff1d(valid, block)
        mean, scale = regressors[train].mean(axis=0), regressors[train].std(axis=0) + 1e-8
        design = (regressors[train] - mean) / scale
        offset = target[train].mean()
        weights = np.linalg.solve(design.T @ design + ridge * len(train) * np.eye(design.shape[1]),
                                  design.T @ (target[train] - offset))
        predicted[block] = ((regressors[block] - mean) / scale) @ weights + offset
    return pearson(predicted, target)


def shifted(values: np.ndarray, offset: int) -> np.ndarray:
    """``values`` delayed by ``offset`` frames (advanced when negative), NaN where nothing shifts in."""
    out = np.full(values.shape, np.nan)
    if offset >= 0:
        out[offset:] = values[: len(values) - offset]
    else:
        out[:offset] = values[-offset:]
    return out


def offset_curve(mouth: np.ndarray, audio: np.ndarray, correlate=pearson, max_offset: int = MAX_OFFSET) -> np.ndarray:
    """Correlation of the mouth at frame t with the audio at t − k, for k = −max_offset … +max_offset."""
    return np.array([correlate(mouth, shifted(audio, k)) for k in range(-max_offset, max_offset + 1)])


def offset_confidence(curve: np.ndarray) -> tuple[int, float]:
    """(offset of the curve's peak in frames, the highest value within ±SYNC_TOLERANCE frames of 0 minus the median
    over all offsets); (0, NaN) if the curve has no finite value."""
    if not np.isfinite(curve).any():
        return 0, float("nan")
    centre = (len(curve) - 1) // 2
    near_zero = curve[centre - SYNC_TOLERANCE : centre + SYNC_TOLERANCE + 1]
    if not np.isfinite(near_zero).any():
        return int(np.nanargmax(curve)) - centre, float("nan")
    return int(np.nanargmax(curve)) - centre, float(np.nanmax(near_zero) - np.nanmedian(curve))


def lagged_correlation(pred: np.ndarray, gt: np.ndarray, max_lag: int = MAX_GT_LAG) -> tuple[float, int, float]:
    """(correlation at lag 0, lag of the maximum within ±max_lag, its value); positive lag: the prediction is late."""
    curve = np.array([pearson(shifted(pred, -lag), gt) for lag in range(-max_lag, max_lag + 1)])
    if not np.isfinite(curve).any():
        return float("nan"), 0, float("nan")
    best = int(np.nanargmax(curve))
    return curve[max_lag], best - max_lag, float(curve[best])


# ---------------------------------------------------------------------------------------------------
# The variants


class _MouthMetric(Metric):
    """A clip-level lip-sync measure on the prediction's mouth series."""

    def compute(self, data: MetricInput) -> MetricValue:
        if len(data.pred) < 3:
            raise BenchError(f"{self.spec.variant} needs at least 3 frames, got {len(data.pred)}")
        mouth = mouth_series(data.pred, self.assets[MEDIAPIPE])
        value, extras = self.score(mouth, data)
        return MetricValue(aggregate=value, extras={"frames": len(data.pred), "no_face_frames": mouth.no_face_frames, **extras})

    def samples(self, data: MetricInput, n_frames: int) -> np.ndarray:
        """The driving audio, cut or zero-padded to the frames' duration."""
        samples = data.audio.samples()
        length = int(round(n_frames * AUDIO_RATE / data.fps))
        return np.pad(samples[:length], (0, max(0, length - len(samples))))

    @abc.abstractmethod
    def score(self, mouth: MouthSeries, data: MetricInput) -> tuple[float, dict[str, Any]]: ...


class THEvalSync(_MouthMetric):
    def score(self, mouth: MouthSeries, data: MetricInput) -> tuple[float, dict[str, Any]]:
        n = len(mouth.openness)
        samples = self.samples(data, n)
        speech = speech_mask(speech_segments(samples, self.assets[SILERO]), n, data.fps)
        value = theval_sync(mouth.openness, loudness(samples, n, data.fps), speech)
        return value, {"speech_frames": int(speech.sum()), "speech_ratio": _rounded(speech.mean())}


class THEvalSilentMAD(_MouthMetric):
    def score(self, mouth: MouthSeries, data: MetricInput) -> tuple[float, dict[str, Any]]:
        n = len(mouth.openness)
        silence = silence_mask(speech_segments(self.samples(data, n), self.assets[SILERO]), n, data.fps)
        return silent_mad(mouth.silent_openness, silence), {"silent_frames": int(silence.sum())}


class _OffsetConfidence(_MouthMetric):
    def score(self, mouth: MouthSeries, data: MetricInput) -> tuple[float, dict[str, Any]]:
        curve = self.curve(mouth.openness, self.samples(data, len(mouth.openness)), data.fps)
        offset, confidence = offset_confidence(curve)
        return confidence, {"offset_frames": offset, "curve": [_rounded(c) for c in curve]}

    @abc.abstractmethod
    def curve(self, openness: np.ndarray, samples: np.ndarray, fps: float) -> np.ndarray: ...


class OffsetConfidenceRMS(_OffsetConfidence):
    def curve(self, openness: np.ndarray, samples: np.ndarray, fps: float) -> np.ndarray:
        return offset_curve(openness, loudness(samples, len(openness), fps))


class OffsetConfidenceWhisper(_OffsetConfidence):
    def curve(self, openness: np.ndarray, samples: np.ndarray, fps: float) -> np.ndarray:
        if fps != 25:
            raise BenchError(f"{self.spec.variant} needs 25 fps frames (Whisper features come two per 40 ms), got {fps}")
        return offset_curve(openness, whisper_components(samples, len(openness)), held_out_correlation)


class MouthCorrelationGT(Metric):
    def compute(self, data: MetricInput) -> MetricValue:
        task = self.assets[MEDIAPIPE]
        pred = mouth_series(data.pred, task).openness
        gt = mouth_series(data.gt, task).openness
        at_zero, lag, best = lagged_correlation(pred, gt)
        both = np.isfinite(pred) & np.isfinite(gt)
        spread = float(np.std(pred[both]) / np.std(gt[both])) if both.sum() > 2 and np.std(gt[both]) > 0 else float("nan")
        extras = {"lag_frames": lag, "best_lag_correlation": _rounded(best), "spread_ratio": _rounded(spread),
                  "no_face_frames": int(np.isnan(pred).sum()),
                  "no_face_frames_gt": int(np.isnan(gt).sum()), "frames": len(pred)}
        return MetricValue(aggregate=at_zero, extras=extras)
