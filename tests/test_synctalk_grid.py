"""SyncTalk tri-plane hash grid: layout, values and gradients against a plain per-level / per-corner reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.methods.engine import hashgrid
from bench.methods.engine.hashgrid import CODE_CONFIG, PAPER_CONFIG, HashGrid2D, HashGridConfig, TriPlaneEncoder

pytestmark = pytest.mark.usefixtures("single_torch_thread")


# Mixed tiny config: level 0 is dense (5 x 5 vertices in a 32-row table), levels 1-2 are hashed.
TINY = HashGridConfig(num_levels=3, level_dim=2, base_resolution=4, desired_resolution=16, log2_hashmap_size=5)


def reference_layout(config: HashGridConfig, layout: str) -> tuple[list[float], list[int], list[int], list[bool]]:
    """Per level: float32 kernel scale, row offset, table size, hashed?  ``layout`` is "torch-ngp" or "tcnn"."""
    growth = math.exp(math.log(config.desired_resolution / config.base_resolution) / (config.num_levels - 1))
    log2_growth = np.float32(math.log2(growth))
    scales, offsets, sizes, hashed = [], [], [], []
    offset = 0
    for level in range(config.num_levels):
        scale = np.float32(np.exp2(np.float32(level) * log2_growth) * np.float32(config.base_resolution) - 1)
        kernel_resolution = math.ceil(scale) + 1
        if layout == "torch-ngp":
            table_resolution = math.ceil(config.base_resolution * growth**level)
            size = min(2**config.log2_hashmap_size, (table_resolution + 1) ** 2)
            size = math.ceil(size / 8) * 8
            stride = kernel_resolution + 1
        else:
            size = min(2**config.log2_hashmap_size, math.ceil(kernel_resolution**2 / 8) * 8)
            stride = kernel_resolution
        scales.append(float(scale))
        offsets.append(offset)
        sizes.append(size)
        hashed.append(stride**2 > size)
        offset += size
    return scales, offsets + [offset], sizes, hashed


def reference_encode(
    points: torch.Tensor, embeddings: torch.Tensor, config: HashGridConfig, bound: float, layout: str = "torch-ngp"
) -> torch.Tensor:
    """Straightforward bilinear hash-grid lookup: loop over levels and the 4 corners, uint32 numpy hashing."""
    scales, offsets, sizes, hashed = reference_layout(config, layout)
    unit = (points + bound) / (2 * bound)
    inside = ((unit >= 0) & (unit <= 1)).all(dim=-1, keepdim=True)
    unit = torch.where(inside, unit, unit.detach().clamp(0, 1))  # in-range points keep their gradient at 0 and 1
    per_level = []
    for level in range(config.num_levels):
        scale = scales[level]
        resolution = math.ceil(scale) + 1
        stride = resolution + 1 if layout == "torch-ngp" else resolution
        position = unit * scale + 0.5
        cell = torch.floor(position.detach())
        frac = position - cell
        cell_x = cell[:, 0].numpy().astype(np.uint32)
        cell_y = cell[:, 1].numpy().astype(np.uint32)
        level_value = 0
        for corner_x in (0, 1):
            for corner_y in (0, 1):
                grid_x = cell_x + np.uint32(corner_x)
                grid_y = cell_y + np.uint32(corner_y)
                if hashed[level]:
                    index = grid_x ^ (grid_y * np.uint32(2654435761))  # uint32 multiply wraps like the CUDA code
                else:
                    index = grid_x + grid_y * np.uint32(stride)
                rows = torch.from_numpy((index % np.uint32(sizes[level])).astype(np.int64) + offsets[level])
                weight_x = frac[:, 0] if corner_x else 1 - frac[:, 0]
                weight_y = frac[:, 1] if corner_y else 1 - frac[:, 1]
                level_value = level_value + (weight_x * weight_y).unsqueeze(-1) * embeddings[rows]
        per_level.append(level_value)
    return torch.cat(per_level, dim=-1) * inside


def sample_points(count: int, bound: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    """Uniform points in the square plus its corners, edge midpoints and a few outside points."""
    generator = torch.Generator().manual_seed(seed)
    inner = (torch.rand(count, 2, generator=generator, dtype=torch.float64) * 2 - 1) * bound
    special = torch.tensor(
        [[-1, -1], [1, 1], [-1, 1], [1, -1], [0, 0], [1, 0.3], [-0.7, -1], [1.2, 0.0], [0.1, -1.5], [3.0, 3.0]],
        dtype=torch.float64,
    ) * bound
    return torch.cat([inner, special]).to(dtype)


def test_code_layout_matches_torch_ngp_allocation():
    grid = HashGrid2D()
    # 4 dense levels of (res + 1)^2 rows rounded up to 8 (res = 64, 78, 94, 113), then 8 hashed levels of 2^14 rows
    dense_sizes = [4232, 6248, 9032, 13000]
    expected = np.cumsum([0] + dense_sizes + [2**14] * 8).tolist()
    assert grid.offsets.dtype == torch.int32
    assert grid.offsets.tolist() == expected == reference_layout(CODE_CONFIG, "torch-ngp")[1]
    assert tuple(grid.embeddings.shape) == (163584, 1)
    assert grid.embeddings.abs().max() <= hashgrid.INIT_RANGE
    assert grid.embeddings.std() > hashgrid.INIT_RANGE / 4  # U(-1e-4, 1e-4) has std 5.8e-5
    paper = HashGrid2D(num_levels=14)
    assert paper.offsets.tolist() == reference_layout(PAPER_CONFIG, "torch-ngp")[1]
    assert sum(not h for h in reference_layout(PAPER_CONFIG, "torch-ngp")[3]) == 5  # 5 dense levels at L=14


def test_presets_and_output_width():
    assert TriPlaneEncoder.from_preset("code").output_dim == 36
    assert TriPlaneEncoder.from_preset("paper").output_dim == 42
    features = TriPlaneEncoder.from_preset("paper")(torch.rand(7, 3) * 2 - 1)
    assert features.shape == (7, 42) and features.dtype == torch.float32
    with pytest.raises(ValueError, match="preset"):
        TriPlaneEncoder.from_preset("large")


def test_released_checkpoint_layout_loads(tmp_path):
    """A state dict shaped like SyncTalk's encoder_{xy,yz,xz}.{embeddings,offsets} loads strictly and is used as is."""
    _, offsets, _, _ = reference_layout(CODE_CONFIG, "torch-ngp")
    generator = torch.Generator().manual_seed(3)
    checkpoint = {}
    for plane in ("xy", "yz", "xz"):
        checkpoint[f"encoder_{plane}.embeddings"] = torch.randn(offsets[-1], 1, generator=generator)
        checkpoint[f"encoder_{plane}.offsets"] = torch.tensor(offsets, dtype=torch.int32)
    path = tmp_path / "ngp.pth"
    torch.save({"model": checkpoint}, path)
    encoder = TriPlaneEncoder()
    assert set(encoder.state_dict()) == set(checkpoint)
    encoder.load_state_dict(torch.load(path)["model"], strict=True)
    xyz = torch.rand(50, 3, generator=generator) * 2 - 1
    expected = torch.cat(
        [
            reference_encode(xyz[:, [0, 1]], checkpoint["encoder_xy.embeddings"], CODE_CONFIG, 1.0),
            reference_encode(xyz[:, [1, 2]], checkpoint["encoder_yz.embeddings"], CODE_CONFIG, 1.0),
            reference_encode(xyz[:, [0, 2]], checkpoint["encoder_xz.embeddings"], CODE_CONFIG, 1.0),
        ],
        dim=-1,
    )
    torch.testing.assert_close(encoder(xyz), expected, rtol=1e-5, atol=1e-6)


