"""LPIPS and FID through bench's real asset and loading path, with checkpoints the tests create.

The real weights (torchvision AlexNet/VGG16, pytorch-fid's Inception) cannot be downloaded here. Each test
checkpoint has the real file's architecture and key layout (a randomly initialised torchvision model's state
dict, saved with torch.save) and is offered as the asset through a
mirror folder, with the catalog entry's sha256 and size set to the created file. Classifier tensors that LPIPS and
FID never read are saved as zero-stride expansions, which keeps their keys and shapes at a tiny file size.

Independent references: the ``lpips`` package's own ``LPIPS(net=...)`` and pytorch-fid's own ``InceptionV3`` and
``calculate_fid_given_paths``, which find the same checkpoints in the torch hub cache as if they had downloaded them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from scipy.ndimage import gaussian_filter

from bench import assets, pipeline, registry
from bench.assets import AssetUnavailable
from bench.contracts import BenchError, MetricInput
from bench.hashing import sha256_file
from bench.metrics import fid as fid_module
from bench.metrics.fid import GaussianStats, frechet_distance

LPIPS_VARIANTS = {"alex": "lpips@alex-v0.1", "vgg": "lpips@vgg-v0.1"}
FID_VARIANT = "fid@pytorch-fid-pool3"
TEST_WEIGHTS = ("torchvision_alexnet", "torchvision_vgg16", "pytorch_fid_inception")


def _save_like_upstream(state: dict[str, torch.Tensor], path: Path, unread_prefixes: tuple[str, ...]) -> None:
    """torch.save (legacy serialization; torch.load reads it and the zip format alike); tensors the metrics never
    read become zero-stride expansions."""
    small = {
        key: torch.zeros((), dtype=value.dtype).expand(value.shape) if key.startswith(unread_prefixes) else value
        for key, value in state.items()
    }
    torch.save(small, path, _use_new_zipfile_serialization=False)


@pytest.fixture(scope="session")
def weights_folder(tmp_path_factory) -> Path:
    """Random-init checkpoints under the upstream file names: torchvision AlexNet and VGG16, FID Inception."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    for asset_name, arch in (("torchvision_alexnet", "alexnet"), ("torchvision_vgg16", "vgg16")):
        state = getattr(torchvision.models, arch)(weights=None).state_dict()
        _save_like_upstream(state, folder / assets.get(asset_name).filename, ("classifier.",))
    # pytorch-fid's fid_inception_v3() is torchvision's Inception3 (1008 classes, no aux head) with blocks whose
    # forward differs but whose parameters are the same: its state dict has exactly these keys and shapes.
    inception = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
    for module in inception.modules():
        if isinstance(module, torch.nn.Conv2d):  # keeps activations O(1) through the un-normalised BN layers
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    _save_like_upstream(inception.state_dict(), folder / assets.get("pytorch_fid_inception").filename, ("fc.",))
    return folder


@pytest.fixture(scope="session")
def weights_identity(weights_folder) -> dict[str, tuple[str, int]]:
    """sha256 and size of each created checkpoint."""
    files = {name: weights_folder / assets.get(name).filename for name in TEST_WEIGHTS}
    return {name: (sha256_file(path), path.stat().st_size) for name, path in files.items()}


@pytest.fixture
def test_weights(monkeypatch, weights_folder, weights_identity) -> Path:
    """The created checkpoints become the catalogued assets (their sha256/size), found in a mirror folder."""
    catalog = dict(assets.catalog())
    for name, (sha256, size) in weights_identity.items():
        catalog[name] = dataclasses.replace(catalog[name], sha256=sha256, size=size)
    monkeypatch.setattr(assets, "catalog", lambda: catalog)
    monkeypatch.setenv("BENCH_ASSET_MIRROR", str(weights_folder))
    return weights_folder


@pytest.fixture
def torch_hub_cache(monkeypatch, tmp_path, weights_folder) -> Path:
    """A torch hub cache with the created checkpoints: lpips, torchvision and pytorch-fid look there first."""
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in TEST_WEIGHTS:
        filename = assets.get(name).filename
        os.symlink(weights_folder / filename, checkpoints / filename)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return checkpoints


