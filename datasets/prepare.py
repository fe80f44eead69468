"""Minimal subject and audio preparation: decode, resample to 25 fps, 16 kHz mono audio, split.

A prepared subject is a stage folder (``$BENCH_HOME/stages/prepare/<key>``) holding
- ``video.<ext>``: the 25 fps video whose decoded frames are the ground truth (the source itself when it is
  already 25 fps; otherwise a lossless FFV1 re-encode of the resampled frames),
- ``audio.wav`` (whole clip) and ``test_audio.wav`` (test split), 16 kHz mono 16-bit PCM,
- ``test_frames.u8/.json``: the decoded test-split frames, so evaluation never decodes them again,
- ``subject.json``: counts, split, sizes and how each file was made.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import deque
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import assets, home, media, registry, stages
from bench.contracts import (
    FPS,
    MIN_FRAMES,
    SAMPLES_PER_FRAME,
    SELF_AUDIO,
    AudioSpec,
    BenchError,
    DrivingAudio,
    Split,
    Subject,
    SubjectSpec,
)
from bench.hashing import sha256_file

PREPARE_VERSION = "1"


def subject_video(spec: SubjectSpec) -> tuple[Path, str]:
    """The subject's source video and its sha256, or a one-line error saying how to provide it."""
    if spec.video_asset:
        return assets.fetch(spec.video_asset), assets.get(spec.video_asset).sha256
    path = Path(spec.video_path) if spec.video_path else home.user_videos_dir() / f"{spec.id}.mp4"
    if not path.is_file():
        source = f" Source: {spec.source}." if spec.source else ""
        raise BenchError(f"subject {spec.id!r} has no video at {path}: put its 25 fps talking-head video there.{source}")
    return path, sha256_file(path)


