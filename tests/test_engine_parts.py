"""Engine parts: torch-ngp's 3-D hash grid (fast path vs per-corner reference, layout, gradients), AD-NeRF's
positional-encoding head field and ER-NeRF's region attention."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.methods.engine.hashgrid import HashGridConfig
from bench.methods.engine.hashgrid3d import DEFAULT_CONFIG, RAD_NERF_CONFIG, HashGrid3D, reference_encode
from bench.methods.engine.pe_field import PositionalEncodingField
from bench.methods.engine.region_attention import RegionAttention

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# Level 0 dense (5^3 = 125 vertices in a 128-row table), levels 1-3 hashed into 512 rows.
TINY = HashGridConfig(num_levels=4, level_dim=2, base_resolution=4, desired_resolution=32, log2_hashmap_size=9)


def ngp_layout(config: HashGridConfig, align_corners: bool = False) -> list[int]:
    """torch-ngp GridEncoder.__init__ for input_dim=3, written out independently."""
    growth = math.exp2(math.log2(config.desired_resolution / config.base_resolution) / (config.num_levels - 1))
    offsets = [0]
    for level in range(config.num_levels):
        resolution = math.ceil(config.base_resolution * growth**level)
        rows = min(2**config.log2_hashmap_size, (resolution if align_corners else resolution + 1) ** 3)
        offsets.append(offsets[-1] + math.ceil(rows / 8) * 8)
    return offsets


def points(count: int, bound: float, seed: int) -> torch.Tensor:
    """Random points in [-1.5 bound, 1.5 bound]^3 (about 30% inside the cube), plus the cube's corners and centre."""
    generator = torch.Generator().manual_seed(seed)
    random = (torch.rand(count, 3, generator=generator) * 3 - 1.5) * bound
    special = torch.tensor([[-1, -1, -1], [1, 1, 1], [1, -1, 1], [0, 0, 0]], dtype=torch.float32) * bound
    return torch.cat([random, special])


@pytest.mark.parametrize("align_corners", [False, True])
def test_hashgrid3d_matches_reference(align_corners: bool) -> None:
    torch.manual_seed(0)
    grid = HashGrid3D(TINY, bound=1.5, align_corners=align_corners)
    dense_levels = 2 if align_corners else 1  # level 1: 8^3 vertices fit 512 rows only with align_corners
    assert grid.level_hashed.view(-1).tolist() == [False] * dense_levels + [True] * (4 - dense_levels)
    with torch.no_grad():
        grid.embeddings.normal_()
    x = points(3000, 1.5, seed=1)
    fast = grid(x)
    reference = reference_encode(grid, x)
    assert fast.shape == (len(x), TINY.num_levels * TINY.level_dim) and fast.dtype == torch.float32
    assert (fast.double() - reference).abs().max().item() < 1e-5
    outside = (x.abs() > 1.5).any(dim=-1)
    assert 500 < int(outside.sum()) < len(x) - 500
    assert torch.all(fast[outside] == 0)
    assert torch.all(fast[~outside].abs().sum(dim=-1) > 0)
    assert grid(x[:200].view(4, 50, 3)).shape == (4, 50, 8)  # batch dimensions are kept


def test_hashgrid3d_layout_matches_torch_ngp() -> None:
    grid = HashGrid3D()
    assert DEFAULT_CONFIG.num_levels == 16 and DEFAULT_CONFIG.level_dim == 2 and DEFAULT_CONFIG.base_resolution == 16
    assert DEFAULT_CONFIG.log2_hashmap_size == 19 and grid.output_dim == 32
    expected = ngp_layout(DEFAULT_CONFIG)
    assert grid.offsets.dtype == torch.int32 and grid.offsets.tolist() == expected
    assert expected[:4] == [0, 4920, 40864, 315496]  # 17^3, 33^3, 65^3 vertices, then 2^19-row hashed tables
    assert tuple(grid.embeddings.shape) == (expected[-1], 2)
    assert set(grid.state_dict()) == {"embeddings", "offsets"}
    assert grid.level_hashed.view(-1).tolist() == [False] * 3 + [True] * 13
    assert HashGrid3D(RAD_NERF_CONFIG).offsets.tolist() == ngp_layout(RAD_NERF_CONFIG)
    assert HashGrid3D(TINY, align_corners=True).offsets.tolist() == ngp_layout(TINY, align_corners=True)
    with pytest.raises(ValueError, match="offsets"):
        HashGrid3D(TINY).load_state_dict(HashGrid3D(TINY, align_corners=True).state_dict())


def test_hashgrid3d_gradients_reach_embeddings() -> None:
    torch.manual_seed(0)
    grid = HashGrid3D(TINY)
    x = points(400, 1.0, seed=2)
    weights = torch.randn(len(x), grid.output_dim, generator=torch.Generator().manual_seed(3))
    (grid(x) * weights).sum().backward()
    fast_grad = grid.embeddings.grad.clone()
    grid.embeddings.grad = None
    (reference_encode(grid, x) * weights.double()).sum().backward()
    assert fast_grad.abs().sum() > 0
    assert (fast_grad - grid.embeddings.grad).abs().max().item() < 1e-5
    grid.embeddings.grad = None
    grid(torch.full((5, 3), 1.2)).sum().backward()  # outside the cube: no gradient
    assert torch.all(grid.embeddings.grad == 0)