def _frames(n=4, size=64, seed=0) -> np.ndarray:
    """Smooth, distinct RGB frames: gradients, a moving bright square, mild texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    frames = []
    for i in range(n):
        frame = np.stack([x, y, 0.5 + 0.3 * np.sin(6 * x + i)], axis=-1) * 200
        top = 4 + 5 * i % (size - 20)
        frame[top : top + 16, 10 + 3 * i : 26 + 3 * i] = 245
        frames.append(frame + rng.normal(0, 4, frame.shape))
    return np.clip(frames, 0, 255).astype(np.uint8)


def _noisy(frames: np.ndarray, sigma: float, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8)


def _blurred(frames: np.ndarray, sigma: float) -> np.ndarray:
    return np.clip(gaussian_filter(frames.astype(float), sigma=(0, sigma, sigma, 0)), 0, 255).astype(np.uint8)


def _compute(variant: str, pred: np.ndarray, gt: np.ndarray):
    """The pipeline's own path: resolve (verify, cache) the assets, construct the metric, compute."""
    return pipeline.compute_metric(registry.metrics.get(variant), MetricInput(pred=pred, gt=gt, audio=None))


def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


# ------------------------------------------------------------------------------------------------- LPIPS


@pytest.mark.filterwarnings("ignore:.*deprecated since 0.13:UserWarning")  # lpips' call into torchvision
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_the_lpips_package_loading_torchvision_weights_itself(net, test_weights, torch_hub_cache):
    import lpips

    gt = _frames()
    pred = _noisy(gt, 25)
    value = _compute(LPIPS_VARIANTS[net], pred, gt)
    reference = lpips.LPIPS(net=net, version="0.1", verbose=False)  # torchvision loads the hub-cache file
    with torch.no_grad():
        expected = reference(_to_tensor(pred), _to_tensor(gt), normalize=True).reshape(-1).double().numpy()
    np.testing.assert_allclose(value.per_frame, expected, rtol=1e-4, atol=1e-7)
    assert value.aggregate == pytest.approx(expected.mean(), rel=1e-4)
    assert value.extras["net"] == net and value.extras["frames"] == len(gt)


def test_lpips_is_zero_on_identical_frames_and_symmetric(test_weights):
    gt = _frames()
    pred = _blurred(gt, 1.0)
    assert _compute("lpips@alex-v0.1", gt, gt).aggregate == pytest.approx(0.0, abs=1e-7)
    forward = _compute("lpips@alex-v0.1", pred, gt).per_frame
    backward = _compute("lpips@alex-v0.1", gt, pred).per_frame
    assert np.all(forward > 0)
    np.testing.assert_allclose(forward, backward, rtol=1e-5)


@pytest.mark.parametrize("degrade, levels", [(_noisy, (4, 16, 48)), (_blurred, (0.5, 1.5, 4.0))])
def test_lpips_grows_with_noise_and_blur(test_weights, degrade, levels):
    gt = _frames()
    scores = [_compute("lpips@alex-v0.1", degrade(gt, level), gt).aggregate for level in levels]
    assert scores[0] < scores[1] < scores[2], scores


@pytest.mark.parametrize(
    "variant, asset", [("lpips@alex-v0.1", "torchvision_alexnet"), ("lpips@vgg-v0.1", "torchvision_vgg16")]
)
def test_lpips_without_backbone_weights_is_unavailable_naming_the_asset(variant, asset):
    spec = registry.metrics.get(variant)
    assert asset in pipeline.missing_requirement(spec)
    with pytest.raises(AssetUnavailable) as raised:
        _compute(variant, _frames(n=2), _frames(n=2))
    message = str(raised.value)
    assert asset in message and "BENCH_OFFLINE" in message and "\n" not in message


def test_lpips_rejects_a_backbone_file_of_another_architecture(weights_folder):
    from bench.metrics.lpips import NETS, build_lpips

    vgg_file = weights_folder / assets.get("torchvision_vgg16").filename
    heads = assets.fetch("lpips_alex_heads_v01")
    with pytest.raises(BenchError, match="not a torchvision alexnet state dict"):
        build_lpips(NETS["lpips@alex-v0.1"], vgg_file, heads)


def test_lpips_heads_come_from_the_installed_wheel():
    for name in ("lpips_alex_heads_v01", "lpips_vgg_heads_v01"):
        assert assets.locate(name) == "package"
        assert sha256_file(assets.fetch(name)) == assets.get(name).sha256


def test_lpips_refuses_frames_too_small_for_alexnet(test_weights):
    with pytest.raises(BenchError, match="at least 32x32"):
        _compute("lpips@alex-v0.1", _frames(n=2, size=24), _frames(n=2, size=24))


# ------------------------------------------------------------------------------------------------- FID


