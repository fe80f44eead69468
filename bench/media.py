"""Video, image and audio I/O, done one fixed way so every number is computed on the same pixels.

- Video is decoded with PyAV (its bundled FFmpeg) to uint8 RGB (``rgb24`` through swscale, no resizing).
  A stream that is not 25 fps is resampled by nearest timestamp (frames dropped or repeated, never blended).
- Frame folders and single images are read with Pillow and taken as 25 fps.
- Audio is decoded with PyAV, averaged over channels and resampled to 16 kHz with SciPy's polyphase filter
  (``resample_poly``, Kaiser window); prepared audio is stored as 16-bit PCM mono WAV.
- A *frame file* is ``<name>.u8`` (raw uint8 frames) plus ``<name>.json`` (shape); it is written frame by frame
  and opened as a read-only memory map.
"""

from __future__ import annotations

import json
import os
import wave
from collections.abc import Iterable, Iterator
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np

from bench.basics import AUDIO_RATE, FPS, BenchError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def decoder_description() -> str:
    """Recorded in provenance: what turned video into pixels."""
    import av

    return f"pyav {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), rgb24, no resize"


def _open_container(path: Path):
    import av

    if not path.is_file():
        raise BenchError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, ValueError) as error:
        raise BenchError(f"{path}: cannot be decoded ({error}); re-encode it, e.g. to H.264 .mp4") from error


def video_info(path: Path) -> dict:
    """Frame size, frame rate, frame count (as the container states it) and whether there is audio."""
    with _open_container(path) as container:
        if not container.streams.video:
            raise BenchError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return {
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(rate) if rate else None,
            "frames": stream.frames or None,
            "has_audio": bool(container.streams.audio),
        }


def iter_video(path: Path, fps: int = FPS) -> Iterator[np.ndarray]:
    """Decode ``path`` to uint8 RGB frames at ``fps`` (nearest-timestamp resampling when the rate differs)."""
    import av

    with _open_container(path) as container:
        if not container.streams.video:
            raise BenchError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        resample = rate is None or abs(float(rate) - fps) > 1e-3
        try:
            if not resample:
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
                return
            yield from _resample_nearest(container.decode(stream), stream.time_base, fps)
        except av.error.FFmpegError as error:
            raise BenchError(f"{path}: decoding failed ({error}); re-encode it, e.g. to H.264 .mp4") from error


def _resample_nearest(frames: Iterable, time_base: Fraction, fps: int) -> Iterator[np.ndarray]:
    """Emit, for each output time k/fps, the input frame whose timestamp is nearest."""
    previous: tuple[float, np.ndarray] | None = None
    start: float | None = None
    emitted = 0
    step = 0.0
    for frame in frames:
        t = float(frame.pts * time_base) if frame.pts is not None else (previous[0] + step if previous else 0.0)
        image = frame.to_ndarray(format="rgb24")
        if previous is None:
            start, previous = t, (t, image)
            continue
        step = t - previous[0]
        midpoint = (previous[0] + t) / 2 - start
        while emitted / fps < midpoint:
            yield previous[1]
            emitted += 1
        previous = (t, image)
    if previous is not None:
        end = previous[0] + step - start if step else previous[0] - start + 1 / fps
        while emitted / fps < end - 1e-9 or emitted == 0:
            yield previous[1]
            emitted += 1


def read_video_range(path: Path, indices: range) -> np.ndarray:
    """Frames ``indices`` (contiguous, 25 fps numbering) of a video, as one array."""
    wanted: list[np.ndarray] = []
    for index, frame in enumerate(iter_video(path)):
        if index >= indices.stop:
            break
        if index >= indices.start:
            wanted.append(frame)
    if len(wanted) != len(indices):
        raise BenchError(f"{path}: has fewer frames than index {indices.stop - 1}")
    return np.stack(wanted)


def iter_images(paths: Iterable[Path]) -> Iterator[np.ndarray]:
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path) as image:
                yield np.asarray(image.convert("RGB"))
        except OSError as error:
            raise BenchError(f"{path}: not a readable image ({error})") from error


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Frames of a video file, a folder of images (sorted by name) or a single image, as uint8 RGB."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise BenchError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return iter_images(images)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return iter_images([path])
    return iter_video(path)


# ---------------------------------------------------------------------------------------------------
# Frame files


