"""Plain-PyTorch ray marching and volume rendering (in place of SyncTalk's raymarching CUDA extension).

- Rays follow torch-ngp's conventions: pixel centres (+0.5), camera looking along +z after ``nerf_matrix_to_ngp``
  (which permutes the axes to (y, z, x), flips the camera's y/z columns and scales translations by 4).
- Samples: ``max_steps`` evenly spaced samples between the ray's entry and exit of the head box (jittered in
  training), keeping only those in occupied cells of the density grid. The released kernel steps by
  clamp(t·dt_gamma, 2√3/max_steps, ...) and skips empty cells; for rays through a box of side 2 both give at most
  ``max_steps`` samples of about the same spacing.
- Compositing (paper Eq. 9): alpha = 1 - exp(-σ·δ), weights = alpha·T with T the transmittance before the sample;
  samples where T < ``T_thresh`` (1e-4) get weight 0, as the released kernel stops there.
- Density grid: a ``resolution``³ grid over the box holding an EMA (decay 0.95, max with the new value) of the
  density at a random point of each cell; a cell is occupied when its value exceeds min(mean, density_thresh = 10).
  Each update re-evaluates a random quarter of the cells plus every occupied cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def nerf_matrix_to_ngp(pose: np.ndarray, scale: float = 4.0, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """torch-ngp's conversion of a camera-to-world matrix (axes (x, y, z) -> (y, z, x), camera y/z flipped)."""
    return np.array(
        [
            [pose[1, 0], -pose[1, 1], -pose[1, 2], pose[1, 3] * scale + offset[0]],
            [pose[2, 0], -pose[2, 1], -pose[2, 2], pose[2, 3] * scale + offset[1]],
            [pose[0, 0], -pose[0, 1], -pose[0, 2], pose[0, 3] * scale + offset[2]],
            [0, 0, 0, 1],
        ],
        dtype=np.float32,
    )


