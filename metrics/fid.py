"""FID as Wav2Lip-era papers compute it with pytorch-fid: Inception-v3 pool3 (2048-d) features of every frame of
the ground truth and of the prediction, a Gaussian (mean, covariance) fitted to each set, and the Fréchet
distance between the two (``pytorch_fid.fid_score.calculate_frechet_distance``). Lower is better.

- Network: pytorch-fid's ``InceptionV3([3])`` (the FID variant of the TF 2015-12-05 Inception), built by
  pytorch-fid's own code; its ``fid_inception_v3()`` would download the weights, so the download call is pointed at
  the asset file (strict ``load_state_dict``, nothing fetched).
- Input: the uint8 RGB frames as given (decoded once by bench), scaled to [0, 1]; ``InceptionV3`` resizes them to
  299x299 with ``F.interpolate(mode='bilinear', align_corners=False)`` (no antialiasing) and maps them to [-1, 1].
  FID moves with the decoder and the resize filter (clean-fid documents this), so both are fixed here.
- Statistics: mean and ``np.cov(rowvar=False)`` of the float64 features, as pytorch-fid's
  ``calculate_activation_statistics``. The ground truth's are cached per GT content (sha256 of the frame bytes and
  shape) and per weights file under ``$BENCH_HOME/fid_stats`` as pytorch-fid-compatible ``.npz`` (``mu``, ``sigma``).
- Ground-truth row (self-split): FID of a set against itself is 0, which says nothing, so when the prediction *is*
  the ground truth (same frame bytes) the value is the FID between the first and second half of the GT frames: the
  floor that sampling alone gives at N/2 frames. Every result also records it in ``extras["gt_self_split"]``.
- Small N: with fewer frames than feature dimensions (2048) the covariances are singular; pytorch-fid then adds
  1e-6 to their diagonals when the matrix square root is not finite. FID is biased upward at small N (it falls as
  N grows), so only compare FIDs computed over the same number of frames; ``extras`` records N and whether the
  offset was used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.contracts import BenchError, Metric, MetricInput, MetricKind, MetricSpec, MetricValue

if TYPE_CHECKING:
    import torch

INCEPTION_ASSET = "pytorch_fid_inception"
FEATURE_DIM = 2048
_UNREADABLE_NPZ = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)  # a damaged cache file
RESIZE_RULE = "pytorch-fid InceptionV3(resize_input=True): F.interpolate to 299x299, bilinear, align_corners=False"

SPECS = (
    MetricSpec(
        id="fid",
        variant="fid@pytorch-fid-pool3",
        impl="bench.metrics.fid:PytorchFidPool3",
        higher_is_better=False,
        kind=MetricKind.FULL_REFERENCE,
        description="FID of predicted vs GT frame sets: pytorch-fid Inception pool3 (2048-d), bilinear resize to 299",
        assets=(INCEPTION_ASSET,),
        requires=("torch", "pytorch_fid", "scipy"),
        ground_truth_row=True,
    ),
)


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a set of feature vectors, and how many vectors they came from."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def of(cls, features: np.ndarray) -> GaussianStats:
        if len(features) < 2:
            raise BenchError(f"FID needs at least 2 frames per set for a covariance; got {len(features)}")
        return cls(mu=np.mean(features, axis=0), sigma=np.cov(features, rowvar=False), n=len(features))


def frechet_distance(a: GaussianStats, b: GaussianStats) -> tuple[float, bool]:
    """pytorch-fid's Fréchet distance and whether it had to add its eps offset to singular covariances.

    Its note on the offset (printed) becomes the flag; SciPy's warnings on singular input, which small-N sets always
    raise, and on pytorch-fid's deprecated ``disp`` argument are silenced.
    """
    import warnings

    from pytorch_fid.fid_score import calculate_frechet_distance
    from scipy.linalg import LinAlgWarning

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), warnings.catch_warnings():
            warnings.simplefilter("ignore", LinAlgWarning)
            warnings.filterwarnings("ignore", message="The `disp` argument is deprecated", category=DeprecationWarning)
            value = calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    except ValueError as error:  # pytorch-fid: a large imaginary part in sqrtm(sigma_a @ sigma_b)
        raise BenchError(f"FID undefined for these sets ({error}); N = {a.n} and {b.n} frames") from error
    return float(value), "singular product" in printed.getvalue()


def frames_sha256(frames: np.ndarray) -> str:
    """sha256 of the frames' shape, dtype and bytes, read a chunk at a time (frames may be a memmap)."""
    from bench.metrics._frames import batches

    digest = hashlib.sha256(f"{frames.shape}|{frames.dtype}".encode())
    for part in batches(len(frames), 32):
        digest.update(np.ascontiguousarray(frames[part]))
    return digest.hexdigest()


