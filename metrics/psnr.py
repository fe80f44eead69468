"""PSNR as SyncTalk/ER-NeRF compute it: per frame, -10*log10(MSE) over all pixels and channels in [0, 1]
(peak 1.0), then the mean over frames.

Identical frames have MSE 0 and PSNR +inf; the frame mean is then +inf too (SyncTalk's meter does the same).
bench keeps the infinity rather than capping it: tables print "inf", JSON gives the string "inf".
"""

from __future__ import annotations

import numpy as np

from bench.contracts import Metric, MetricInput, MetricKind, MetricSpec, MetricValue

SPECS = (
    MetricSpec(
        id="psnr",
        variant="psnr@frame-mean",
        impl="bench.metrics.psnr:FrameMeanPSNR",
        higher_is_better=True,
        kind=MetricKind.FULL_REFERENCE,
        description="per-frame PSNR over all pixels and RGB channels in [0,1], mean over frames (SyncTalk PSNRMeter)",
        unit="dB",
    ),
)


def psnr_per_frame(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """PSNR of each frame pair of uint8 arrays (N, H, W, C), computed in float64."""
    diff = pred.astype(np.float64)
    diff -= gt
    diff /= 255.0
    np.square(diff, out=diff)
    mse = diff.reshape(len(diff), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(mse)


class FrameMeanPSNR(Metric):
    batch_size = 8

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import batches, frame_mean

        values = np.concatenate(
            [psnr_per_frame(data.pred[part], data.gt[part]) for part in batches(len(data.pred), self.batch_size)]
        )
        return frame_mean(values, identical_frames=int(np.isinf(values).sum()))
