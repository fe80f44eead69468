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
        requires=("scipy",),
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


def matlab_gray(frames: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) RGB -> (N, H, W) float64 luma as MATLAB's rgb2gray gives for uint8 (rounded)."""
    return np.floor(frames.astype(np.float64) @ np.array(RGB2GRAY) + 0.5)


def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """MATLAB fspecial('gaussian', size, sigma): normalised, tiny values below eps * max set to 0."""
    half = (size - 1) / 2
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    window = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    window[window < np.finfo(window.dtype).eps * window.max()] = 0
    return window / window.sum()


def _filter_valid(images: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """'valid' 2-D filtering of (..., H, W) with the separable window ``outer(taps, taps)``."""
    from scipy import ndimage

    half = len(taps) // 2
    rows = ndimage.correlate1d(images, taps, axis=-2, mode="constant")[..., half:-half, :]
    return ndimage.correlate1d(rows, taps, axis=-1, mode="constant")[..., half:-half]


def ssim_and_cs(x: np.ndarray, y: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean SSIM and mean contrast-structure term (ssim_index_new.m), 'valid' filtering.

    ``x``, ``y``: (N, H, W) float64 in 0..255; ``window``: the (k, k) Gaussian. The Gaussian is separable (no tap
    falls under MATLAB's eps cut-off), so rows and columns are filtered in turn. Returns two (N,) arrays.
    """
    taps = window.sum(axis=1)
    c1, c2 = (K1 * PEAK) ** 2, (K2 * PEAK) ** 2
    mu_x, mu_y, e_xx, e_yy, e_xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), taps)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs_map = (2 * (e_xy - mu_xy) + c2) / ((e_xx - mu_xx) + (e_yy - mu_yy) + c2)
    ssim_map = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs_map
    return ssim_map.mean(axis=(1, 2)), cs_map.mean(axis=(1, 2))


def box_downsample(images: np.ndarray) -> np.ndarray:
    """imfilter(img, ones(2)/4, 'symmetric', 'same') then img(1:2:end, 1:2:end): 2x2 means, an odd last
    row/column kept as is (its symmetric neighbour is itself)."""
    height, width = images.shape[-2:]
    if height % 2 or width % 2:
        images = np.pad(images, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    n, h, w = images.shape
    return images.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def ms_ssim_luma(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MS-SSIM of (N, H, W) float64 luma batches in 0..255 (msssim.m, method 'product'); (N,) array."""
    window = gaussian_window()
    weights = np.array(SCALE_WEIGHTS)
    contrast_structure = []
    for scale in range(len(SCALE_WEIGHTS)):
        ssim, cs = ssim_and_cs(x, y, window)
        contrast_structure.append(cs)
        if scale < len(SCALE_WEIGHTS) - 1:
            x, y = box_downsample(x), box_downsample(y)
    cs = np.stack(contrast_structure[:-1])
    return np.prod(cs ** weights[:-1, None], axis=0) * ssim ** weights[-1]


class MatlabLumaMultiScaleSSIM(Metric):
    batch_size = 4

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import batches, frame_mean, require_min_side

        require_min_side("MS-SSIM", data.pred, MIN_SIDE)
        values = [
            ms_ssim_luma(matlab_gray(data.pred[part]), matlab_gray(data.gt[part]))
            for part in batches(len(data.pred), self.batch_size)
        ]
        return frame_mean(np.concatenate(values))
