"""Uncertainty of per-frame means: circular block bootstrap intervals and a paired block-bootstrap test.

Neighbouring video frames are strongly correlated (a mouth shape or a blur lasts several frames), so resampling
single frames as if they were independent gives intervals that are too narrow. bench resamples blocks of
consecutive frames instead: the circular block bootstrap of Politis & Romano (1992), which wraps the series into a
circle so that every frame is equally likely to be drawn.

Block length rule (``block_length``): 25 frames, one second at bench's 25 fps (longer than a syllable or a
blink, the time scale over which per-frame scores stay correlated); for series shorter than 250 frames it drops to
``max(1, n // 10)`` so that every resample still joins at least ten blocks (fewer blocks make the
spread of the resampled means too noisy and the interval too narrow).

Intervals are percentile intervals over ``resamples`` bootstrap means (default 2000), drawn from a seeded
``numpy.random.default_rng``: the same values and seed always give the same interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FRAMES_PER_BLOCK = 25
MIN_BLOCKS = 10
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0
CONFIDENCE = 0.95


def block_length(n: int) -> int:
    """Frames per bootstrap block for a series of ``n`` frames (see the module docstring for the rule)."""
    if n < FRAMES_PER_BLOCK * MIN_BLOCKS:
        return max(1, n // MIN_BLOCKS)
    return FRAMES_PER_BLOCK


def circular_block_means(values: np.ndarray, block: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``resamples`` circular block-bootstrap resamples of the 1-D series ``values``.

    Each resample joins ``ceil(n / block)`` blocks of ``block`` consecutive frames (indices taken modulo n)
    starting at uniformly drawn frames, cut to n frames. Computed from block sums, so memory and time grow with
    the number of blocks, not with ``resamples * n``.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    blocks = math.ceil(n / block)
    last = n - (blocks - 1) * block  # frames taken from the final, possibly partial, block
    wrapped = np.concatenate([[0.0], np.cumsum(np.concatenate([values, values[:block]]))])
    starts = np.arange(n)
    full_sums = wrapped[starts + block] - wrapped[starts]
    last_sums = wrapped[starts + last] - wrapped[starts]
    draws = rng.integers(0, n, size=(resamples, blocks))
    totals = full_sums[draws[:, :-1]].sum(axis=1) + last_sums[draws[:, -1]]
    return totals / n


@dataclass(frozen=True)
class Interval:
    """A mean over frames with its bootstrap interval; ``frames`` counts the frames that had a value."""

    mean: float
    low: float
    high: float
    frames: int
    block: int
    resamples: int
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _scored(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[~np.isnan(values)]


def mean_interval(
    values: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED, confidence: float = CONFIDENCE
) -> Interval | None:
    """Percentile block-bootstrap interval of the mean of the scored (non-NaN) frames.

    None when fewer than two frames have a value or any value is infinite (an infinite mean, e.g. PSNR of
    identical frames, has no interval).
    """
    scored = _scored(values)
    if scored.size < 2 or not np.isfinite(scored).all():
        return None
    block = block_length(scored.size)
    means = circular_block_means(scored, block, resamples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(scored.mean()), float(low), float(high), int(scored.size), block, resamples, confidence)


@dataclass(frozen=True)
class PairedTest:
    """Mean of ``a - b`` over frames both scored, its bootstrap interval and a two-sided p-value."""

    difference: Interval
    p_value: float

    @property
    def significant(self) -> bool:
        """True when the interval of the difference excludes zero."""
        return self.difference.low > 0 or self.difference.high < 0


def paired_test(
    a: np.ndarray, b: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> PairedTest | None:
    """Paired circular block bootstrap of the mean frame-wise difference ``a - b``.

    ``a`` and ``b`` are per-frame values of two methods on the same subject, audio and track: frame i of one is
    frame i of the other. Series of different lengths are compared on their common first frames (bench truncates
    renders to the shorter sequence the same way); frames where either is NaN are left out. The p-value is the
    share of centred bootstrap differences at least as far from zero as the observed one (``(1 + count) /
    (1 + resamples)``). None when fewer than two frames are shared or a value is infinite.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    common = min(a.size, b.size)
    a, b = a[:common], b[:common]
    both = ~(np.isnan(a) | np.isnan(b))
    differences = a[both] - b[both]
    if differences.size < 2 or not np.isfinite(differences).all():
        return None
    block = block_length(differences.size)
    means = circular_block_means(differences, block, resamples, np.random.default_rng(seed))
    observed = float(differences.mean())
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    extreme = int(np.count_nonzero(np.abs(means - observed) >= abs(observed)))
    interval = Interval(observed, float(low), float(high), int(differences.size), block, resamples, confidence)
    return PairedTest(interval, (1 + extreme) / (1 + resamples))
