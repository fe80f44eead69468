"""SyncTalk pure-PyTorch renderer: rays, AABB, occupancy grid, marching and compositing against plain references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.methods.engine import rendering
from bench.methods.engine.hashgrid import HashGridConfig, TriPlaneEncoder
from bench.methods.engine.rendering import (
    DensityGrid,
    composite,
    get_rays,
    march_rays,
    near_far_from_aabb,
    nerf_matrix_to_ngp,
)

BIG = float(np.finfo(np.float32).max)


pytestmark = pytest.mark.usefixtures("single_torch_thread")


# ----------------------------------------------------------------------------------------------- cameras and rays
def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """c2w in torch-ngp's camera convention (camera looks along +z, y down in the image)."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(up, forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return torch.tensor(pose, dtype=torch.float32)


def test_get_rays_pixel_centres_order_and_rotation():
    fx, fy, cx, cy, height, width = 2.0, 4.0, 2.0, 1.5, 3, 4
    identity = torch.eye(4).unsqueeze(0)
    rays_o, rays_d = get_rays(identity, fx, fy, cx, cy, height, width)
    assert rays_o.shape == rays_d.shape == (1, 12, 3)
    # pixel 6 = row 1, col 2 -> centre (2.5, 1.5) -> camera direction (0.25, 0, 1)
    expected = torch.tensor([0.25, 0.0, 1.0]) / math.sqrt(0.25**2 + 1)
    torch.testing.assert_close(rays_d[0, 6], expected)
    # pixel 0 -> centre (0.5, 0.5) -> ((0.5 - 2) / 2, (0.5 - 1.5) / 4, 1)
    first = torch.tensor([-0.75, -0.25, 1.0])
    torch.testing.assert_close(rays_d[0, 0], first / first.norm())
    torch.testing.assert_close(rays_d.norm(dim=-1), torch.ones(1, 12))

    angle = 0.7
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                 [-math.sin(angle), 0, math.cos(angle)]])
    pose[:3, 3] = torch.tensor([0.1, -0.2, 3.0])
    batch = torch.stack([torch.eye(4), pose])
    picked = torch.tensor([6, 0, 11])
    rays_o, rays_d = get_rays(batch, fx, fy, cx, cy, height, width, picked)
    assert rays_d.shape == (2, 3, 3)
    torch.testing.assert_close(rays_o[1], pose[:3, 3].expand(3, 3))
    torch.testing.assert_close(rays_d[1, 0], pose[:3, :3] @ expected)
    last = torch.tensor([(3.5 - 2) / 2, (2.5 - 1.5) / 4, 1.0])  # pixel 11 = row 2, col 3
    torch.testing.assert_close(rays_d[0, 2], last / last.norm())


def test_nerf_matrix_to_ngp_hand_computed():
    pose = np.arange(16, dtype=np.float32).reshape(4, 4)
    pose[3] = [0, 0, 0, 1]
    expected = np.array(
        [
            [pose[1, 0], -pose[1, 1], -pose[1, 2], pose[1, 3] * 4 + 0.1],
            [pose[2, 0], -pose[2, 1], -pose[2, 2], pose[2, 3] * 4 + 0.2],
            [pose[0, 0], -pose[0, 1], -pose[0, 2], pose[0, 3] * 4 + 0.3],
            [0, 0, 0, 1],
        ],
        dtype=np.float32,
    )
    converted = nerf_matrix_to_ngp(pose, scale=4, offset=(0.1, 0.2, 0.3))
    np.testing.assert_allclose(converted, expected, rtol=1e-6)
    assert converted.dtype == np.float32
    batched = nerf_matrix_to_ngp(torch.from_numpy(np.stack([pose, pose])))
    assert isinstance(batched, torch.Tensor) and batched.shape == (2, 4, 4)
    np.testing.assert_allclose(batched[1].numpy()[:3, 3], [pose[1, 3] * 4, pose[2, 3] * 4, pose[0, 3] * 4])