def test_positional_encoding_field_dims_and_forward() -> None:
    torch.manual_seed(0)
    field = PositionalEncodingField()
    assert field.input_ch == 63 and field.input_ch_views == 27 and field.dim_aud == 64
    assert field.pts_linears[0].in_features == 63 + 64 and field.pts_linears[5].in_features == 256 + 63 + 64
    assert len(field.pts_linears) == 8 and len(field.views_linears) == 3
    x, d = torch.randn(2, 5, 3), torch.nn.functional.normalize(torch.randn(2, 5, 3), dim=-1)
    encoded_x, encoded_d = field.encode(x, d)
    assert encoded_x.shape == (2, 5, 63) and encoded_d.shape == (2, 5, 27)
    # AD-NeRF's Embedder order: input, then sin and cos per octave at 2^0 .. 2^(k-1)
    assert torch.equal(encoded_x[..., :3], x)
    assert torch.allclose(encoded_x[..., 3 + 6 * 9 : 3 + 6 * 9 + 3], torch.sin(x * 2.0**9))
    assert torch.allclose(encoded_d[..., -3:], torch.cos(d * 2.0**3))
    raw = field(x, d, torch.randn(64))
    assert raw.shape == (2, 5, 4) and torch.isfinite(raw).all()


def load_upstream(path: Path, name: str):
    """Import one upstream file by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    anomaly = torch.is_anomaly_enabled()
    try:
        spec.loader.exec_module(module)
    finally:
        torch.autograd.set_detect_anomaly(anomaly)  # run_nerf_helpers.py switches anomaly detection on at import
    return module


def test_positional_encoding_field_equals_ad_nerf_face_nerf(upstream: Path) -> None:
    helpers = load_upstream(upstream / "AD-NeRF/NeRFs/HeadNeRF/run_nerf_helpers.py", "ad_nerf_run_nerf_helpers")
    torch.manual_seed(0)
    field = PositionalEncodingField()
    embed, input_ch = helpers.get_embedder(10)
    embed_dirs, input_ch_views = helpers.get_embedder(4)
    upstream = helpers.FaceNeRF(D=8, W=256, input_ch=input_ch, dim_aud=64, output_ch=5, skips=[4],
                                input_ch_views=input_ch_views, use_viewdirs=True)
    unused_head = {k: v for k, v in upstream.state_dict().items() if k.startswith("output_linear")}
    upstream.load_state_dict(field.state_dict() | unused_head)  # strict: every other name and shape matches
    x, d, audio = torch.randn(32, 3), torch.nn.functional.normalize(torch.randn(32, 3), dim=-1), torch.randn(64)
    with torch.no_grad():
        expected = upstream(torch.cat([embed(x), audio.expand(32, -1), embed_dirs(d)], dim=-1))
        assert (field(x, d, audio) - expected).abs().max().item() < 1e-5


def test_region_attention_shapes_and_ranges() -> None:
    torch.manual_seed(0)
    attention = RegionAttention()
    shapes = {k: tuple(v.shape) for k, v in attention.state_dict().items()}
    assert shapes == {"aud_ch_att_net.0.weight": (64, 36), "aud_ch_att_net.2.weight": (32, 64),
                      "eye_att_net.0.weight": (16, 36), "eye_att_net.2.weight": (1, 16)}
    encoded, audio, eye = torch.randn(100, 36) * 3, torch.randn(1, 32), torch.rand(1, 1)
    out = attention(encoded, audio, eye)
    assert out["audio"].shape == (100, 32) and out["eye"].shape == (100, 1) and out["ambient_audio"].shape == (100, 1)
    assert torch.all((out["eye_weights"] > 0) & (out["eye_weights"] < 1))
    assert out["audio_weights"].min() < 0  # no output activation on the audio weights, as in ER-NeRF
    assert torch.allclose(out["audio"], audio * out["audio_weights"])
    assert torch.allclose(out["eye"], eye * out["eye_weights"])
    assert torch.allclose(out["ambient_audio"].squeeze(-1), out["audio_weights"].norm(dim=-1))


def test_control_audio_shifts_or_replaces_only_what_it_says():
    from bench.methods.engine import probe

    samples = np.arange(100 * 640, dtype=np.float32)
    test = range(90, 100)
    shifted = probe.control_audio(samples, test, "shifted")
    assert shifted[16000] == samples[0] and np.array_equal(np.sort(shifted), samples)  # frame i hears frame i - 25
    other = -np.ones(10_000, dtype=np.float32)
    replaced = probe.control_audio(samples, test, "other-speaker", other)
    assert np.array_equal(replaced[: 90 * 640], samples[: 90 * 640]) and (replaced[90 * 640 : 100 * 640] == -1).all()
    with pytest.raises(ValueError, match="unknown control"):
        probe.control_audio(samples, test, "reversed")