def build_inception(weights: Path) -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3([3])`` with the FID weights loaded from ``weights`` instead of downloaded."""
    from unittest import mock

    import torch
    from pytorch_fid import inception

    def load_local(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        if url != inception.FID_WEIGHTS_URL:
            raise BenchError(f"pytorch-fid asks for {url}, not the FID Inception weights bench pins")
        return torch.load(weights, map_location="cpu", weights_only=True)

    try:
        with mock.patch.object(inception, "load_state_dict_from_url", load_local):
            model = inception.InceptionV3([inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    except RuntimeError as error:  # strict load_state_dict: missing, unexpected or misshapen tensors
        reason = str(error).splitlines()[0]
        raise BenchError(f"{weights}: not pytorch-fid's FID Inception state dict ({reason})") from error
    return model.eval()


@dataclass(frozen=True)
class GroundTruthStats:
    """The GT's statistics, its self-split FID (None under 4 frames) and whether that needed pytorch-fid's eps
    offset, and whether they came from the cache."""

    stats: GaussianStats
    self_split: float | None
    self_split_eps_offset: bool
    cache_hit: bool


class PytorchFidPool3(Metric):
    batch_size = 16

    def stats_cache_path(self, gt_sha256: str) -> Path:
        """Where the GT statistics for these frames and these weights live."""
        from bench import assets, home

        weights_sha256 = assets.get(INCEPTION_ASSET).sha256
        return home.bench_home() / "fid_stats" / f"pytorch-fid-pool3-{weights_sha256[:16]}" / f"{gt_sha256}.npz"

    def features(self, model: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
        """Pool3 features (N, 2048), float64, of uint8 RGB frames (N, H, W, 3)."""
        import torch

        from bench.metrics._frames import batches, unit_tensor

        device = next(model.parameters()).device
        out = np.empty((len(frames), FEATURE_DIM))
        with torch.no_grad():
            for part in batches(len(frames), self.batch_size):
                batch = unit_tensor(frames[part], device)
                out[part] = model(batch)[0].reshape(-1, FEATURE_DIM).cpu().numpy()
        return out

    def reference_stats(self, model: Callable[[], torch.nn.Module], gt: np.ndarray, gt_sha256: str | None = None
                        ) -> GroundTruthStats:
        """The GT's statistics from the cache, or computed and cached (written atomically). ``model`` gives the
        Inception network, asked for only on a cache miss; ``gt_sha256`` is ``frames_sha256(gt)`` when the caller
        has it."""
        path = self.stats_cache_path(gt_sha256 or frames_sha256(gt))
        if path.is_file():
            with contextlib.suppress(*_UNREADABLE_NPZ), np.load(path) as stored:
                stats = GaussianStats(mu=stored["mu"], sigma=stored["sigma"], n=int(stored["n"]))
                self_split = float(stored["self_split"])
                if stats.mu.shape == (FEATURE_DIM,) and stats.sigma.shape == (FEATURE_DIM, FEATURE_DIM):
                    split = None if np.isnan(self_split) else self_split
                    return GroundTruthStats(stats, split, bool(stored["self_split_eps_offset"]), True)
        features = self.features(model(), gt)
        stats = GaussianStats.of(features)
        half = len(features) // 2
        self_split, eps_offset = None, False
        if half >= 2:
            self_split, eps_offset = frechet_distance(GaussianStats.of(features[:half]),
                                                      GaussianStats.of(features[half:2 * half]))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        with partial.open("wb") as file:
            np.savez(file, mu=stats.mu, sigma=stats.sigma, n=stats.n, self_split_eps_offset=eps_offset,
                     self_split=np.nan if self_split is None else self_split)
        os.replace(partial, path)
        return GroundTruthStats(stats, self_split, eps_offset, False)

    def compute(self, data: MetricInput) -> MetricValue:
        from bench.metrics._frames import torch_device

        if len(data.pred) < 2 or len(data.gt) < 2:
            raise BenchError(f"FID needs at least 2 frames per set; got {len(data.pred)} predicted, {len(data.gt)} GT")
        model = cache(lambda: build_inception(self.assets[INCEPTION_ASSET]).to(torch_device()))  # loaded when needed
        gt_sha256 = frames_sha256(data.gt)
        reference = self.reference_stats(model, data.gt, gt_sha256)
        gt_stats, self_split = reference.stats, reference.self_split
        ground_truth_row = frames_sha256(data.pred) == gt_sha256
        if ground_truth_row and self_split is None:
            raise BenchError(f"the ground truth's self-split FID needs at least 4 frames; got {len(data.gt)}")
        if ground_truth_row:  # the prediction is the GT: its statistics are the GT's, and its value the self-split
            pred_stats, value, eps_offset = gt_stats, self_split, reference.self_split_eps_offset
        else:
            pred_stats = GaussianStats.of(self.features(model(), data.pred))
            value, eps_offset = frechet_distance(pred_stats, gt_stats)
        return MetricValue(
            aggregate=value,
            per_frame=None,
            extras={
                "ground_truth_row": ground_truth_row,
                "gt_self_split": self_split,
                "gt_self_split_frames": len(data.gt) // 2,
                "frames_pred": pred_stats.n,
                "frames_gt": gt_stats.n,
                "feature_dim": FEATURE_DIM,
                "gt_stats_cache_hit": reference.cache_hit,
                "eps_offset_added": eps_offset,
                "resize": RESIZE_RULE,
                "small_n_bias": "N < 2048: covariances are singular and FID is biased upward; compare only equal N",
            },
        )