class FrameWriter:
    """Append frames to ``<stem>.u8``; ``close()`` writes ``<stem>.json``, which marks the file complete."""

    def __init__(self, stem: Path):
        self.stem = stem
        self.count = 0
        self.frame_shape: tuple[int, ...] | None = None
        self._handle = open(stem.with_suffix(".u8"), "wb")

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise BenchError(f"frame {self.count} is {frame.dtype} {frame.shape}; expected uint8 (H, W, 3) RGB")
        if self.frame_shape is None:
            self.frame_shape = frame.shape
        elif frame.shape != self.frame_shape:
            raise BenchError(f"frame {self.count} is {frame.shape[:2]}, earlier frames {self.frame_shape[:2]}")
        self._handle.write(np.ascontiguousarray(frame).tobytes())
        self.count += 1

    def close(self) -> None:
        self._handle.close()
        if self.frame_shape is None:
            raise BenchError(f"{self.stem}: no frames were written")
        header = {"shape": [self.count, *self.frame_shape], "dtype": "uint8"}
        self.stem.with_suffix(".json").write_text(json.dumps(header))

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._handle.close()


def write_frames(stem: Path, frames: Iterable[np.ndarray]) -> int:
    with FrameWriter(stem) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.count


def open_frames(stem: Path) -> np.ndarray:
    """A read-only memory map (N, H, W, 3) of a frame file."""
    header = json.loads(stem.with_suffix(".json").read_text())
    return np.memmap(stem.with_suffix(".u8"), dtype=np.uint8, mode="r", shape=tuple(header["shape"]))


def write_video(path: Path, frames: Iterable[np.ndarray], audio: np.ndarray | None = None, fps: int = FPS,
                rate: int = AUDIO_RATE, crf: int = 18, lossless: bool = False) -> int:
    """Encode uint8 RGB frames as H.264 (yuv420p, or yuv444p when a side is odd) with ``audio`` (mono float samples
    at ``rate``) muxed in as AAC, through PyAV's bundled FFmpeg; written to a partial file, then renamed.
    ``lossless``: FFV1 on RGB and FLAC instead (for Matroska files whose frames must decode exactly)."""
    import av

    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    count = 0
    with av.open(str(partial), "w") as container:
        video = container.add_stream("ffv1" if lossless else "libx264", rate=fps)
        if not lossless:
            video.options = {"crf": str(crf)}
        sound = container.add_stream("flac" if lossless else "aac", rate=rate) if audio is not None else None
        if sound is not None:
            sound.layout = "mono"
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if count == 0:
                video.height, video.width = frame.shape[:2]
                even = frame.shape[0] % 2 == 0 and frame.shape[1] % 2 == 0
                video.pix_fmt = "bgr0" if lossless else "yuv420p" if even else "yuv444p"
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            count += 1
        container.mux(video.encode())
        if sound is not None:
            samples = np.asarray(audio, dtype=np.float32)
            if lossless:  # FLAC takes 16-bit integers
                samples = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
            for start in range(0, len(samples), 1024):
                block = av.AudioFrame.from_ndarray(
                    samples[None, start : start + 1024], format="s16" if lossless else "fltp", layout="mono"
                )
                block.sample_rate, block.pts, block.time_base = rate, start, Fraction(1, rate)
                container.mux(sound.encode(block))
            container.mux(sound.encode())
    if count == 0:
        partial.unlink(missing_ok=True)
        raise BenchError(f"{path}: no frames to encode")
    os.replace(partial, path)
    return count


# ---------------------------------------------------------------------------------------------------
# Audio


def decode_audio(path: Path, rate: int = AUDIO_RATE) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at ``rate`` from any audio or video file."""
    import av
    from scipy.signal import resample_poly

    with _open_container(path) as container:
        if not container.streams.audio:
            raise BenchError(f"{path}: has no audio stream; bench needs the speech that drives the video")
        stream = container.streams.audio[0]
        chunks: list[np.ndarray] = []
        source_rate = stream.codec_context.sample_rate
        try:
            for frame in container.decode(stream):
                raw = frame.to_ndarray()
                data = raw.astype(np.float64)
                if np.issubdtype(raw.dtype, np.integer):
                    data /= float(np.iinfo(raw.dtype).max) + 1.0
                if frame.format.is_packed:  # interleaved: (1, samples * channels)
                    data = data.reshape(-1, len(frame.layout.channels)).T
                chunks.append(data.mean(axis=0))
        except av.error.FFmpegError as error:
            raise BenchError(f"{path}: audio decoding failed ({error})") from error
    if not chunks:
        raise BenchError(f"{path}: audio stream is empty")
    samples = np.concatenate(chunks)
    if source_rate != rate:
        common = gcd(source_rate, rate)
        samples = resample_poly(samples, rate // common, source_rate // common)
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    partial = path.with_name(f".{path.name}.partial")
    with wave.open(str(partial), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())
    os.replace(partial, path)


def read_wav(path: Path) -> np.ndarray:
    """Samples of a 16-bit mono WAV written by ``write_wav``, as float32."""
    with wave.open(str(path), "rb") as handle:
        if handle.getnchannels() != 1 or handle.getsampwidth() != 2:
            raise BenchError(f"{path}: expected 16-bit mono WAV; prepare it with bench first")
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32767