def test_frechet_distance_matches_the_closed_form_for_commuting_covariances():
    """Same eigenvectors: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2 (diagonal case included)."""
    rng = np.random.default_rng(0)
    dim = 24
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    a, b = rng.uniform(0.1, 3.0, dim), rng.uniform(0.1, 3.0, dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    for basis in (np.eye(dim), rotation):
        first = GaussianStats(mu1, basis @ np.diag(a) @ basis.T, n=100)
        second = GaussianStats(mu2, basis @ np.diag(b) @ basis.T, n=100)
        value, eps_offset = frechet_distance(first, second)
        assert value == pytest.approx(expected, rel=1e-9)
        assert not eps_offset


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_frechet_distance_agrees_with_pytorch_fid_on_sample_statistics():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(1)
    first = GaussianStats.of(rng.normal(0.0, 1.0, (200, 16)))
    second = GaussianStats.of(rng.normal(0.5, 2.0, (200, 16)))
    value, _ = frechet_distance(first, second)
    assert value == pytest.approx(calculate_frechet_distance(first.mu, first.sigma, second.mu, second.sigma), rel=1e-12)
    assert value == pytest.approx(frechet_distance(second, first)[0], rel=1e-6)


def test_frechet_distance_records_when_pytorch_fid_adds_its_eps_offset(monkeypatch):
    """pytorch-fid retries with 1e-6 on the diagonals when sqrtm is not finite; the metric records that it did."""
    from scipy import linalg

    real_sqrtm = linalg.sqrtm
    calls = []

    def sqrtm_failing_once(matrix, *args, **kwargs):
        calls.append(matrix)
        if len(calls) == 1:
            return np.full_like(matrix, np.nan), 0.0
        return real_sqrtm(matrix, *args, **kwargs)

    monkeypatch.setattr(linalg, "sqrtm", sqrtm_failing_once)
    first = GaussianStats(mu=np.zeros(3), sigma=np.diag([1.0, 4.0, 0.0]), n=3)
    second = GaussianStats(mu=np.ones(3), sigma=np.diag([4.0, 1.0, 0.0]), n=3)
    value, eps_offset = frechet_distance(first, second)
    assert eps_offset and len(calls) == 2
    assert value == pytest.approx(3.0 + 1.0 + 1.0, abs=1e-5)  # |mu|^2 + (1-2)^2 + (2-1)^2
    assert frechet_distance(first, second) == (pytest.approx(5.0, abs=1e-9), False)


def test_fid_needs_two_frames_per_set():
    with pytest.raises(BenchError, match="at least 2 frames"):
        GaussianStats.of(np.zeros((1, 8)))


def test_fid_features_and_statistics_match_pytorch_fids_own_pipeline(test_weights, torch_hub_cache, tmp_path):
    """pytorch-fid builds its InceptionV3 itself (weights from the hub cache) and reads PNGs of the frames."""
    from pytorch_fid.fid_score import compute_statistics_of_path
    from pytorch_fid.inception import InceptionV3

    frames = _frames(n=5)
    folder = tmp_path / "png"
    folder.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:03d}.png")
    reference_model = InceptionV3([3]).eval()
    mu, sigma = compute_statistics_of_path(str(folder), reference_model, 5, 2048, "cpu", num_workers=0)

    spec = registry.metrics.get(FID_VARIANT)
    metric = registry.load_object(spec.impl)(spec, pipeline.resolve_assets(spec))
    model = fid_module.build_inception(metric.assets["pytorch_fid_inception"])
    features = metric.features(model, frames)
    assert features.shape == (5, 2048) and np.isfinite(features).all() and features.std() > 0
    stats = GaussianStats.of(features)
    np.testing.assert_allclose(stats.mu, mu, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-3, atol=1e-6 * np.abs(sigma).max())


