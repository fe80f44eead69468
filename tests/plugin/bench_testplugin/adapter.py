"""Plug-in implementations. ``Echo`` logs each training to $BENCH_TEST_LOG and can render slowly
($BENCH_TEST_RENDER_DELAY seconds per frame) so tests can interrupt it mid-stage."""

import os
import time

import numpy as np

from bench.contracts import Method, Metric, MetricValue


class Echo(Method):
    def train(self, subject, checkpoint_dir):
        if log := os.environ.get("BENCH_TEST_LOG"):
            with open(log, "a") as handle:
                handle.write(f"train {os.getpid()}\n")
        mean = subject.frames(subject.split.train).mean(axis=0)
        np.save(checkpoint_dir / "mean.npy", mean)

    def render(self, subject, checkpoint_dir, audio, track):
        mean = np.load(checkpoint_dir / "mean.npy")
        rng = np.random.default_rng(self.seed)
        delay = float(os.environ.get("BENCH_TEST_RENDER_DELAY", "0"))
        test = subject.test_frames()
        for i in range(audio.n_frames):
            base = test[i] if audio.has_ground_truth else mean
            noise = rng.normal(0, self.config["noise"], base.shape)
            time.sleep(delay)
            yield np.clip(base + noise, 0, 255).astype(np.uint8)


class MeanAbs(Metric):
    def compute(self, data):
        values = data.pred.reshape(len(data.pred), -1).mean(axis=1).astype(float)
        return MetricValue(aggregate=float(values.mean()), per_frame=values)