def test_checkpoint_for_another_layout_is_refused():
    state = HashGrid2D(num_levels=14).state_dict()
    state["offsets"] = state["offsets"][:13]
    state["embeddings"] = state["embeddings"][: int(state["offsets"][-1])]
    with pytest.raises(ValueError, match="do not match"):
        HashGrid2D(num_levels=12).load_state_dict(state)


def test_hash_rows_low_bit_shortcut_and_general_table_size():
    """Power-of-two tables take the low bits of y * (prime mod size); other sizes use the full uint32 hash."""
    generator = torch.Generator().manual_seed(8)
    cell_x = torch.randint(0, 600, (1, 1000), generator=generator)
    cell_y = torch.randint(0, 600, (1, 1000), generator=generator)
    x, y = cell_x.numpy().astype(np.uint32), cell_y.numpy().astype(np.uint32)
    for size in (1024, 1000):
        group = hashgrid._LevelGroup(np.array([0]), np.array([599.5], dtype=np.float32), np.array([0]),
                                     np.array([size]), np.array([7]), hashed=True, device=torch.device("cpu"))
        rows = group.corner_rows(cell_x.to(group.index_dtype), cell_y.to(group.index_dtype))
        for row, (dx, dy) in zip(rows, [(0, 0), (1, 0), (0, 1), (1, 1)]):
            expected = ((x + np.uint32(dx)) ^ ((y + np.uint32(dy)) * np.uint32(2654435761))) % np.uint32(size) + 7
            np.testing.assert_array_equal(row.numpy(), expected.astype(np.int64))