@pytest.mark.parametrize(
    ("origin", "direction", "near", "far"),
    [
        ((0, 0, -3), (0, 0, 1), 2.0, 4.0),  # straight through z
        ((-3, 0.2, 0.1), (1, 0, 0), 2.0, 4.0),  # straight through x
        ((0, 3, 0), (0, -1, 0), 2.5, 3.5),  # y slab is [-0.5, 0.5]
        ((0, 0.6, -3), (0, 0, 1), BIG, BIG),  # passes above the halved y slab
        ((0, 0, -3), (0, 1 / math.sqrt(5), 2 / math.sqrt(5)), BIG, BIG),  # leaves the y slab before entering z
        ((0, 0, -3), (0, 0.4 / math.sqrt(0.16 + 4), 2 / math.sqrt(0.16 + 4)), None, None),  # oblique hit, see below
        ((0, 0, 0), (0, 0, 1), rendering.MIN_NEAR, 1.0),  # starts inside: near raised to min_near
        ((0, 0, 3), (0, 0, 1), rendering.MIN_NEAR, -2.0),  # box behind the camera: near > far, nothing to march
    ],
)
def test_near_far_from_aabb_hand_computed(origin, direction, near, far):
    rays_o = torch.tensor([origin], dtype=torch.float32)
    rays_d = torch.tensor([direction], dtype=torch.float32)
    nears, fars = near_far_from_aabb(rays_o, rays_d)
    if near is None:  # z entry at t = 2 / dz, y exit at t = 0.5 / dy: dz = 5 dy so entry 2/dz < exit 0.5/dy
        dz, dy = direction[2], direction[1]
        near, far = 2 / dz, min(0.5 / dy, 4 / dz)
    assert nears.item() == pytest.approx(near, rel=1e-5)
    assert fars.item() == pytest.approx(far, rel=1e-5)


