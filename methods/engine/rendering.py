"""Pure-PyTorch ray generation, occupancy-grid ray marching and volume compositing for SyncTalk (paper Eq. 9).

SyncTalk renders only through torch-ngp's ``raymarching`` CUDA extension (``renderer.py`` has no PyTorch path). This
module replaces the parts SyncTalk uses, with the same conventions, as plain differentiable tensor code that runs on CPU
and GPU. Conventions, as read in the upstream sources: ZiqiaoPeng/SyncTalk ``main.py`` (defaults), ``nerf_triplane/
{renderer,provider,utils}.py``; the extension's Python side from a SyncTalk fork (Ryuukeisyou/SyncTalk
``raymarching/raymarching.py``); its kernels from ER-NeRF's ``raymarching/src/raymarching.cu`` as vendored in
lipku/LiveTalking (SyncTalk's own .cu was not available; the fork binds the same ``*_triplane`` kernel signatures):

- ``get_rays`` (SyncTalk ``nerf_triplane/utils.py``): pixel centres at (col + 0.5, row + 0.5); camera-space direction
  ((u - cx) / fx, (v - cy) / fy, 1), normalised, rotated by the c2w rotation (d @ R^T); origin = c2w translation;
  pixel index = row * W + col.
- ``nerf_matrix_to_ngp`` (SyncTalk ``nerf_triplane/provider.py``, called with ``--scale 4 --offset 0 0 0``): rows
  (1, 2, 0) of the pose, columns 1 and 2 negated, translation * scale + offset.
- ``near_far_from_aabb`` (raymarching ``kernel_near_far_from_aabb``): slab intersection with the axis-aligned box
  (xmin, ymin, zmin, xmax, ymax, zmax); a miss gives near = far = float32 max; near is raised to ``min_near``.
  SyncTalk's box is [-1, -0.5, -1]..[1, 0.5, 1] (bound 1, y halved) and min_near 0.05.
- density grid (``renderer.py`` ``mark_untrained_grid`` / ``update_extra_state``; raymarching ``packbits``,
  ``morton3D``, ``morton3D_dilation``): one 128^3 cascade over [-bound, bound]^3 for bound 1, stored as SyncTalk stores
  it (buffers ``density_grid`` (1, 128^3) float and ``density_bitfield`` (128^3 / 8,) uint8, both in Morton order, so
  an upstream ``ngp_ep*.pth``'s grid loads as is). Cells outside every training camera's frustum are set to -1 once;
  every ``grid_update_every`` (16) training steps the density is queried at jittered cell centres, max-dilated over the 6
  face neighbours, merged as max(old * 0.95, new) where both are >= 0, and the bitfield is set where
  density > min(mean(max(density, 0)), density_thresh = 10).
- marching (``kernel_march_rays_train``): samples at t0 = near + clamp(near * dt_gamma, dt_min, dt_max) * U[0, 1)
  (noise only when ``perturb``), then t += dt(t) with dt(t) = clamp(t * dt_gamma, dt_min, dt_max),
  dt_max = 2 sqrt(3) / 128 (one cascade), dt_min = min(dt_max, 2 sqrt(3) / max_steps); dt_gamma = 1/256 and
  max_steps = 16 in SyncTalk, so every step (for t < 6.9) is 2 sqrt(3) / 128 ~ 0.0271. A sample is emitted where its
  cell is occupied; points are clamped to [-bound, bound]; at most ``max_steps`` samples per ray; deltas = (dt, t + dt).
  The CUDA kernel jumps over an empty cell by adding dt until it crosses the cell boundary, i.e. it visits the same
  t lattice; here every lattice point is tested (one vectorised step for all live rays at a time), which emits the
  same samples.
- compositing (``composite_rays_train_triplane``): alpha = 1 - exp(-sigma * dt), w = alpha * T with T the
  transmittance before the sample; a ray stops after the sample that brings T below ``T_thresh`` (1e-4 in SyncTalk,
  training and test); depth = sum w (t + dt). SyncTalk sums the audio/eye "ambient" norms *unweighted* over the
  included samples (``summed_extras`` here) and the uncertainty *weighted* by w (``extras``). The caller adds the
  background: pixel = rgb + (1 - weights_sum) * bg.

Differences from the CUDA path: no ``mean_count`` budget (the extension may drop rays when a step produces more points
than the running mean; here every ray is marched), one cascade only (bound <= 1), and gradients are PyTorch's exact
derivatives of the composited quantities (the extension's backward ignores the depth gradient and the sigma gradient of
the summed ambients, which autograd also gives as 0 for the latter).

Precision: marching, the density grid and compositing always run in float32 with autocast disabled (transmittance
products are not safe in half precision; the extension also casts them to float32). Only the caller's MLPs should run
under ``torch.autocast`` on CUDA; their half outputs are cast to float32 here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

SYNCTALK_AABB = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
MIN_NEAR = 0.05
MAX_STEPS = 16
DT_GAMMA = 1.0 / 256
GRID_RESOLUTION = 128
DENSITY_THRESH = 10.0
EMA_DECAY = 0.95
T_THRESH = 1e-4
POSE_SCALE = 4.0
SQRT3 = math.sqrt(3.0)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _no_autocast(tensor: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def nerf_matrix_to_ngp(pose, scale: float = POSE_SCALE, offset: Sequence[float] = (0.0, 0.0, 0.0)):
    """Convert NeRF/OpenGL camera-to-world matrices (..., 4, 4) to torch-ngp's convention (same type: numpy or torch).

    New rows are the old rows (1, 2, 0); columns 1 and 2 (camera y and z) are negated; the translation is scaled and
    offset. Returns float32.
    """
    is_tensor = isinstance(pose, torch.Tensor)
    matrix = pose.detach().cpu().double().numpy() if is_tensor else np.asarray(pose, dtype=np.float64)
    rows = matrix[..., [1, 2, 0], :]
    converted = np.zeros_like(matrix)
    converted[..., :3, :3] = rows[..., :3] * np.array([1.0, -1.0, -1.0])
    converted[..., :3, 3] = rows[..., 3] * scale + np.asarray(offset, dtype=np.float64)
    converted[..., 3, 3] = 1.0
    converted = converted.astype(np.float32)
    return torch.from_numpy(converted).to(pose.device) if is_tensor else converted


def get_rays(
    c2w: torch.Tensor,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    height: int,
    width: int,
    pixel_index: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres of B cameras: (rays_o, rays_d), each (B, N, 3), rays_d unit length.

    ``pixel_index`` (N,) or (B, N) holds row * width + col; None means every pixel in row-major order.
    """
    with _no_autocast(c2w):
        c2w = c2w.float()
        batch = c2w.shape[0]
        if pixel_index is None:
            pixel_index = torch.arange(height * width, device=c2w.device)
        pixel_index = pixel_index.to(c2w.device).long().expand(batch, -1)
        u = (pixel_index % width).float() + 0.5
        v = torch.div(pixel_index, width, rounding_mode="floor").float() + 0.5
        directions = torch.stack([(u - cx) / fx, (v - cy) / fy, torch.ones_like(u)], dim=-1)
        directions = directions / directions.norm(dim=-1, keepdim=True)
        rays_d = directions @ c2w[:, :3, :3].transpose(-1, -2)
        rays_o = c2w[:, None, :3, 3].expand_as(rays_d)
    return rays_o, rays_d