@pytest.mark.parametrize("config", [CODE_CONFIG, PAPER_CONFIG, TINY], ids=["code", "paper", "tiny"])
@pytest.mark.parametrize("bound", [1.0, 0.5])
def test_values_match_reference(config: HashGridConfig, bound: float):
    grid = HashGrid2D(**vars(config), bound=bound)
    with torch.no_grad():
        grid.embeddings.normal_()  # unit-scale values make indexing mistakes visible
    points = sample_points(300, bound, seed=1)
    expected = reference_encode(points, grid.embeddings.detach(), config, bound)
    actual = grid(points)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert (actual[-3:] == 0).all()  # points outside [-bound, bound]^2 encode to zero


def test_gradients_match_reference():
    grid = HashGrid2D(**vars(CODE_CONFIG))
    with torch.no_grad():
        grid.embeddings.normal_()
    points = sample_points(200, 1.0, seed=2).requires_grad_(True)
    upstream = torch.randn(points.shape[0], CODE_CONFIG.output_dim, generator=torch.Generator().manual_seed(5))
    (grid(points) * upstream).sum().backward()
    reference_points = points.detach().clone().requires_grad_(True)
    reference_embeddings = grid.embeddings.detach().clone().requires_grad_(True)
    (reference_encode(reference_points, reference_embeddings, CODE_CONFIG, 1.0) * upstream).sum().backward()
    torch.testing.assert_close(grid.embeddings.grad, reference_embeddings.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(points.grad, reference_points.grad, rtol=1e-4, atol=1e-3)
    assert (points.grad[-3:] == 0).all()


def test_gradcheck_float64_tiny_grid():
    grid = HashGrid2D(**vars(TINY)).double()
    assert reference_layout(TINY, "torch-ngp")[3] == [False, True, True]  # one dense, two hashed levels
    with torch.no_grad():
        grid.embeddings.normal_()
    points = (torch.rand(12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 1.8 - 0.9)
    points.requires_grad_(True)
    embeddings = grid.embeddings.detach().clone().requires_grad_(True)
    groups = grid._level_groups()

    def encode(unit_points, table):
        return hashgrid._HashGridFunction.apply(unit_points, table, groups)

    unit = ((points.detach() + 1) / 2).requires_grad_(True)
    assert torch.autograd.gradcheck(encode, (unit, embeddings), eps=1e-6, atol=1e-7)


def test_autocast_keeps_float32_and_values():
    encoder = TriPlaneEncoder(TINY)
    xyz = torch.rand(64, 3) * 2 - 1
    expected = encoder(xyz)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        features = encoder(xyz.bfloat16())
    assert features.dtype == torch.float32
    torch.testing.assert_close(features, encoder(xyz.bfloat16().float()))
    assert torch.allclose(features, expected, atol=1e-5)


def test_chunking_is_invisible(monkeypatch):
    grid = HashGrid2D(**vars(TINY))
    points = sample_points(500, 1.0, seed=6).requires_grad_(True)
    weights = torch.randn(points.shape[0], TINY.output_dim)
    (grid(points) * weights).sum().backward()
    whole = grid(points).detach(), points.grad.clone(), grid.embeddings.grad.clone()
    points.grad = None
    grid.embeddings.grad = None
    monkeypatch.setattr(hashgrid, "POINTS_PER_CHUNK", 37)
    (grid(points) * weights).sum().backward()
    torch.testing.assert_close(grid(points).detach(), whole[0])
    torch.testing.assert_close(points.grad, whole[1])
    torch.testing.assert_close(grid.embeddings.grad, whole[2])


def test_backend_selection_without_tcnn(monkeypatch):
    monkeypatch.setattr(hashgrid, "tcnn_available", lambda: False)  # as on a machine without tinycudann or CUDA
    assert HashGrid2D(backend="auto").backend == "torch"
    with pytest.raises(RuntimeError, match="tinycudann"):
        HashGrid2D(backend="tcnn")
    with pytest.raises(ValueError, match="backend"):
        HashGrid2D(backend="cuda")


@pytest.mark.skipif(not hashgrid.tcnn_available(), reason="needs tinycudann and a CUDA device")
def test_tcnn_backend_matches_reference_with_tcnn_layout():
    grid = HashGrid2D(**vars(CODE_CONFIG), backend="tcnn").cuda()
    assert grid.backend == "tcnn"
    _, offsets, _, _ = reference_layout(CODE_CONFIG, "tcnn")
    params = grid.tcnn_encoding.params
    assert params.numel() == offsets[-1] * CODE_CONFIG.level_dim
    with torch.no_grad():
        params.normal_()
    points = sample_points(300, 1.0, seed=7)
    expected = reference_encode(points, params.detach().float().cpu().view(-1, CODE_CONFIG.level_dim), CODE_CONFIG,
                                1.0, layout="tcnn")
    torch.testing.assert_close(grid(points.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