def test_fid_gt_statistics_are_cached_per_content_and_written_atomically(test_weights, bench_home):
    spec = registry.metrics.get(FID_VARIANT)
    metric = registry.load_object(spec.impl)(spec, pipeline.resolve_assets(spec))
    model = fid_module.build_inception(metric.assets["pytorch_fid_inception"])
    gt = _frames(n=3)
    first = metric.reference_stats(lambda: model, gt)
    second = metric.reference_stats(lambda: pytest.fail("a cache hit needs no model"), np.array(gt))  # same content
    assert (first.cache_hit, second.cache_hit) == (False, True)
    np.testing.assert_array_equal(first.stats.sigma, second.stats.sigma)
    assert second.self_split == first.self_split and second.self_split_eps_offset == first.self_split_eps_offset
    stored = list((bench_home / "fid_stats").rglob("*"))
    files = [path for path in stored if path.is_file()]
    assert [path.name for path in files] == [f"{fid_module.frames_sha256(gt)}.npz"]
    with np.load(files[0]) as npz:  # pytorch-fid's own stats format: mu, sigma
        np.testing.assert_array_equal(npz["mu"], first.stats.mu)
    changed = gt.copy()
    changed[0, 0, 0, 0] ^= 1
    assert metric.reference_stats(lambda: model, changed).cache_hit is False
    files[0].write_bytes(b"truncated")  # a damaged cache file is recomputed, not trusted
    assert metric.reference_stats(lambda: model, gt).cache_hit is False


def test_fid_of_the_ground_truth_is_its_self_split_and_copies_score_near_zero(test_weights):
    gt = _frames(n=6)
    value = _compute(FID_VARIANT, gt, gt)
    assert value.per_frame is None
    extras = value.extras
    assert (extras["frames_pred"], extras["frames_gt"], extras["feature_dim"]) == (6, 6, 2048)
    assert extras["gt_stats_cache_hit"] is False and "bilinear" in extras["resize"]
    spec = registry.metrics.get(FID_VARIANT)
    metric = registry.load_object(spec.impl)(spec, pipeline.resolve_assets(spec))
    features = metric.features(fid_module.build_inception(metric.assets["pytorch_fid_inception"]), gt)
    halves = [fid_module.GaussianStats.of(features[:3]), fid_module.GaussianStats.of(features[3:])]
    assert extras["ground_truth_row"] and extras["gt_self_split_frames"] == 3
    expected, eps_offset = fid_module.frechet_distance(*halves)
    assert value.aggregate == extras["gt_self_split"] == pytest.approx(expected)
    assert extras["eps_offset_added"] is eps_offset
    assert value.aggregate > 0

    copy = gt.copy()
    copy[0, 0, 0, 0] ^= 1  # not byte-identical: an ordinary prediction, FID near 0 against the GT
    near = _compute(FID_VARIANT, copy, gt)
    assert not near.extras["ground_truth_row"] and near.aggregate == pytest.approx(0.0, abs=1e-2)
    assert near.extras["gt_stats_cache_hit"] and near.extras["gt_self_split"] == extras["gt_self_split"]


def test_fid_without_inception_weights_is_unavailable_naming_the_asset():
    spec = registry.metrics.get(FID_VARIANT)
    assert "pytorch_fid_inception" in pipeline.missing_requirement(spec)
    with pytest.raises(AssetUnavailable) as raised:
        _compute(FID_VARIANT, _frames(n=2), _frames(n=2))
    assert "pytorch_fid_inception" in str(raised.value) and "\n" not in str(raised.value)


def test_fid_rejects_a_weights_file_of_another_architecture(weights_folder):
    with pytest.raises(BenchError, match="not pytorch-fid's FID Inception state dict"):
        fid_module.build_inception(weights_folder / assets.get("torchvision_alexnet").filename)


def test_fid_asset_is_the_file_pytorch_fid_downloads():
    from pytorch_fid.inception import FID_WEIGHTS_URL

    assert assets.get("pytorch_fid_inception").url == FID_WEIGHTS_URL


@pytest.mark.slow
def test_fid_matches_pytorch_fid_calculate_fid_given_paths(test_weights, torch_hub_cache, tmp_path):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    gt = _frames(n=6)
    pred = _blurred(_noisy(gt, 10), 1.0)
    folders = {}
    for name, frames in (("pred", pred), ("gt", gt)):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(folders[name] / f"{index:03d}.png")
    expected = calculate_fid_given_paths([str(folders["pred"]), str(folders["gt"])], 6, "cpu", 2048, num_workers=0)
    assert _compute(FID_VARIANT, pred, gt).aggregate == pytest.approx(expected, rel=1e-3)


@pytest.mark.slow
def test_fid_is_symmetric_and_grows_with_noise(test_weights):
    gt = _frames(n=6)
    scores = [_compute(FID_VARIANT, _noisy(gt, sigma), gt).aggregate for sigma in (4, 16, 48)]
    assert scores[0] < scores[1] < scores[2], scores
    noisy = _noisy(gt, 16)
    assert _compute(FID_VARIANT, gt, noisy).aggregate == pytest.approx(scores[1], rel=1e-3)
