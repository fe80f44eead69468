"""MS-SSIM on MATLAB luma (metrics/ms_ssim_y.py): the official TID2013 values, SSIM at one scale against
scikit-image, the luma against scikit-image's YIQ, MATLAB's box downsampling on odd sizes, and basic properties."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from skimage.color import rgb2yiq
from skimage.metrics import structural_similarity

from bench import assets, registry
from bench.contracts import BenchError, MetricInput
from bench.metrics import ms_ssim_y

VARIANT = "ms_ssim@y-matlab"
TID_IMAGES = ("I03", "I04", "I06")


def _metric():
    spec = registry.metrics.get(VARIANT)
    return registry.load_object(spec.impl)(spec, {})


def _frames(seed: int = 0, n: int = 3, size: int = 180, noise: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth-ish random frames and a noisy copy (uint8, (n, size, size, 3))."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (n, size, size, 3)).astype(float) * 0.3
    gt = np.clip(texture + np.linspace(0, 170, size)[None, None, :, None], 0, 255).astype(np.uint8)
    pred = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def _image(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(assets.fetch(name)) as image:
        return np.asarray(image.convert("RGB"))


def _official_values() -> dict[str, dict[str, float]]:
    with open(assets.fetch("tid2013_official_values"), newline="", encoding="utf-8") as file:
        return {row["Method"]: {k.removesuffix(".bmp"): float(v) for k, v in row.items() if k != "Method"}
                for row in csv.DictReader(file)}


def _luma(frames: np.ndarray) -> np.ndarray:
    return ms_ssim_y.matlab_gray(frames)


def _window() -> np.ndarray:
    return ms_ssim_y.gaussian_window()


# ---------------------------------------------------------------------------------------------------
# Calibration


def test_calibration_against_official_tid2013_values(mirror):
    """The official MS-SSIM (Wang's msssim.m on rgb2gray) and, through the same luma and single-scale code, the
    official SSIM. pyiqa's own MS-SSIM gives 0.6707/0.9996/0.9998 here; measured for bench: MS-SSIM
    0.66998/0.99963/0.99982 (I03 0.0033 under the official 0.6733), SSIM 0.69934/0.99775/0.99891."""
    official = _official_values()
    dist = np.stack([_image(f"tid2013_dist_{name}") for name in TID_IMAGES])
    ref = np.stack([_image(f"tid2013_ref_{name}") for name in TID_IMAGES])
    ms_ssim = _metric().compute(MetricInput(pred=dist, gt=ref, audio=None)).per_frame
    ssim, _ = ms_ssim_y.ssim_and_cs(_luma(dist), _luma(ref), _window())
    print(f"\n{VARIANT} vs official TID2013 values (distorted against reference)")
    print(f"{'image':<6} {'row':<8} {'official':>10} {'bench':>10} {'diff':>9}")
    for row, ours in (("ms_ssim", ms_ssim), ("ssim", ssim)):
        for name, value in zip(TID_IMAGES, ours):
            print(f"{name:<6} {row:<8} {official[row][name]:10.4f} {value:10.5f} {value - official[row][name]:9.5f}")
    np.testing.assert_allclose(ms_ssim, [official["ms_ssim"][name] for name in TID_IMAGES], rtol=0, atol=5e-3)
    np.testing.assert_allclose(ms_ssim[1:], [official["ms_ssim"][name] for name in TID_IMAGES[1:]], rtol=0, atol=1e-4)
    np.testing.assert_allclose(ssim, [official["ssim"][name] for name in TID_IMAGES], rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Building blocks against independent references


def test_single_scale_ssim_matches_skimage():
    """ssim_index_new.m's mean SSIM equals scikit-image's Gaussian SSIM with the same options (its mean is
    taken over the same 'valid' region)."""
    pred, gt = _frames(n=2, size=64)
    ours, _ = ms_ssim_y.ssim_and_cs(_luma(pred), _luma(gt), _window())
    expected = [
        structural_similarity(
            p, g, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, K1=0.01, K2=0.03
        )
        for p, g in zip(_luma(pred), _luma(gt))
    ]
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


def test_luma_matches_skimage_yiq():
    """MATLAB rgb2gray's weights differ from YIQ's 0.299/0.587/0.114 by under 1e-4: the rounded luma agrees with
    scikit-image's rounded Y almost everywhere, never by more than 1."""
    _, frames = _frames(n=2, size=64)
    ours = _luma(frames)
    expected = np.floor(rgb2yiq(frames)[..., 0] * 255 + 0.5)
    difference = np.abs(ours - expected)
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.01


def test_box_downsample_follows_matlab_on_odd_sizes():
    """imfilter(x, ones(2)/4, 'symmetric', 'same') then x(1:2:end, 1:2:end), written out for a 3x5 image."""
    image = np.arange(15, dtype=np.float64).reshape(1, 3, 5) ** 1.5
    x = image[0]
    padded = np.pad(x, ((0, 1), (0, 1)), mode="symmetric")
    filtered = (padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:]) / 4
    np.testing.assert_allclose(ms_ssim_y.box_downsample(image)[0], filtered[::2, ::2], rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# Properties of the registered metric


def test_identical_frames_score_one():
    _, gt = _frames()
    value = _metric().compute(MetricInput(pred=gt, gt=gt, audio=None))
    np.testing.assert_allclose(value.per_frame, 1.0, rtol=0, atol=1e-12)


def test_falls_as_noise_grows():
    scores = [
        _metric().compute(MetricInput(pred=_frames(noise=noise)[0], gt=_frames(noise=noise)[1], audio=None)).aggregate
        for noise in (5.0, 15.0, 40.0)
    ]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_batches_do_not_change_per_frame_values():
    pred, gt = _frames(n=5)
    metric = _metric()
    together = metric.compute(MetricInput(pred=pred, gt=gt, audio=None)).per_frame
    one_by_one = [metric.compute(MetricInput(pred=pred[i : i + 1], gt=gt[i : i + 1], audio=None)).aggregate
                  for i in range(len(pred))]
    np.testing.assert_allclose(together, one_by_one, rtol=1e-12)


def test_refuses_frames_smaller_than_five_scales_allow():
    pred, gt = _frames(n=1, size=ms_ssim_y.MIN_SIDE - 1)
    with pytest.raises(BenchError, match="176"):
        _metric().compute(MetricInput(pred=pred, gt=gt, audio=None))
