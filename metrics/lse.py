"""LSE-C and LSE-D: SyncNet lip-sync confidence and distance, as Wav2Lip's ``evaluation/scores_LSE`` computes
them on joonson/syncnet_python (``run_pipeline.py`` then ``calculate_scores_real_videos.py``), run in process
with syncnet-python's model classes (``SyncNetModel.S``, ``detectors.s3fd``, ``SyncNetInstance.calc_pdist``).

1. S3FD face detection on every frame (RGB, detection at scale 0.25, confidence 0.9; ``sfd_face.pth``).
2. IoU tracking as ``track_shot``: IoU > 0.5 with the track's last face, gaps up to 25 frames; a track needs more
   than 100 detections (4 s) and a mean face size above 100 px; its boxes are linearly interpolated over gaps.
3. Crops as ``crop_video``: box half-size and centre median-filtered (kernel 13), the frame padded with grey 110,
   rows [cy - s, cy + 1.8 s], columns [cx - 1.4 s, cx + 1.4 s] (bbox scale 0.4), resized to 224x224, BGR
   (the reference reads its frames with cv2).
4. The track's audio (16-bit PCM, 16 kHz), 13-d MFCC with python_speech_features' defaults (25 ms / 10 ms):
   4 MFCC steps per video frame.
5. ``syncnet_v2.model`` embeddings of 5-frame windows and of 20-step MFCC windows, in batches of 20, for the
   first ``min(frames, samples // 640) - 5`` windows (the reference's count); distances for audio offsets
   -15..+15 frames (zero-padded), averaged over windows. LSE-D = the smallest mean distance, LSE-C = median
   minus smallest, AV offset = 15 - argmin (positive: the video lags the audio).

A clip's score is the mean over its face tracks (the reference prints one "dist conf" line per track; generated
talking heads have one). Two specs share one computation: the result for the same frames array, audio and
weights is kept in the process, so the second spec does not run S3FD and SyncNet again.

Deliberate differences from the scripts: no ffmpeg. Frames arrive decoded at 25 fps and audio at 16 kHz mono, so
the reference's re-encode to 25 fps (MPEG-4 q 2), JPEG frame dump, XVID crop video and second JPEG dump are not
reproduced: those lossy steps shift scores slightly. No PySceneDetect split either: the clip is one scene
(generated clips are single shots); as in the reference, a scene of at most 100 frames yields no track, so such
clips are refused with a one-line error.
"""

from __future__ import annotations

import abc
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.contracts import (
    AUDIO_RATE,
    SAMPLES_PER_FRAME,
    BenchError,
    Metric,
    MetricInput,
    MetricKind,
    MetricSpec,
    MetricValue,
)

if TYPE_CHECKING:
    import torch

SYNCNET_ASSET = "syncnet_v2_model"
S3FD_ASSET = "syncnet_sfd_face"
_REQUIRES = ("syncnet_python", "python_speech_features", "cv2", "scipy")
_PIPELINE = "Wav2Lip scores_LSE on syncnet_python: S3FD tracks > 100 frames, 224 crops, MFCC, SyncNet v2, offsets ±15"

SPECS = (
    MetricSpec(
        id="lse_c",
        variant="lse_c@syncnet-v2-vshift15",
        impl="bench.metrics.lse:LSEConfidence",
        higher_is_better=True,
        kind=MetricKind.AUDIO_VISUAL,
        description=f"LSE-C: median minus minimum of the mean SyncNet distance over offsets ({_PIPELINE})",
        assets=(SYNCNET_ASSET, S3FD_ASSET),
        requires=_REQUIRES,
    ),
    MetricSpec(
        id="lse_d",
        variant="lse_d@syncnet-v2-vshift15",
        impl="bench.metrics.lse:LSEDistance",
        higher_is_better=False,
        kind=MetricKind.AUDIO_VISUAL,
        description=f"LSE-D: minimum over offsets of the mean SyncNet distance ({_PIPELINE})",
        assets=(SYNCNET_ASSET, S3FD_ASSET),
        requires=_REQUIRES,
    ),
)

# run_pipeline.py defaults
FACEDET_SCALE = 0.25
DETECTION_CONFIDENCE = 0.9
IOU_THRESHOLD = 0.5
NUM_FAILED_DET = 25
MIN_TRACK = 100  # a track needs more than this many detections
MIN_FACE_SIZE = 100  # px, mean of the larger box side over the track
CROP_SCALE = 0.4
CROP_SIZE = 224
SMOOTHING_KERNEL = 13
PAD_VALUE = 110
# SyncNetInstance / calculate_scores_real_videos.py defaults
VSHIFT = 15
BATCH_SIZE = 20
WINDOW_FRAMES = 5
MFCC_STEPS_PER_FRAME = 4


