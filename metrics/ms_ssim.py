"""MS-SSIM on RGB frames with data range 1, full frame, per frame then the mean (piq's multi_scale_ssim:
5 scales, 11x11 Gaussian window with sigma 1.5, the standard scale weights). Inputs must be at least 161 px
on each side. pyiqa's default computes on the Y channel: that is a different variant.
"""

from __future__ import annotations

import numpy as np

from bench.contracts import Metric, MetricInput, MetricKind, MetricSpec, MetricValue

SPECS = (
    MetricSpec(
        id="ms_ssim",
        variant="ms_ssim@rgb",
        impl="bench.metrics.ms_ssim:RGBMultiScaleSSIM",
        higher_is_better=True,
        kind=MetricKind.FULL_REFERENCE,
        description="MS-SSIM on RGB in [0,1] (piq.multi_scale_ssim, 5 scales, Gaussian 11/1.5), mean over frames",
        requires=("torch", "piq"),
    ),
)

MIN_SIDE = 161


class RGBMultiScaleSSIM(Metric):
    batch_size = 4

    def compute(self, data: MetricInput) -> MetricValue:
        import piq
        import torch

        from bench.contracts import BenchError
        from bench.metrics._frames import batches, frame_mean, torch_device

        height, width = data.pred.shape[1:3]
        if min(height, width) < MIN_SIDE:
            raise BenchError(f"MS-SSIM needs frames of at least {MIN_SIDE}x{MIN_SIDE}; these are {width}x{height}")
        device = torch_device()
        values = []
        with torch.no_grad():
            for part in batches(len(data.pred), self.batch_size):
                pred, gt = (
                    torch.from_numpy(np.array(a[part])).to(device).permute(0, 3, 1, 2).float() / 255.0
                    for a in (data.pred, data.gt)
                )
                score = piq.multi_scale_ssim(pred, gt, data_range=1.0, reduction="none")
                values.append(score.double().cpu().numpy())
        return frame_mean(np.concatenate(values))