# ------------------------------------------------------------------------------------------------ density grid
def test_morton_codes_and_bitfield_layout():
    coords = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 0, 0], [3, 5, 6]])
    codes = rendering.morton3d(coords[:, 0], coords[:, 1], coords[:, 2])

    def interleave(x, y, z):
        return sum(((x >> b) & 1) << (3 * b) | ((y >> b) & 1) << (3 * b + 1) | ((z >> b) & 1) << (3 * b + 2)
                   for b in range(10))

    assert codes.tolist() == [interleave(*c) for c in coords.tolist()] == [0, 1, 2, 4, 7, 8, interleave(3, 5, 6)]
    grid = DensityGrid(resolution=8)
    grid.density_grid[0, interleave(3, 5, 6)] = 5.0
    grid.pack_bits(1.0)
    index = interleave(3, 5, 6)
    assert grid.density_bitfield[index // 8].item() == 1 << (index % 8)
    occupied = grid.occupancy()
    assert occupied.sum().item() == 1 and occupied[3, 5, 6]
    assert grid.dense_density()[3, 5, 6].item() == 5.0


def test_mark_untrained_matches_projection():
    resolution, half = 16, 1 / 16
    grid = DensityGrid(resolution=resolution)
    pose = look_at((0.0, 0.0, -0.4), target=(0.0, 0.0, 1.0))
    fx = fy = 20.0
    cx, cy = 8.0, 6.0  # 16 x 12 image
    grid.mark_untrained(pose.unsqueeze(0), fx, fy, cx, cy)
    unseen = grid.dense_density() < 0
    for ix in range(resolution):
        for iy in range(resolution):
            for iz in range(resolution):
                centre = np.array([ix, iy, iz]) * 2 * half - 1 + half
                cam = pose[:3, :3].numpy().T.astype(np.float64) @ (centre - pose[:3, 3].numpy())
                if cam[2] <= 0:
                    expect_seen = False
                else:  # pixel coordinates within the image grown by the 2-cell margin seen from that depth
                    u, v = fx * cam[0] / cam[2] + cx, fy * cam[1] / cam[2] + cy
                    margin_x, margin_y = 2 * half * fx / cam[2], 2 * half * fy / cam[2]
                    expect_seen = abs(u - cx) < cx + margin_x and abs(v - cy) < cy + margin_y
                assert bool(unseen[ix, iy, iz]) == (not expect_seen), (ix, iy, iz)
    assert 0 < unseen.sum() < resolution**3


def box_density(points: torch.Tensor) -> torch.Tensor:
    """100 inside the cube |p| < 0.25 (cells 6..9 of a 16-grid), 0 elsewhere."""
    return (points.abs() < 0.25).all(dim=-1).float() * 100


def expected_dilated_box(resolution: int = 16) -> np.ndarray:
    box = np.zeros((resolution,) * 3, dtype=bool)
    box[6:10, 6:10, 6:10] = True
    dilated = box.copy()
    for axis in range(3):
        dilated |= np.roll(box, 1, axis) | np.roll(box, -1, axis)
    return dilated


def test_update_dilates_decays_thresholds_and_round_trips():
    grid = DensityGrid(resolution=16)
    grid.update(box_density, generator=torch.Generator().manual_seed(0))
    expected = expected_dilated_box()
    assert grid.mean_density == pytest.approx(100 * expected.sum() / 16**3)
    np.testing.assert_array_equal(grid.occupancy().numpy(), expected)
    np.testing.assert_array_equal(grid.dense_density().numpy(), np.where(expected, 100.0, 0.0))
    grid.update(lambda points: torch.zeros(points.shape[0]))  # EMA: max(0.95 * old, new)
    np.testing.assert_allclose(grid.dense_density().numpy(), np.where(expected, 95.0, 0.0), rtol=1e-6)
    np.testing.assert_array_equal(grid.occupancy().numpy(), expected)

    state = grid.state_dict()
    assert set(state) == {"density_grid", "density_bitfield"}
    assert state["density_grid"].shape == (1, 16**3) and state["density_bitfield"].dtype == torch.uint8
    restored = DensityGrid(resolution=16)
    restored.load_state_dict(state)
    assert torch.equal(restored.occupancy(), grid.occupancy())


def test_threshold_is_capped_and_unseen_cells_stay_empty():
    grid = DensityGrid(resolution=16, density_thresh=10.0)
    grid.density_grid[0, grid.dense_to_morton.view(16, 16, 16)[8, 8, 8]] = -1  # a cell no camera saw
    grid.update(lambda points: torch.full((points.shape[0],), 50.0))
    occupancy = grid.occupancy()
    assert grid.mean_density > 10  # threshold is min(mean, 10) = 10 < 50: every seen cell is occupied
    assert occupancy.sum() == 16**3 - 1 and not occupancy[8, 8, 8]
    assert grid.dense_density()[8, 8, 8] == -1


# ----------------------------------------------------------------------------------------------------- marching
def reference_march(origin, direction, near, far, occupancy, max_steps, dt_gamma, bound=1.0):
    """Per-ray loop mirroring raymarching's kernel_march_rays_train (float32), including its empty-cell skipping."""
    f32 = np.float32
    resolution = occupancy.shape[0]
    dt_max = f32(2 * math.sqrt(3) / resolution)
    dt_min = min(dt_max, f32(2 * math.sqrt(3) / max_steps))
    gamma = f32(dt_gamma)
    o = origin.astype(f32)
    d = direction.astype(f32)
    t, far = f32(near), f32(far)
    samples = []
    while t < far and len(samples) < max_steps:
        x = np.clip(o + t * d, -bound, bound).astype(f32)
        dt = f32(np.clip(t * gamma, dt_min, dt_max))
        cell = np.clip(f32(0.5) * (x / f32(bound) + 1) * resolution, 0, resolution - 1).astype(np.int64)
        if occupancy[tuple(cell)]:
            samples.append((float(t), float(dt)))
            t = f32(t + dt)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                exits = ((cell + 0.5 + 0.5 * np.sign(d)) / resolution * 2 - 1) * bound
                steps = (exits.astype(f32) - x) * (f32(1) / d)
            target = t + max(f32(0), np.nanmin(steps))
            while True:
                t = f32(t + f32(np.clip(t * gamma, dt_min, dt_max)))
                if not t < target:
                    break
    return samples


def random_rays(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    eyes = torch.randn(count, 3, generator=generator)
    eyes = eyes / eyes.norm(dim=-1, keepdim=True) * 2.5
    targets = (torch.rand(count, 3, generator=generator) * 2 - 1) * torch.tensor([0.8, 0.4, 0.8])
    directions = targets - eyes
    return eyes, directions / directions.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("max_steps", [16, 64])
def test_march_matches_reference_kernel(max_steps: int):
    resolution = 16
    grid = DensityGrid(resolution=resolution)
    generator = torch.Generator().manual_seed(1)
    grid.density_grid[0] = torch.rand(resolution**3, generator=generator)
    grid.pack_bits(0.7)  # ~30 % occupied
    rays_o, rays_d = random_rays(120, seed=2)
    nears, fars = near_far_from_aabb(rays_o, rays_d)
    samples = march_rays(rays_o, rays_d, nears, fars, grid, max_steps=max_steps)
    occupancy = grid.occupancy().numpy()
    total = 0
    for ray in range(rays_o.shape[0]):
        if nears[ray] >= fars[ray]:
            assert samples.counts[ray] == 0
            continue
        expected = reference_march(rays_o[ray].numpy(), rays_d[ray].numpy(), nears[ray].item(), fars[ray].item(),
                                   occupancy, max_steps, rendering.DT_GAMMA)
        mine = samples.ray_index == ray
        assert samples.counts[ray].item() == len(expected) == int(mine.sum()), ray
        if expected:
            np.testing.assert_allclose(samples.ts[mine].numpy(), [t for t, _ in expected], rtol=1e-6)
            np.testing.assert_allclose(samples.deltas[mine, 0].numpy(), [dt for _, dt in expected], rtol=1e-6)
        total += len(expected)
    assert total > 2 * rays_o.shape[0]  # the comparison covered many samples
    torch.testing.assert_close(samples.deltas[:, 1], samples.ts + samples.deltas[:, 0])
    torch.testing.assert_close(samples.positions, samples.directions * samples.ts[:, None] + rays_o[samples.ray_index])


def test_march_skips_empty_cells_and_caps_steps():
    resolution = 32  # dt_min = dt_max = 2 sqrt(3) / 32 for max_steps 16: a constant step
    step = 2 * math.sqrt(3) / resolution
    grid = DensityGrid(resolution=resolution)
    grid.update(box_density)
    rays_o, rays_d = random_rays(300, seed=3)
    nears, fars = near_far_from_aabb(rays_o, rays_d)
    samples = march_rays(rays_o, rays_d, nears, fars, grid, max_steps=16, perturb=True,
                         generator=torch.Generator().manual_seed(4))
    assert samples.positions.shape[0] > 300
    cells = ((samples.positions + 1) / 2 * resolution).floor().long().clamp(0, resolution - 1)
    assert grid.occupancy()[cells[:, 0], cells[:, 1], cells[:, 2]].all()  # never a sample in an empty cell
    assert (box_density(samples.positions) > 0).float().mean() > 0.5  # most lie in the box, the rest in its rim
    assert samples.counts.max() <= 16
    assert torch.equal(samples.ray_index, torch.sort(samples.ray_index, stable=True).values)
    # consecutive samples of a ray lie a whole number of steps apart (the lattice the CUDA kernel walks)
    same_ray = samples.ray_index[1:] == samples.ray_index[:-1]
    ratio = (samples.ts[1:] - samples.ts[:-1])[same_ray] / step
    assert (ratio > 0.999).all() and torch.allclose(ratio, ratio.round(), atol=1e-3)
    torch.testing.assert_close(samples.deltas[:, 0], torch.full_like(samples.ts, step))
    first = torch.ones_like(samples.ray_index, dtype=torch.bool)
    first[1:] = ~same_ray
    assert (samples.ts[first] >= nears[samples.ray_index[first]]).all()

    full = DensityGrid(resolution=resolution)
    full.density_bitfield.fill_(255)
    capped = march_rays(rays_o, rays_d, nears, fars, full, max_steps=16)
    steps_inside = (fars - nears) / step
    clear = (nears < fars) & ((steps_inside - steps_inside.round()).abs() > 1e-3)  # avoid float ties at far
    expected = torch.ceil(steps_inside).clamp(max=16).long()
    assert clear.sum() > 250 and torch.equal(capped.counts[clear], expected[clear])
    assert (capped.counts[nears >= fars] == 0).all()


def test_empty_grid_gives_no_samples_and_zero_weights():
    grid = DensityGrid(resolution=16)  # bitfield starts empty, as in SyncTalk before its first update
    rays_o, rays_d = random_rays(50, seed=5)
    nears, fars = near_far_from_aabb(rays_o, rays_d)
    samples = march_rays(rays_o, rays_d, nears, fars, grid)
    assert samples.positions.shape == (0, 3) and samples.counts.sum() == 0
    result = composite(torch.zeros(0), torch.zeros(0, 3), samples.deltas, samples.ray_index, 50)
    assert torch.equal(result.weights_sum, torch.zeros(50)) and torch.equal(result.rgb, torch.zeros(50, 3))


# --------------------------------------------------------------------------------------------------- composite
def reference_composite(sigmas, rgbs, deltas, counts, T_thresh, uncertainty, ambient):
    """Per-ray loop mirroring composite_rays_train_triplane: weighted rgb/depth/uncertainty, summed ambient."""
    outputs = {name: [] for name in ("rgb", "depth", "weights_sum", "uncertainty", "ambient")}
    offset = 0
    for count in counts:
        transmittance = torch.ones((), dtype=sigmas.dtype)
        rgb = torch.zeros(3, dtype=sigmas.dtype)
        depth = weights_sum = unc = amb = torch.zeros((), dtype=sigmas.dtype)
        for i in range(offset, offset + count):
            alpha = 1 - torch.exp(-sigmas[i] * deltas[i, 0])
            weight = alpha * transmittance
            rgb = rgb + weight * rgbs[i]
            depth = depth + weight * deltas[i, 1]
            weights_sum = weights_sum + weight
            unc = unc + weight * uncertainty[i]
            amb = amb + ambient[i]
            transmittance = transmittance * (1 - alpha)
            if transmittance < T_thresh:
                break
        offset += count
        for name, value in zip(outputs, (rgb, depth, weights_sum, unc, amb)):
            outputs[name].append(value)
    return {name: torch.stack(values) for name, values in outputs.items()}


@pytest.mark.parametrize("T_thresh", [1e-4, 0.2])
def test_composite_matches_reference_values_and_gradients(T_thresh: float):
    generator = torch.Generator().manual_seed(6)
    counts = [0, 3, 16, 1, 9, 0, 12]
    total = sum(counts)
    ray_index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    dts = torch.rand(total, generator=generator, dtype=torch.float64) * 0.05 + 0.01
    ts = torch.cat([torch.cumsum(dts[ray_index == r], 0) + 1 for r in range(len(counts))])
    deltas = torch.stack([dts, ts + dts], dim=-1)
    sigmas = (torch.rand(total, generator=generator, dtype=torch.float64) * 60).requires_grad_(True)
    rgbs = torch.rand(total, 3, generator=generator, dtype=torch.float64).requires_grad_(True)
    uncertainty = torch.rand(total, generator=generator, dtype=torch.float64).requires_grad_(True)
    ambient = torch.rand(total, generator=generator, dtype=torch.float64).requires_grad_(True)
    upstream = {name: torch.randn(shape, generator=generator, dtype=torch.float64)
                for name, shape in (("rgb", (7, 3)), ("depth", 7), ("weights_sum", 7), ("uncertainty", 7),
                                    ("ambient", 7))}

    result = composite(sigmas, rgbs, deltas, ray_index, len(counts), T_thresh=T_thresh,
                       extras={"uncertainty": uncertainty}, summed_extras={"ambient": ambient})
    mine = {"rgb": result.rgb, "depth": result.depth, "weights_sum": result.weights_sum,
            "uncertainty": result.extras["uncertainty"], "ambient": result.sums["ambient"]}
    loss = sum((mine[name] * upstream[name].float()).sum() for name in mine)
    grads = torch.autograd.grad(loss, (sigmas, rgbs, uncertainty, ambient))

    expected = reference_composite(sigmas, rgbs, deltas, counts, T_thresh, uncertainty, ambient)
    reference_loss = sum((expected[name] * upstream[name]).sum() for name in expected)
    expected_grads = torch.autograd.grad(reference_loss, (sigmas, rgbs, uncertainty, ambient))
    for name in expected:
        torch.testing.assert_close(mine[name].double(), expected[name], rtol=1e-4, atol=1e-5)
    for actual, wanted in zip(grads, expected_grads):
        torch.testing.assert_close(actual.double(), wanted, rtol=1e-3, atol=1e-5)
    if T_thresh == 0.2:  # dense rays terminate early: their last samples get neither weight nor gradient
        assert (result.weights[ray_index == 2] == 0).any()
    assert (result.weights_sum <= 1 + 1e-6).all()


def test_composite_rejects_unsorted_samples_and_runs_float32_under_autocast():
    deltas = torch.tensor([[0.1, 1.1], [0.1, 1.2], [0.1, 1.3]])
    with pytest.raises(ValueError, match="contiguous"):
        composite(torch.ones(3), torch.ones(3, 3), deltas, torch.tensor([1, 0, 1]), 2)
    sigmas = torch.tensor([2.0, 5.0, 1.0])
    plain = composite(sigmas, torch.full((3, 3), 0.5), deltas, torch.tensor([0, 0, 1]), 2)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        mixed = composite(sigmas.bfloat16(), torch.full((3, 3), 0.5).bfloat16(), deltas, torch.tensor([0, 0, 1]), 2)
    assert mixed.rgb.dtype == torch.float32
    torch.testing.assert_close(mixed.rgb, plain.rgb)


# ------------------------------------------------------------------------------------------------- end to end
SPHERE_RADIUS = 0.42


def sphere_images(poses: torch.Tensor, focal: float, size: int) -> torch.Tensor:
    """Ground truth by analytic ray-sphere intersection: colour 0.5 + 0.5 p / r at the hit, white elsewhere."""
    rays_o, rays_d = get_rays(poses, focal, focal, size / 2, size / 2, size, size)
    b = (rays_o * rays_d).sum(-1)
    c = (rays_o * rays_o).sum(-1) - SPHERE_RADIUS**2
    disc = b * b - c
    t = -b - disc.clamp(min=0).sqrt()
    hit = (disc > 0) & (t > 0)
    colour = 0.5 + 0.5 * (rays_o + t.unsqueeze(-1) * rays_d) / SPHERE_RADIUS
    return torch.where(hit.unsqueeze(-1), colour, torch.ones_like(colour))


class TinyField(torch.nn.Module):
    """A small tri-plane field: features -> (log sigma, rgb)."""

    def __init__(self) -> None:
        super().__init__()
        config = HashGridConfig(num_levels=4, level_dim=2, base_resolution=8, desired_resolution=48,
                                log2_hashmap_size=11)
        self.encoder = TriPlaneEncoder(config)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(self.encoder.output_dim, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 4))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.mlp(self.encoder(points))
        return torch.exp(hidden[:, 0].clamp(max=15)), torch.sigmoid(hidden[:, 1:])

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self(points)[0]


def test_fit_synthetic_sphere_end_to_end():
    torch.manual_seed(0)
    size, focal, resolution, max_steps = 20, 24.0, 32, 40
    angles = torch.arange(6) * (2 * math.pi / 6)
    poses = torch.stack([look_at((2.2 * math.sin(a), 0.3 * math.cos(3 * a), -2.2 * math.cos(a))) for a in angles])
    images = sphere_images(poses, focal, size)
    rays_o, rays_d = get_rays(poses, focal, focal, size / 2, size / 2, size, size)
    rays_o, rays_d, images = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3), images.reshape(-1, 3)
    nears, fars = near_far_from_aabb(rays_o, rays_d)

    field = TinyField()
    grid = DensityGrid(resolution=resolution)
    grid.mark_untrained(poses, focal, focal, size / 2, size / 2)
    optimizer = torch.optim.Adam([
        {"params": field.encoder.parameters(), "lr": 2e-2},
        {"params": field.mlp.parameters(), "lr": 5e-3},
    ])

    def render(indices: torch.Tensor, perturb: bool) -> torch.Tensor:
        samples = march_rays(rays_o[indices], rays_d[indices], nears[indices], fars[indices], grid,
                             max_steps=max_steps, perturb=perturb)
        sigmas, colours = field(samples.positions)
        result = composite(sigmas, colours, samples.deltas, samples.ray_index, indices.numel())
        return result.rgb + (1 - result.weights_sum).unsqueeze(-1)  # white background

    everything = torch.arange(rays_o.shape[0])
    grid.update(field.density)
    with torch.no_grad():
        initial = torch.mean((render(everything, False) - images) ** 2).item()
    for step in range(120):
        if step % 16 == 0:  # the presets' grid_update_every
            grid.update(field.density)
        batch = torch.randint(0, rays_o.shape[0], (1024,))
        loss = torch.mean((render(batch, True) - images[batch]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = torch.mean((render(everything, False) - images) ** 2).item()
    print(f"sphere fit: MSE {initial:.4f} -> {final:.5f}")
    assert final < initial / 20, (initial, final)
    assert -10 * math.log10(final) > 25  # PSNR on the training views
