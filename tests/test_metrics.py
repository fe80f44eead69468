"""PSNR and MS-SSIM against independent references (scikit-image, pytorch_msssim)."""

import numpy as np
import pytest
import torch
from pytorch_msssim import ms_ssim as reference_ms_ssim
from skimage.metrics import peak_signal_noise_ratio

from bench import registry
from bench.contracts import BenchError, MetricInput


def _metric(variant):
    spec = registry.metrics.get(variant)
    return registry.load_object(spec.impl)(spec, {})


def _frames(seed=0, n=6, size=192, noise=20):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    gt = np.clip(gt.astype(float) * 0.2 + np.linspace(0, 200, size)[None, None, :, None], 0, 255).astype(np.uint8)
    pred = np.clip(gt + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
    return pred, gt


def test_psnr_matches_skimage_per_frame():
    pred, gt = _frames()
    value = _metric("psnr@frame-mean").compute(MetricInput(pred=pred, gt=gt, audio=None))
    expected = [peak_signal_noise_ratio(g / 255.0, p / 255.0, data_range=1.0) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(value.per_frame, expected, rtol=1e-12)
    assert value.aggregate == pytest.approx(np.mean(expected), rel=1e-12)


def test_psnr_of_identical_frames_is_inf_and_counted():
    pred, gt = _frames(n=3)
    pred[1] = gt[1]
    value = _metric("psnr@frame-mean").compute(MetricInput(pred=pred, gt=gt, audio=None))
    assert np.isinf(value.per_frame[1]) and np.isinf(value.aggregate)
    assert value.extras["identical_frames"] == 1


def test_ms_ssim_matches_pytorch_msssim():
    pred, gt = _frames(noise=30)
    value = _metric("ms_ssim@rgb").compute(MetricInput(pred=pred, gt=gt, audio=None))
    to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).double() / 255.0  # noqa: E731
    expected = reference_ms_ssim(to_tensor(pred), to_tensor(gt), data_range=1.0, size_average=False).numpy()
    np.testing.assert_allclose(value.per_frame, expected, atol=1e-5)
    assert 0.0 < value.aggregate < 1.0


def test_ms_ssim_is_one_on_identical_frames_and_falls_with_noise():
    pred, gt = _frames(noise=5)
    noisier, _ = _frames(noise=40)
    metric = _metric("ms_ssim@rgb")
    assert metric.compute(MetricInput(pred=gt, gt=gt, audio=None)).aggregate == pytest.approx(1.0, abs=1e-6)
    assert metric.compute(MetricInput(pred=pred, gt=gt, audio=None)).aggregate > metric.compute(
        MetricInput(pred=noisier, gt=gt, audio=None)
    ).aggregate


def test_ms_ssim_refuses_small_frames():
    pred, gt = _frames(size=128)
    with pytest.raises(BenchError, match="at least 161"):
        _metric("ms_ssim@rgb").compute(MetricInput(pred=pred, gt=gt, audio=None))


def test_psnr_calibration_on_tid2013(mirror):
    import csv

    from PIL import Image

    from bench import assets

    with open(assets.fetch("tid2013_official_values"), newline="") as handle:
        official = {row["Method"]: row for row in csv.DictReader(handle)}["psnr"]
    for image in ("I03", "I04", "I06"):
        ref, dist = (
            np.asarray(Image.open(assets.fetch(f"tid2013_{kind}_{image}")).convert("RGB"))[None]
            for kind in ("ref", "dist")
        )
        value = _metric("psnr@frame-mean").compute(MetricInput(pred=dist, gt=ref, audio=None)).aggregate
        print(f"psnr {image}: official {official[f'{image}.bmp']}, bench {value:.4f}")
        assert value == pytest.approx(float(official[f"{image}.bmp"]), abs=1e-2)