def near_far_from_aabb(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    aabb: Sequence[float] | torch.Tensor = SYNCTALK_AABB,
    min_near: float = MIN_NEAR,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit distances (N,) of rays (N, 3) with the box; misses get near = far = float32 max."""
    with _no_autocast(rays_o):
        rays_o, rays_d = rays_o.float().reshape(-1, 3), rays_d.float().reshape(-1, 3)
        box = torch.as_tensor(aabb, dtype=torch.float32, device=rays_o.device)
        inverse = 1.0 / rays_d
        t_low = (box[:3] - rays_o) * inverse
        t_high = (box[3:] - rays_o) * inverse
        near = torch.fmin(t_low, t_high).nan_to_num(nan=-math.inf).amax(dim=-1)
        far = torch.fmax(t_low, t_high).nan_to_num(nan=math.inf).amin(dim=-1)
        miss = near > far
        near = near.clamp(min=min_near)
        near = near.masked_fill(miss, FLOAT32_MAX)
        far = far.masked_fill(miss, FLOAT32_MAX)
    return near, far


def morton3d(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Morton (Z-order) code interleaving the bits of x, y, z (x lowest), for coordinates below 1024."""

    def expand_bits(value: torch.Tensor) -> torch.Tensor:
        value = value.long()
        value = (value * 0x00010001) & 0xFF0000FF
        value = (value * 0x00000101) & 0x0F00F00F
        value = (value * 0x00000011) & 0xC30C30C3
        value = (value * 0x00000005) & 0x49249249
        return value

    return expand_bits(x) | (expand_bits(y) << 1) | (expand_bits(z) << 2)


class DensityGrid(nn.Module):
    """SyncTalk's occupancy grid: EMA density per cell (Morton order) and its thresholded bitfield.

    ``density_grid`` (1, R^3) and ``density_bitfield`` (R^3 / 8,) are the state-dict entries, named and laid out as in
    SyncTalk's renderer; cells unseen by every training camera hold -1 and stay empty.
    """

    def __init__(self, resolution: int = GRID_RESOLUTION, bound: float = 1.0,
                 density_thresh: float = DENSITY_THRESH) -> None:
        super().__init__()
        if bound > 1:
            raise ValueError(f"DensityGrid supports one cascade (bound <= 1), got bound={bound}")
        if resolution % 2 or resolution > 1024:
            raise ValueError(f"grid resolution must be even and at most 1024, got {resolution}")
        self.resolution = resolution
        self.bound = float(bound)
        self.density_thresh = float(density_thresh)
        self.mean_density = 0.0
        cells = resolution**3
        self.register_buffer("density_grid", torch.zeros(1, cells))
        self.register_buffer("density_bitfield", torch.zeros(cells // 8, dtype=torch.uint8))
        axis = torch.arange(resolution)
        grid_x, grid_y, grid_z = torch.meshgrid(axis, axis, axis, indexing="ij")
        self.register_buffer("dense_to_morton", morton3d(grid_x, grid_y, grid_z).reshape(-1), persistent=False)

    @property
    def half_cell(self) -> float:
        return self.bound / self.resolution

    def cell_centres(self) -> torch.Tensor:
        """World positions (R^3, 3) of the cell centres, in dense (x, y, z) row-major order."""
        axis = -self.bound + (2 * torch.arange(self.resolution, device=self.density_grid.device) + 1) * self.half_cell
        grid_x, grid_y, grid_z = torch.meshgrid(axis, axis, axis, indexing="ij")
        return torch.stack([grid_x, grid_y, grid_z], dim=-1).reshape(-1, 3)

    def dense_density(self) -> torch.Tensor:
        """The EMA density as a dense (R, R, R) tensor indexed [x, y, z]."""
        return self.density_grid[0, self.dense_to_morton].view(self.resolution, self.resolution, self.resolution)

    def occupancy(self) -> torch.Tensor:
        """The bitfield as a dense bool (R, R, R) tensor indexed [x, y, z]."""
        shifts = torch.arange(8, device=self.density_bitfield.device, dtype=torch.uint8)
        bits = ((self.density_bitfield.unsqueeze(-1) >> shifts) & 1).reshape(-1).bool()
        return bits[self.dense_to_morton].view(self.resolution, self.resolution, self.resolution)

    @torch.no_grad()
    def mark_untrained(self, c2w: torch.Tensor, fx: float, fy: float, cx: float, cy: float,
                       cells_per_chunk: int = 1 << 15, poses_per_chunk: int = 64) -> None:
        """Set cells seen by no camera to -1 (SyncTalk's test: z > 0, |x| < cx/fx z + 2h, |y| < cy/fy z + 2h).

        Cost is cells x poses; on CPU pass a subsample of the training poses.
        """
        c2w = c2w.to(self.density_grid.device).float()
        centres = self.cell_centres()
        margin = 2 * self.half_cell
        seen = torch.zeros(centres.shape[0], dtype=torch.bool, device=centres.device)
        for start in range(0, centres.shape[0], cells_per_chunk):
            world = centres[start:start + cells_per_chunk]
            for first in range(0, c2w.shape[0], poses_per_chunk):
                poses = c2w[first:first + poses_per_chunk]
                camera = (world.unsqueeze(0) - poses[:, None, :3, 3]) @ poses[:, :3, :3]  # R^T (p - t)
                depth = camera[..., 2]
                inside = (depth > 0) & (camera[..., 0].abs() < cx / fx * depth + margin)
                inside &= camera[..., 1].abs() < cy / fy * depth + margin
                seen[start:start + cells_per_chunk] |= inside.any(dim=0)
        self.density_grid[0, self.dense_to_morton[~seen]] = -1

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], decay: float = EMA_DECAY,
               points_per_chunk: int = 1 << 18, generator: torch.Generator | None = None) -> None:
        """Re-query ``density_fn`` ((n, 3) -> (n,) sigma) at jittered cell centres and refresh grid and bitfield."""
        centres = self.cell_centres()
        jitter = torch.rand(centres.shape, generator=generator, device=centres.device) * 2 - 1
        points = centres + jitter * self.half_cell
        sigma = torch.cat([
            density_fn(points[start:start + points_per_chunk]).reshape(-1).float()
            for start in range(0, points.shape[0], points_per_chunk)
        ])
        fresh = torch.empty_like(self.density_grid[0])
        fresh[self.dense_to_morton] = self._dilate(sigma.view(self.resolution, self.resolution, self.resolution))
        grid = self.density_grid[0]
        valid = (grid >= 0) & (fresh >= 0)
        grid[valid] = torch.maximum(grid[valid] * decay, fresh[valid])
        self.mean_density = grid.clamp(min=0).mean().item()
        self.pack_bits(min(self.mean_density, self.density_thresh))

    @staticmethod
    def _dilate(density: torch.Tensor) -> torch.Tensor:
        """Max over each cell and its 6 face neighbours (raymarching's morton3D_dilation), flattened [x, y, z]."""
        dilated = density.clone()
        for axis in range(3):
            length = density.shape[axis]
            lower, upper = density.narrow(axis, 0, length - 1), density.narrow(axis, 1, length - 1)
            dilated.narrow(axis, 1, length - 1).copy_(torch.maximum(dilated.narrow(axis, 1, length - 1), lower))
            dilated.narrow(axis, 0, length - 1).copy_(torch.maximum(dilated.narrow(axis, 0, length - 1), upper))
        return dilated.reshape(-1)

    @torch.no_grad()
    def pack_bits(self, threshold: float) -> None:
        """density_bitfield[n] bit i = density_grid[8 n + i] > threshold (raymarching's packbits)."""
        bits = (self.density_grid[0] > threshold).view(-1, 8).to(torch.uint8)
        weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
        self.density_bitfield.copy_((bits * weights).sum(dim=-1, dtype=torch.uint8))


@dataclass
class RaySamples:
    """Packed samples of N rays, ray-major and in increasing t within a ray (the layout ``composite`` expects)."""

    positions: torch.Tensor  # (M, 3) sample points, clamped to [-bound, bound]
    directions: torch.Tensor  # (M, 3) their ray directions
    deltas: torch.Tensor  # (M, 2) (dt, t + dt) as in the extension
    ts: torch.Tensor  # (M,) sample distances along the ray
    ray_index: torch.Tensor  # (M,) int64 ray of each sample
    counts: torch.Tensor  # (N,) int64 samples per ray


@torch.no_grad()
def march_rays(
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    nears: torch.Tensor,
    fars: torch.Tensor,
    grid: DensityGrid,
    max_steps: int = MAX_STEPS,
    dt_gamma: float = DT_GAMMA,
    perturb: bool = False,
    generator: torch.Generator | None = None,
) -> RaySamples:
    """Sample rays (N, 3) inside [near, far) on SyncTalk's step lattice, keeping points in occupied cells only."""
    with _no_autocast(rays_o):
        rays_o, rays_d = rays_o.float().reshape(-1, 3), rays_d.float().reshape(-1, 3)
        nears, fars = nears.float().reshape(-1), fars.float().reshape(-1)
        device, count = rays_o.device, rays_o.shape[0]
        resolution, bound = grid.resolution, grid.bound
        dt_max = 2 * SQRT3 / resolution
        dt_min = min(dt_max, 2 * SQRT3 / max_steps)
        gamma = torch.tensor(dt_gamma, dtype=torch.float32, device=device)
        noise = torch.rand(count, generator=generator, device=device) if perturb else torch.zeros(count, device=device)
        t = nears + (nears * gamma).clamp(dt_min, dt_max) * noise
        occupancy = grid.occupancy().reshape(-1)
        sample_t = torch.zeros(count, max_steps, device=device)
        taken = torch.zeros(count, dtype=torch.int64, device=device)
        alive = torch.nonzero(t < fars).squeeze(-1)
        t = t[alive]
        while alive.numel():
            origin, direction = rays_o[alive], rays_d[alive]
            point = (origin + t.unsqueeze(-1) * direction).clamp(-bound, bound)
            cell = (0.5 * (point / bound + 1) * resolution).clamp(0, resolution - 1).long()
            occupied = occupancy[(cell[:, 0] * resolution + cell[:, 1]) * resolution + cell[:, 2]]
            hit_rays = alive[occupied]
            sample_t[hit_rays, taken[hit_rays]] = t[occupied]
            taken[hit_rays] += 1
            t = t + (t * gamma).clamp(dt_min, dt_max)
            keep = (t < fars[alive]) & (taken[alive] < max_steps)
            alive, t = alive[keep], t[keep]
        ray_index, step = torch.nonzero(torch.arange(max_steps, device=device) < taken.unsqueeze(-1), as_tuple=True)
        ts = sample_t[ray_index, step]
        directions = rays_d[ray_index]
        positions = (rays_o[ray_index] + ts.unsqueeze(-1) * directions).clamp(-bound, bound)
        dts = (ts * gamma).clamp(dt_min, dt_max)
    return RaySamples(positions, directions, torch.stack([dts, ts + dts], dim=-1), ts, ray_index, taken)


@dataclass
class Composited:
    """Per-ray results of ``composite``; ``weights`` are per sample."""

    rgb: torch.Tensor  # (N, 3), without background
    depth: torch.Tensor  # (N,) sum of w * (t + dt)
    weights_sum: torch.Tensor  # (N,) opacity
    weights: torch.Tensor  # (M,)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # (N,) sum of w * value
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # (N,) plain sum of value over included samples


def composite(
    sigmas: torch.Tensor,
    rgbs: torch.Tensor,
    deltas: torch.Tensor,
    ray_index: torch.Tensor,
    n_rays: int,
    T_thresh: float = T_THRESH,
    extras: dict[str, torch.Tensor] | None = None,
    summed_extras: dict[str, torch.Tensor] | None = None,
) -> Composited:
    """Differentiable front-to-back compositing of packed samples (ray-major, increasing t within each ray).

    ``extras`` (per-sample scalars, e.g. uncertainty) are composited with the weights; ``summed_extras`` (e.g.
    SyncTalk's ambient audio/eye norms) are summed over the samples the ray includes before termination.
    """
    with _no_autocast(sigmas):
        sigmas, rgbs, deltas = sigmas.float().reshape(-1), rgbs.float(), deltas.float()
        ray_index = ray_index.long()
        samples = sigmas.shape[0]
        if samples and bool((ray_index[1:] < ray_index[:-1]).any()):
            raise ValueError("composite needs the samples of each ray contiguous and rays in increasing order")
        counts = torch.bincount(ray_index, minlength=n_rays)
        first = torch.cumsum(counts, dim=0) - counts
        step = torch.arange(samples, device=sigmas.device) - first[ray_index]
        width = int(counts.max()) if samples else 0
        optical = sigmas * deltas[:, 0]
        table = sigmas.new_zeros(n_rays, width + 1).index_put((ray_index, step + 1), optical)
        before = table[:, :-1].cumsum(dim=1)[ray_index, step]  # optical depth in front of each sample
        transmittance = torch.exp(-before)
        included = (transmittance >= T_thresh).float()
        weights = -torch.expm1(-optical) * transmittance * included

        def per_ray(values: torch.Tensor) -> torch.Tensor:
            return values.new_zeros(n_rays, *values.shape[1:]).index_add(0, ray_index, values)

        result = Composited(
            rgb=per_ray(weights.unsqueeze(-1) * rgbs),
            depth=per_ray(weights * deltas[:, 1]),
            weights_sum=per_ray(weights),
            weights=weights,
        )
        for name, values in (extras or {}).items():
            result.extras[name] = per_ray(weights * values.float().reshape(-1))
        for name, values in (summed_extras or {}).items():
            result.sums[name] = per_ray(included * values.float().reshape(-1))
    return result