@dataclass(frozen=True)
class SyncScores:
    """SyncNet's verdict on one face track."""

    av_offset: int
    distance: float  # LSE-D: the smallest mean distance over offsets
    median_distance: float  # median of the mean distances over offsets
    window_distances: np.ndarray  # per 5-frame window, the distance at the chosen offset

    @property
    def confidence(self) -> float:
        """LSE-C."""
        return self.median_distance - self.distance


@dataclass(frozen=True)
class TrackScores:
    """One face track: where it starts, how many frames it spans, what SyncNet made of it."""

    first_frame: int
    n_frames: int
    scores: SyncScores


@dataclass(frozen=True)
class ClipScores:
    """Every scored face track of a clip of ``n_frames`` frames."""

    n_frames: int
    tracks: list[TrackScores]


# ---------------------------------------------------------------------------------------------------
# The steps, each testable on its own


def sync_scores(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> SyncScores:
    """Offset, LSE-D and LSE-C from per-window embeddings (windows, dims) of the lip and audio towers.

    Audio window ``i + k`` is compared with video window ``i`` for k in -vshift..vshift (zero vectors past the
    ends); the offset found is ``-k`` at the best k, as SyncNetInstance reports it.
    """
    import torch
    from syncnet_python.SyncNetInstance import calc_pdist

    distances = torch.stack(calc_pdist(video, audio, vshift=vshift), 1)  # (offsets, windows)
    mean_distance = distances.mean(1)
    smallest, best = torch.min(mean_distance, 0)
    return SyncScores(
        av_offset=vshift - int(best),
        distance=float(smallest),
        median_distance=float(torch.median(mean_distance)),
        window_distances=distances[best].double().numpy(),
    )


def detect_faces(frames: np.ndarray, detector: Any) -> list[list[dict[str, Any]]]:
    """S3FD boxes of each RGB frame, kept as run_pipeline.inference_video keeps them."""
    detections = []
    for index, frame in enumerate(frames):
        boxes = detector.detect_faces(
            np.ascontiguousarray(frame), conf_th=DETECTION_CONFIDENCE, scales=[FACEDET_SCALE]
        )
        detections.append([{"frame": index, "bbox": box[:-1].tolist(), "conf": float(box[-1])} for box in boxes])
    return detections


def _iou(a: list[float], b: list[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def track_faces(detections: list[list[dict[str, Any]]]) -> list[dict[str, np.ndarray]]:
    """Face tracks of one scene, as run_pipeline.track_shot builds them: each {'frame': (T,), 'bbox': (T, 4)}.

    Greedy: a track takes the first face left, then in each later frame a face overlapping its last box with
    IoU > 0.5 while the gap is at most 25 frames. The loop mirrors the reference's, which removes a taken face
    from the list it is iterating over (so the face after it in that frame is not looked at in that pass).
    """
    remaining = [list(faces) for faces in detections]
    tracks = []
    while True:
        track: list[dict[str, Any]] = []
        for faces in remaining:
            for face in faces:
                if not track:
                    track.append(face)
                    faces.remove(face)
                elif face["frame"] - track[-1]["frame"] <= NUM_FAILED_DET:
                    if _iou(face["bbox"], track[-1]["bbox"]) > IOU_THRESHOLD:
                        track.append(face)
                        faces.remove(face)
                        continue
                else:
                    break
        if not track:
            return tracks
        if len(track) > MIN_TRACK:
            known = np.array([face["frame"] for face in track])
            boxes = np.array([face["bbox"] for face in track], dtype=np.float64)
            frames = np.arange(known[0], known[-1] + 1)
            filled = np.stack([np.interp(frames, known, boxes[:, side]) for side in range(4)], axis=1)
            if max(np.mean(filled[:, 2] - filled[:, 0]), np.mean(filled[:, 3] - filled[:, 1])) > MIN_FACE_SIZE:
                tracks.append({"frame": frames, "bbox": filled})


def crop_track(frames: np.ndarray, track: dict[str, np.ndarray]) -> np.ndarray:
    """The track's 224x224 face crops (T, 224, 224, 3) uint8 BGR, as run_pipeline.crop_video cuts them."""
    import cv2
    from scipy import signal

    boxes = track["bbox"]
    half = signal.medfilt(np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2, SMOOTHING_KERNEL)
    centre_y = signal.medfilt((boxes[:, 1] + boxes[:, 3]) / 2, SMOOTHING_KERNEL)
    centre_x = signal.medfilt((boxes[:, 0] + boxes[:, 2]) / 2, SMOOTHING_KERNEL)
    crops = np.empty((len(boxes), CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i, frame_index in enumerate(track["frame"]):
        size = half[i]
        pad = int(size * (1 + 2 * CROP_SCALE))
        padded = cv2.copyMakeBorder(
            frames[frame_index], pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
        )
        y, x = centre_y[i] + pad, centre_x[i] + pad
        rows = slice(int(y - size), int(y + size * (1 + 2 * CROP_SCALE)))
        columns = slice(int(x - size * (1 + CROP_SCALE)), int(x + size * (1 + CROP_SCALE)))
        face = padded[rows, columns]
        crops[i] = cv2.resize(face, (CROP_SIZE, CROP_SIZE))[..., ::-1]
    return crops


def pcm16(samples: np.ndarray) -> np.ndarray:
    """bench's float samples back to the 16-bit PCM they were read from (bench.media.read_wav divides by 32767):
    the reference takes MFCCs of int16 samples, and the scale moves the energy coefficient."""
    return np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


def mfcc(pcm: np.ndarray) -> np.ndarray:
    """13 MFCCs per 10 ms step (13, steps), python_speech_features' defaults as SyncNetInstance calls it."""
    import python_speech_features

    return python_speech_features.mfcc(pcm, AUDIO_RATE).T


def syncnet_embeddings(
    net: Any, crops_bgr: np.ndarray, mfccs: np.ndarray, n_windows: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of the first ``n_windows`` 5-frame / 20-step windows (on the CPU, float32)."""
    import torch

    clip = torch.from_numpy(np.ascontiguousarray(crops_bgr)).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    coefficients = torch.from_numpy(mfccs).float()[None]  # (1, 13, steps)
    steps = WINDOW_FRAMES * MFCC_STEPS_PER_FRAME
    video, audio = [], []
    with torch.no_grad():
        for start in range(0, n_windows, BATCH_SIZE):
            windows = range(start, min(n_windows, start + BATCH_SIZE))
            lips = torch.stack([clip[:, w : w + WINDOW_FRAMES] for w in windows]).float()
            sound = torch.stack(
                [coefficients[:, :, w * MFCC_STEPS_PER_FRAME : w * MFCC_STEPS_PER_FRAME + steps] for w in windows]
            )
            video.append(net.forward_lip(lips.to(device)).cpu())
            audio.append(net.forward_aud(sound.to(device)).cpu())
    return torch.cat(video), torch.cat(audio)


def load_syncnet(path: Path, device: str) -> Any:
    """SyncNetModel.S with the ``syncnet_v2.model`` state dict (strict: every tensor must be there)."""
    import torch
    from syncnet_python.SyncNetModel import S

    net = S()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.to(device).eval()


def load_s3fd(path: Path, device: str) -> Any:
    """syncnet_python's S3FD detector with the ``sfd_face.pth`` state dict."""
    import torch
    from syncnet_python.detectors.s3fd import S3FD
    from syncnet_python.detectors.s3fd.nets import S3FDNet

    net = S3FDNet(device=device)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return S3FD(net=net, device=device)


def score_clip(frames: np.ndarray, samples: np.ndarray, syncnet_path: Path, s3fd_path: Path) -> ClipScores:
    """Every step above on one clip of 25 fps RGB frames and its 16 kHz mono samples."""
    from bench.metrics._frames import torch_device

    n_frames = len(frames)
    if n_frames <= MIN_TRACK:
        raise BenchError(
            f"clip too short: {n_frames} frames < {MIN_TRACK + 1} (SyncNet's reference pipeline scores only face "
            f"tracks longer than {MIN_TRACK} frames, 4 s at 25 fps)"
        )
    device = torch_device()
    detections = detect_faces(frames, load_s3fd(s3fd_path, device))
    tracks = track_faces(detections)
    if not tracks:
        detected = sum(1 for faces in detections if faces)
        raise BenchError(
            f"no face track to score: S3FD (confidence {DETECTION_CONFIDENCE}) found faces in {detected} of "
            f"{n_frames} frames, and no track of more than {MIN_TRACK} frames with faces above {MIN_FACE_SIZE} px"
        )
    net = load_syncnet(syncnet_path, device)
    pcm = pcm16(samples)
    scored = []
    for track in tracks:
        first, last = int(track["frame"][0]), int(track["frame"][-1])
        track_pcm = pcm[first * SAMPLES_PER_FRAME : (last + 1) * SAMPLES_PER_FRAME]
        n_windows = min(last + 1 - first, len(track_pcm) // SAMPLES_PER_FRAME) - WINDOW_FRAMES
        if n_windows < 1:
            raise BenchError(
                f"driving audio too short for LSE: its {len(pcm)} samples end before the face track at "
                f"frames {first}-{last} has {WINDOW_FRAMES + 1} frames of sound"
            )
        video, audio = syncnet_embeddings(net, crop_track(frames, track), mfcc(track_pcm), n_windows, device)
        scored.append(TrackScores(first_frame=first, n_frames=last + 1 - first, scores=sync_scores(video, audio)))
    return ClipScores(n_frames=n_frames, tracks=scored)


# ---------------------------------------------------------------------------------------------------
# The two specs: one computation per clip


@dataclass
class _LastClip:
    """The last clip scored in this process: its frames array (by identity), what else it depended on, and the
    outcome (scores, or the BenchError that refused it)."""

    frames: weakref.ref | None = None
    key: tuple = ()
    outcome: ClipScores | BenchError | None = None


_last = _LastClip()


def cached_score_clip(data: MetricInput, syncnet_path: Path, s3fd_path: Path) -> ClipScores:
    """``score_clip`` once per (frames array, audio sha256, weights): the LSE-C and LSE-D specs share it."""
    if data.audio is None:
        raise BenchError("LSE needs the driving audio")
    key = (data.audio.sha256, str(syncnet_path), str(s3fd_path), data.pred.shape)
    if _last.frames is None or _last.frames() is not data.pred or _last.key != key:
        try:
            outcome: ClipScores | BenchError = score_clip(data.pred, data.audio.samples(), syncnet_path, s3fd_path)
        except BenchError as error:
            outcome = error
        _last.frames, _last.key, _last.outcome = weakref.ref(data.pred), key, outcome
    if isinstance(_last.outcome, BenchError):
        raise _last.outcome
    return _last.outcome


class _SyncNetLSE(Metric):
    """One of the two numbers of a clip's SyncNet scores; per-frame values sit at each 5-frame window's centre."""

    @abc.abstractmethod
    def track_value(self, scores: SyncScores) -> float: ...

    @abc.abstractmethod
    def window_values(self, scores: SyncScores) -> np.ndarray: ...

    def compute(self, data: MetricInput) -> MetricValue:
        clip = cached_score_clip(data, self.assets[SYNCNET_ASSET], self.assets[S3FD_ASSET])
        total = np.zeros(clip.n_frames)
        count = np.zeros(clip.n_frames)
        for track in clip.tracks:
            centres = track.first_frame + WINDOW_FRAMES // 2 + np.arange(len(track.scores.window_distances))
            total[centres] += self.window_values(track.scores)
            count[centres] += 1
        with np.errstate(invalid="ignore"):
            per_frame = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        principal = max(clip.tracks, key=lambda t: t.n_frames)
        return MetricValue(
            aggregate=float(np.mean([self.track_value(t.scores) for t in clip.tracks])),
            per_frame=per_frame,
            extras={
                "av_offset": principal.scores.av_offset,
                "tracks": [
                    {
                        "first_frame": t.first_frame,
                        "frames": t.n_frames,
                        "windows": len(t.scores.window_distances),
                        "av_offset": t.scores.av_offset,
                        "lse_d": t.scores.distance,
                        "lse_c": t.scores.confidence,
                    }
                    for t in clip.tracks
                ],
                "frames": clip.n_frames,
                "scene_split": "none (one scene)",
            },
        )


class LSEConfidence(_SyncNetLSE):
    """LSE-C: per window, median mean distance minus the window's distance at the chosen offset."""

    def track_value(self, scores: SyncScores) -> float:
        return scores.confidence

    def window_values(self, scores: SyncScores) -> np.ndarray:
        return scores.median_distance - scores.window_distances


class LSEDistance(_SyncNetLSE):
    """LSE-D: per window, the distance at the chosen offset."""

    def track_value(self, scores: SyncScores) -> float:
        return scores.distance

    def window_values(self, scores: SyncScores) -> np.ndarray:
        return scores.window_distances