def get_rays(poses: torch.Tensor, fx: float, fy: float, cx: float, cy: float, height: int, width: int,
             pixels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions (B, P, 3) of the rays through ``pixels`` (B, P) row-major indices (all if None)."""
    if pixels is None:
        pixels = torch.arange(height * width, device=poses.device).expand(len(poses), -1)
    i = (pixels % width).float() + 0.5
    j = torch.div(pixels, width, rounding_mode="floor").float() + 0.5
    directions = torch.stack([(i - cx) / fx, (j - cy) / fy, torch.ones_like(i)], dim=-1)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    rays_d = directions @ poses[:, :3, :3].transpose(-1, -2)
    rays_o = poses[:, None, :3, 3].expand_as(rays_d)
    return rays_o, rays_d


def near_far_from_aabb(rays_o: torch.Tensor, rays_d: torch.Tensor, aabb: torch.Tensor, min_near: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test: entry and exit distances of rays (R, 3) through the box [xmin, ymin, zmin, xmax, ymax, zmax].

    Rays that miss the box get near = far (no samples)."""
    inverse = 1.0 / torch.where(rays_d.abs() < 1e-9, torch.full_like(rays_d, 1e-9), rays_d)
    t0 = (aabb[:3] - rays_o) * inverse
    t1 = (aabb[3:] - rays_o) * inverse
    near = torch.minimum(t0, t1).amax(-1).clamp(min=min_near)
    far = torch.maximum(t0, t1).amin(-1)
    far = torch.maximum(far, near)
    return near, far


class DensityGrid(nn.Module):
    def __init__(self, resolution: int, aabb: tuple[float, ...], decay: float = 0.95, density_thresh: float = 10.0) -> None:
        super().__init__()
        self.resolution = resolution
        self.decay = decay
        self.density_thresh = density_thresh
        self.register_buffer("aabb", torch.tensor(aabb, dtype=torch.float32))
        self.register_buffer("density", torch.full((resolution,) * 3, float(density_thresh) + 1.0))  # all occupied at start
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def cell_of(self, points: torch.Tensor) -> torch.Tensor:
        unit = (points - self.aabb[:3]) / (self.aabb[3:] - self.aabb[:3])
        return (unit * self.resolution).long().clamp(0, self.resolution - 1)

    def occupied(self, points: torch.Tensor) -> torch.Tensor:
        cells = self.cell_of(points)
        threshold = min(float(self.density.mean()), self.density_thresh)
        return self.density[cells[:, 0], cells[:, 1], cells[:, 2]] > threshold

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator | None = None, chunk: int = 65536) -> None:
        n = self.resolution
        flat = self.density.view(-1)
        threshold = min(float(self.density.mean()), self.density_thresh)
        chosen = torch.rand(flat.shape, generator=generator) < 0.25
        chosen |= (flat > threshold).cpu()
        index = chosen.nonzero().squeeze(-1).to(flat.device)
        cells = torch.stack([index // (n * n), (index // n) % n, index % n], dim=-1).float()
        jitter = torch.rand(cells.shape, generator=generator).to(flat.device)
        size = self.aabb[3:] - self.aabb[:3]
        points = self.aabb[:3] + (cells + jitter) / n * size
        fresh = torch.cat([density_fn(points[i : i + chunk]).float() for i in range(0, len(points), chunk)]) if len(points) else flat[:0]
        flat[index] = torch.maximum(flat[index] * self.decay, fresh)
        self.updates += 1


@dataclass
class Samples:
    positions: torch.Tensor  # (S, 3)
    directions: torch.Tensor  # (S, 3)
    deltas: torch.Tensor  # (S,)
    ts: torch.Tensor  # (S,) distance along the ray
    ray_index: torch.Tensor  # (S,) sorted ascending
    keep: torch.Tensor  # (R, max_steps) which of the dense samples were kept


def march_rays(rays_o: torch.Tensor, rays_d: torch.Tensor, near: torch.Tensor, far: torch.Tensor, grid: DensityGrid,
               max_steps: int = 16, perturb: bool = False, generator: torch.Generator | None = None) -> Samples:
    """Packed samples of rays (R, 3) in occupied cells, ray-major and in order along each ray."""
    steps = torch.arange(max_steps, device=rays_o.device, dtype=rays_o.dtype)
    offsets = torch.rand((len(rays_o), max_steps), generator=generator).to(rays_o) if perturb else torch.full((len(rays_o), max_steps), 0.5, device=rays_o.device)
    span = (far - near).unsqueeze(-1)
    ts = near.unsqueeze(-1) + (steps + offsets) / max_steps * span
    deltas = (span / max_steps).expand(-1, max_steps)
    positions = rays_o.unsqueeze(1) + ts.unsqueeze(-1) * rays_d.unsqueeze(1)
    keep = (span > 0).expand(-1, max_steps) & grid.occupied(positions.reshape(-1, 3)).reshape(len(rays_o), max_steps)
    ray_index = torch.arange(len(rays_o), device=rays_o.device).unsqueeze(-1).expand(-1, max_steps)
    return Samples(
        positions=positions[keep],
        directions=rays_d.unsqueeze(1).expand(-1, max_steps, -1)[keep],
        deltas=deltas[keep],
        ts=ts[keep],
        ray_index=ray_index[keep],
        keep=keep,
    )


def composite(sigmas: torch.Tensor, rgbs: torch.Tensor, samples: Samples, T_thresh: float = 1e-4,
              extras: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Volume rendering of the packed samples of ``march_rays``: rgb (R, 3), weights_sum, depth and extras (R,).

    Packed values are scattered back to the dense (R, max_steps) layout, so the transmittance is a per-ray cumsum.
    """
    keep = samples.keep
    dense = torch.zeros(keep.shape, dtype=sigmas.dtype, device=sigmas.device)
    optical = dense.masked_scatter(keep, sigmas * samples.deltas)
    before = torch.cumsum(optical, dim=1) - optical
    transmittance = torch.exp(-before)
    weights = (1 - torch.exp(-optical)) * transmittance * (transmittance >= T_thresh)
    packed = weights[keep]
    n_rays = keep.shape[0]

    def per_ray(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros((n_rays, *values.shape[1:]), dtype=values.dtype, device=values.device).index_add(0, samples.ray_index, values)

    out = {
        "rgb": per_ray(packed.unsqueeze(-1) * rgbs),
        "weights_sum": weights.sum(dim=1),
        "depth": per_ray(packed * samples.ts),
    }
    for name, values in (extras or {}).items():
        out[name] = per_ray(packed * values)
    return out
