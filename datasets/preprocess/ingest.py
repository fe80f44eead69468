"""Ingest: any common container to 25 fps square RGB frames and 16 kHz mono audio.

Frame-size policy (recorded in the summary):
- frames already ``size`` x ``size`` (512² by default): kept as decoded, no resampling of pixels;
- other square frames: resized to ``size`` (OpenCV area filter when shrinking, bicubic when enlarging);
- non-square frames: a square crop around the face track is cut first. Faces are found with the MediaPipe face
  landmarker on up to ``crop_samples`` frames spread over the clip; the crop is centred on the median face centre,
  its side is ``crop_face_ratio`` times the median face height (chin to brow line) capped by the shorter frame
  side, and it is shifted to lie inside the frame. Then it is resized as above. One crop for the whole clip, so
  the head moves in the frame as in the source (SyncTalk expects a fixed camera).
Frames are decoded with PyAV and resampled to 25 fps by nearest timestamp (``bench.media``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import AUDIO_RATE, FPS, MIN_FRAMES, BenchError
from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="ingest",
    version="1",
    depends=(),
    impl="bench.datasets.preprocess.ingest:run",
    description="decode to 25 fps RGB frames (square crop around the face, resized) and 16 kHz mono audio",
    options={"size": 512, "crop_face_ratio": 2.6, "crop_samples": 24},
)


def face_crop(video: Path, n_frames: int, width: int, height: int, face_ratio: float, samples: int) -> tuple[int, int, int]:
    """(left, top, side) of the square crop around the face track; see the module docstring."""
    from bench import assets, media
    from bench.datasets.preprocess.mediapipe_face import FaceMesh

    wanted = set(np.linspace(0, max(n_frames - 1, 0), num=min(samples, n_frames)).round().astype(int).tolist())
    centres, heights = [], []
    with FaceMesh(assets.fetch("mediapipe_face_landmarker"), video=False) as mesh:
        for index, frame in enumerate(media.iter_video(video)):
            if index in wanted:
                found = mesh.detect(frame, index)
                if found is not None:
                    points = found.points[:, :2]
                    centres.append(np.median(points, axis=0))
                    heights.append(np.ptp(points[:, 1]))
    if not centres:
        raise BenchError(f"{video}: no face found on {len(wanted)} frames spread over the clip; is it a talking-head video?")
    centre = np.median(np.array(centres), axis=0)
    side = int(min(min(width, height), round(face_ratio * float(np.median(heights)))))
    left = int(np.clip(round(centre[0] - side / 2), 0, width - side))
    top = int(np.clip(round(centre[1] - side / 2), 0, height - side))
    return left, top, side


def run(ctx: StepContext) -> dict[str, Any]:
    import cv2
    from tqdm import tqdm

    from bench import media

    video = ctx.subject.video
    info = media.video_info(video)
    if not info["has_audio"]:
        raise BenchError(f"{video}: has no audio stream; a talking-head subject needs its speech (mux it in with ffmpeg)")
    width, height = info["width"], info["height"]
    size = int(ctx.options["size"])
    estimated = int(round(info["frames"] * FPS / info["fps"])) if info["frames"] and info["fps"] else None
    if width == height:
        left, top, side = 0, 0, width
        policy = "kept as decoded" if side == size else f"square source resized to {size}²"
    else:
        left, top, side = face_crop(
            video, estimated or 250, width, height, float(ctx.options["crop_face_ratio"]), int(ctx.options["crop_samples"])
        )
        policy = f"square crop of {side}² around the median face centre, resized to {size}²"
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    with media.FrameWriter(ctx.out / "frames") as writer:
        for frame in tqdm(media.iter_video(video), desc="ingest", total=estimated, unit="frame", disable=not ctx.progress):
            crop = frame[top : top + side, left : left + side]
            writer.write(crop if side == size else cv2.resize(crop, (size, size), interpolation=interpolation))
    n_frames = writer.count
    if n_frames < MIN_FRAMES:
        raise BenchError(
            f"{video}: only {n_frames} frames ({n_frames / FPS:.2f} s) at {FPS} fps; a subject needs at least {MIN_FRAMES / FPS:g} s"
        )
    samples = media.decode_audio(video)
    media.write_wav(ctx.out / "audio.wav", samples)
    return {
        "n_frames": n_frames,
        "width": size,
        "height": size,
        "source": {"width": width, "height": height, "fps": info["fps"], "path": str(video), "sha256": ctx.subject.sha256},
        "crop_box": [left, top, left + side, top + side],
        "policy": policy,
        "resize": "none" if side == size else ("cv2.INTER_AREA" if side > size else "cv2.INTER_CUBIC"),
        "audio_seconds": round(len(samples) / AUDIO_RATE, 3),
        "video_seconds": round(n_frames / FPS, 3),
        "decoder": media.decoder_description(),
    }
