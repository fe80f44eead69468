"""SyncTalk's renderer and head field against plain references (values and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.methods.synctalk import raymarch
from bench.methods.synctalk.model import mirror_index
from bench.methods.synctalk.network import HeadField, region_boxes, sh_orthonormality_error


def _reference_composite(sigmas, rgbs, deltas, counts, t_thresh=1e-4):
    """Per-ray Python loop of Eq. 9 with the released transmittance cut-off."""
    images, sums, start = [], [], 0
    for count in counts:
        transmittance, colour, total = torch.ones((), dtype=rgbs.dtype), torch.zeros(3, dtype=rgbs.dtype), torch.zeros((), dtype=rgbs.dtype)
        for k in range(start, start + count):
            alpha = 1 - torch.exp(-sigmas[k] * deltas[k])
            weight = alpha * transmittance if float(transmittance.detach()) >= t_thresh else alpha * 0
            colour = colour + weight * rgbs[k]
            total = total + weight
            transmittance = transmittance * (1 - alpha)
        images.append(colour)
        sums.append(total)
        start += count
    return torch.stack(images), torch.stack(sums)


def test_composite_matches_a_per_ray_loop_in_values_and_gradients():
    generator = torch.Generator().manual_seed(0)
    keep = torch.rand(6, 16, generator=generator) > 0.3
    keep[2] = False  # a ray with no samples
    n = int(keep.sum())
    sigmas = (torch.rand(n, generator=generator, dtype=torch.float64) * 8).requires_grad_()
    rgbs = torch.rand(n, 3, generator=generator, dtype=torch.float64).requires_grad_()
    deltas = torch.full((n,), 0.15, dtype=torch.float64)
    ray_index = torch.arange(6).unsqueeze(-1).expand(-1, 16)[keep]
    samples = raymarch.Samples(torch.zeros(n, 3), torch.zeros(n, 3), deltas, torch.linspace(0, 1, n, dtype=torch.float64), ray_index, keep)
    out = raymarch.composite(sigmas, rgbs, samples)
    image, weights = _reference_composite(sigmas, rgbs, deltas, keep.sum(1).tolist())
    assert torch.allclose(out["rgb"], image) and torch.allclose(out["weights_sum"], weights)
    assert float(out["weights_sum"][2]) == 0
    grads = torch.autograd.grad(out["rgb"].sum() + out["weights_sum"].sum(), (sigmas, rgbs))
    reference = torch.autograd.grad(image.sum() + weights.sum(), (sigmas, rgbs))
    for got, want in zip(grads, reference):
        assert torch.allclose(got, want, atol=1e-10)


def test_rays_aabb_and_occupancy():
    pose = torch.eye(4)[None]
    pose[0, 2, 3] = -3.0  # camera on the -z axis looking along +z at the box
    rays_o, rays_d = raymarch.get_rays(pose, 100.0, 100.0, 32.0, 32.0, 64, 64)
    centre = rays_d[0, 32 * 64 + 32]
    assert torch.allclose(centre, torch.tensor([0.5 / 100, 0.5 / 100, 1.0]) / math.hypot(1, 0.005, 0.005), atol=1e-6)
    aabb = torch.tensor([-1.0, -0.5, -1.0, 1.0, 0.5, 1.0])
    near, far = raymarch.near_far_from_aabb(rays_o[0], rays_d[0], aabb)
    assert abs(float(near[32 * 64 + 32]) - 2.0) < 1e-3 and abs(float(far[32 * 64 + 32]) - 4.0) < 1e-3
    grid = raymarch.DensityGrid(8, tuple(aabb.tolist()))
    grid.density.zero_()
    grid.density[4:, :, :] = 100.0  # only the +x half is occupied
    samples = raymarch.march_rays(rays_o[0], rays_d[0], near, far, grid, max_steps=16)
    assert len(samples.positions) and bool((samples.positions[:, 0] >= -1e-6).all())
    grid.density.zero_()
    assert len(raymarch.march_rays(rays_o[0], rays_d[0], near, far, grid).positions) == 0


def test_density_grid_update_marks_where_the_field_is_dense():
    aabb = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
    grid = raymarch.DensityGrid(16, aabb)
    for _ in range(40):  # the EMA forgets the all-occupied start
        grid.update(lambda p: (p.norm(dim=-1) < 0.4).float() * 50, torch.Generator().manual_seed(1))
    assert bool(grid.occupied(torch.zeros(1, 3)))
    assert not bool(grid.occupied(torch.tensor([[0.9, 0.0, 0.9]])))


def test_spherical_harmonics_are_orthonormal():
    assert sh_orthonormality_error() < 0.02


def test_head_field_masks_attention_to_regions_and_backpropagates():
    vertices = torch.tensor(np.random.default_rng(0).normal(size=(468, 3)) * 0.1, dtype=torch.float32)
    vertices[1] = torch.tensor([0.0, 0.0, 0.0])  # nose tip at the origin
    lip, expression = region_boxes(vertices)
    field = HeadField(expression_dim=7, n_codes=4, lip_box=lip, expression_box=expression, backend="torch")
    below = torch.tensor([[-0.15, 0.0, 0.0]])  # NGP axis 0 is the head's up axis
    above = torch.tensor([[0.15, 0.0, 0.0]])
    out_below = field.density(below, torch.ones(32), torch.ones(7))
    out_above = field.density(above, torch.ones(32), torch.ones(7))
    assert float(out_below["ambient_expression"]) < 0.05 * float(out_above["ambient_expression"]) + 1e-9
    assert float(out_above["ambient_audio"]) < 0.05 * float(out_below["ambient_audio"]) + 1e-9
    points = torch.rand(64, 3) - 0.5
    out = field(points, torch.nn.functional.normalize(torch.randn(64, 3), dim=-1), torch.randn(32), torch.rand(7), 1)
    out["rgb"].sum().backward()
    assert field.encoder.encoder_xy.embeddings.grad is not None and field.color_net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("n", [1, 3, 5])
def test_mirror_index_ping_pongs_over_the_training_frames(n):
    sequence = [mirror_index(i, n) for i in range(3 * n)]
    expected = (list(range(n)) + list(range(n - 1, -1, -1)) + list(range(n)))[: 3 * n]
    assert sequence == expected
