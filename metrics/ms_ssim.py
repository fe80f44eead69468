"""MS-SSIM on RGB frames with data range 1, full frame, per frame then the mean (piq's multi_scale_ssim:
5 scales, 11x11 Gaussian window with sigma 1.5, the standard scale weights). Inputs must be at least 161 px
on each side. pyiqa's default, and the official TID2013 values, compute on the luma channel with MATLAB's
conventions: that is the separate variant ``ms_ssim@y-matlab`` (metrics/ms_ssim_y.py).
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

        from bench.metrics._frames import batches, frame_mean, require_min_side, torch_device, unit_tensor

        require_min_side("MS-SSIM", data.pred, MIN_SIDE)
        device = torch_device()
        values = []
        with torch.no_grad():
            for part in batches(len(data.pred), self.batch_size):
                pred, gt = unit_tensor(data.pred[part], device), unit_tensor(data.gt[part], device)
                score = piq.multi_scale_ssim(pred, gt, data_range=1.0, reduction="none")
                values.append(score.double().cpu().numpy())
        return frame_mean(np.concatenate(values))