def _test_count(n_frames: int) -> int:
    return n_frames - n_frames * 10 // 11


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class _LosslessEncoder:
    """FFV1 (lossless RGB) writer for sources that had to be resampled to 25 fps."""

    def __init__(self, path: Path):
        import av

        self._av = av
        self.container = av.open(str(path), "w")
        self.stream = self.container.add_stream("ffv1", rate=FPS)
        self.stream.pix_fmt = "bgr0"

    def write(self, frame: np.ndarray) -> None:
        if not self.stream.width:
            self.stream.width, self.stream.height = frame.shape[1], frame.shape[0]
        for packet in self.stream.encode(self._av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _prepare_subject(spec: SubjectSpec, source: Path, out: Path, progress: bool) -> dict:
    info = media.video_info(source)
    resampled = info["fps"] is None or abs(info["fps"] - FPS) > 1e-3
    video = out / ("video.mkv" if resampled else f"video{source.suffix.lower()}")
    encoder = _LosslessEncoder(video) if resampled else None
    if not resampled:
        _link_or_copy(source, video)
    tail: deque[np.ndarray] = deque()
    n_frames = 0
    for frame in tqdm(media.iter_video(source), desc=f"prepare {spec.id}", total=info["frames"], disable=not progress, unit="frame"):
        if encoder:
            encoder.write(frame)
        n_frames += 1
        tail.append(frame)
        while len(tail) > _test_count(n_frames):  # keeps exactly the last 1/11, whatever N turns out to be
            tail.popleft()
    if encoder:
        encoder.close()
    if n_frames < MIN_FRAMES:
        raise BenchError(f"{source}: only {n_frames} frames at 25 fps; a subject needs at least {MIN_FRAMES / FPS:g} s")
    split = Split.for_frames(n_frames)
    media.write_frames(out / "test_frames", tail)

    samples = media.decode_audio(source)
    media.write_wav(out / "audio.wav", samples)
    start, stop = split.test.start * SAMPLES_PER_FRAME, split.test.stop * SAMPLES_PER_FRAME
    test_audio = samples[start:stop]
    missing = (stop - start) - len(test_audio)
    media.write_wav(out / "test_audio.wav", np.pad(test_audio, (0, max(missing, 0))))
    meta = {
        "id": spec.id,
        "n_frames": n_frames,
        "width": tail[0].shape[1],
        "height": tail[0].shape[0],
        "fps": FPS,
        "source_fps": info["fps"],
        "resampled_to_25fps": resampled,
        "video": video.name,
        "split": {"train": [split.train.start, split.train.stop], "test": [split.test.start, split.test.stop]},
        "audio_seconds": round(len(samples) / 16000, 3),
        "test_audio_zero_padded_samples": max(missing, 0),
        "decoder": media.decoder_description(),
        "audio_resampler": "mean over channels, scipy.signal.resample_poly to 16 kHz, 16-bit PCM",
    }
    (out / "subject.json").write_text(json.dumps(meta, indent=1))
    return {"n_frames": n_frames}


def prepare_subject(subject_id: str, progress: bool = True, run: bool = True) -> Subject | None:
    """Prepare (or reuse) a registered subject and return it; with ``run=False`` only a finished preparation is
    returned (None when there is none): nothing is computed."""
    spec = registry.subjects.get(subject_id)
    source, sha = subject_video(spec)
    inputs = {"subject": spec.id, "video_sha256": sha, "version": PREPARE_VERSION}
    if not run and not stages.is_done("prepare", stages.stage_key("prepare", inputs)):
        return None
    folder, _ = stages.ensure("prepare", inputs, lambda out: _prepare_subject(spec, source, out, progress))
    meta = json.loads((folder / "subject.json").read_text())
    return Subject(
        id=spec.id,
        root=folder,
        key=folder.name,
        n_frames=meta["n_frames"],
        width=meta["width"],
        height=meta["height"],
        split=Split(train=range(*meta["split"]["train"]), test=range(*meta["split"]["test"])),
        video_path=folder / meta["video"],
        audio_path=folder / "audio.wav",
        test_frames_path=folder / "test_frames",
        test_audio_path=folder / "test_audio.wav",
        sources={spec.video_asset or str(source): sha},
    )


def _prepare_audio(source: Path, out: Path) -> dict:
    samples = media.decode_audio(source)
    if len(samples) < SAMPLES_PER_FRAME:
        raise BenchError(f"{source}: shorter than one video frame (40 ms)")
    media.write_wav(out / "audio.wav", samples)
    return {"n_frames": len(samples) // SAMPLES_PER_FRAME}


def audio_stage_inputs(spec: AudioSpec) -> dict:
    """The audio stage's key inputs: the asset's identity, known without fetching or decoding it."""
    return {"audio": spec.id, "sha256": assets.get(spec.asset).sha256, "version": PREPARE_VERSION}


def prepare_audio(spec: AudioSpec) -> DrivingAudio:
    """16 kHz mono version of a registered OOD audio (cached as a stage)."""
    inputs = audio_stage_inputs(spec)
    folder, _ = stages.ensure("audio", inputs, lambda out: _prepare_audio(assets.fetch(spec.asset), out))
    n_frames = stages.record("audio", folder.name)["outputs"]["n_frames"]
    return DrivingAudio(
        id=spec.id, path=folder / "audio.wav", n_frames=n_frames, sha256=inputs["sha256"], has_ground_truth=False
    )


def driving_audio(subject: Subject, audio_id: str) -> DrivingAudio:
    if audio_id == SELF_AUDIO:
        return subject.self_audio()
    return prepare_audio(registry.audio.get(audio_id))


def driving_audio_identity(subject: Subject, audio_id: str) -> tuple[str, str]:
    """(id, sha256) that a render of ``audio_id`` is keyed on, found without preparing the audio."""
    if audio_id == SELF_AUDIO:
        return SELF_AUDIO, sha256_file(subject.test_audio_path)
    spec = registry.audio.get(audio_id)
    return spec.id, audio_stage_inputs(spec)["sha256"]
