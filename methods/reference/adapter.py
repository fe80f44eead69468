"""Reference methods: ground truth (upper bound), a still frame (lower bound) and imported renders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bench import media
from bench.contracts import BenchError, DrivingAudio, Method, Subject, Track


class GroundTruth(Method):
    def render(self, subject: Subject, checkpoint_dir: Path | None, audio: DrivingAudio, track: Track) -> Iterator[np.ndarray]:
        yield from subject.test_frames()


class StillFrame(Method):
    def render(self, subject: Subject, checkpoint_dir: Path | None, audio: DrivingAudio, track: Track) -> Iterator[np.ndarray]:
        first = subject.frames(range(subject.split.train.start, subject.split.train.start + 1))[0]
        for _ in range(audio.n_frames):
            yield first


class ImportedVideo(Method):
    """Frames from ``config["renders"]``; the pipeline adds the file's sha256 to the config, so its cache key."""

    def render(self, subject: Subject, checkpoint_dir: Path | None, audio: DrivingAudio, track: Track) -> Iterator[np.ndarray]:
        renders = self.config.get("renders")
        if not renders:
            raise BenchError("method 'video' needs the rendered frames: --renders path/to/video.mp4 (or a frame folder)")
        yield from media.iter_frames(Path(renders))
