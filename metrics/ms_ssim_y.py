"""MS-SSIM on the luma of each frame, following Z. Wang's MATLAB ``msssim.m`` (the code behind the TID2013 values
that pyiqa publishes as official): the frames go through MATLAB's ``rgb2gray`` (rounded to uint8), then five
scales of SSIM with an 11x11 Gaussian window (sigma 1.5) applied 'valid' (no padding), L = 255, K = (0.01, 0.03),
no clipping of negative contrast-structure terms, and 2x2 box-filter downsampling with symmetric padding between
scales. The score is prod(cs_1..4 ** w_1..4) * ssim_5 ** w_5 with w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
per frame, then the mean over frames. Frames need at least 176 px on each side (11 px at the fifth scale).

``ms_ssim@rgb`` (piq on RGB) is a different variant and gives different numbers.
"""

from __future__ import annotations

import numpy as np

from bench.contracts import Metric, MetricInput, MetricKind, MetricSpec, MetricValue

SPECS = (
    MetricSpec(
        id="ms_ssim",
        variant="ms_ssim@y-matlab",
        impl="bench.metrics.ms_ssim_y:MatlabLumaMultiScaleSSIM",
        higher_is_better=True,
        kind=MetricKind.FULL_REFERENCE,
        description="MS-SSIM on MATLAB rgb2gray luma, 0-255, as Wang's msssim.m (valid Gaussian 11/1.5, 2x2 box "
        "downsampling), mean over frames",
        requires=("torch",),
    ),
)

SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
PEAK = 255.0
K1, K2 = 0.01, 0.03
MIN_SIDE = WINDOW_SIZE * 2 ** (len(SCALE_WEIGHTS) - 1)
# MATLAB rgb2gray: the first row of the inverse of ntsc2rgb's matrix (0.2989, 0.5870, 0.1140 to 4 digits).
RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)


def matlab_gray(frames):
    """(N, 3, H, W) float64 RGB in 0..255 -> (N, 1, H, W) luma as MATLAB's rgb2gray gives for uint8 (rounded)."""
    import torch

    weights = torch.tensor(RGB2GRAY, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
    return torch.floor((frames * weights).sum(dim=1, keepdim=True) + 0.5)


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma): normalised, tiny values below eps * max set to 0."""
    half = (size - 1) / 2
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    window = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    window[window < np.finfo(window.dtype).eps * window.max()] = 0
    return window / window.sum()


def ssim_and_cs(x, y, window):
    """Per-image mean SSIM and mean contrast-structure term (ssim_index_new.m), 'valid' filtering.

    ``x``, ``y``: (N, 1, H, W) float64 in 0..255; ``window``: (1, 1, k, k) tensor. Returns two (N,) tensors.
    """
    import torch.nn.functional as F

    c1, c2 = (K1 * PEAK) ** 2, (K2 * PEAK) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = F.conv2d(x * x, window) - mu_xx
    var_y = F.conv2d(y * y, window) - mu_yy
    cov_xy = F.conv2d(x * y, window) - mu_xy
    cs_map = (2 * cov_xy + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.mean(dim=(1, 2, 3)), cs_map.mean(dim=(1, 2, 3))


def box_downsample(images):
    """imfilter(img, ones(2)/4, 'symmetric', 'same') then img(1:2:end, 1:2:end): 2x2 means, an odd last
    row/column kept as is (its symmetric neighbour is itself)."""
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    if height % 2 or width % 2:
        images = F.pad(images, (0, width % 2, 0, height % 2), mode="replicate")
    return F.avg_pool2d(images, kernel_size=2)


def ms_ssim_luma(x, y):
    """MS-SSIM of (N, 1, H, W) float64 luma batches in 0..255 (msssim.m, method 'product'); (N,) tensor."""
    import torch

    window = torch.from_numpy(gaussian_window()).to(x).view(1, 1, WINDOW_SIZE, WINDOW_SIZE)
    weights = torch.tensor(SCALE_WEIGHTS, dtype=x.dtype, device=x.device)
    contrast_structure = []
    for scale in range(len(SCALE_WEIGHTS)):
        ssim, cs = ssim_and_cs(x, y, window)
        contrast_structure.append(cs)
        if scale < len(SCALE_WEIGHTS) - 1:
            x, y = box_downsample(x), box_downsample(y)
    cs = torch.stack(contrast_structure[:-1])
    return torch.prod(cs ** weights[:-1, None], dim=0) * ssim ** weights[-1]


def rgb_to_tensor(frames: np.ndarray, device: str):
    """uint8 (N, H, W, 3) frames as float64 (N, 3, H, W) in 0..255 on ``device`` (copied: memmaps are read-only)."""
    import torch

    return torch.from_numpy(np.array(frames)).to(device).permute(0, 3, 1, 2).double()


class MatlabLumaMultiScaleSSIM(Metric):
    batch_size = 4

    def compute(self, data: MetricInput) -> MetricValue:
        import torch

        from bench.metrics._frames import batches, frame_mean, require_min_side, torch_device

        require_min_side("MS-SSIM", data.pred, MIN_SIDE)
        device = torch_device()
        values = []
        with torch.no_grad():
            for part in batches(len(data.pred), self.batch_size):
                pred = matlab_gray(rgb_to_tensor(data.pred[part], device))
                gt = matlab_gray(rgb_to_tensor(data.gt[part], device))
                values.append(ms_ssim_luma(pred, gt).cpu().numpy())
        return frame_mean(np.concatenate(values))
