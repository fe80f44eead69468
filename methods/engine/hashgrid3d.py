"""torch-ngp's 3-D multiresolution hash encoding (``gridencoder``, ``input_dim=3``) in plain PyTorch.

Follows ``RAD-NeRF/gridencoder/grid.py`` (``GridEncoder.__init__``: table sizes and offsets; ``GridEncoder.forward``:
mapping of [-bound, bound] to [0, 1]) and the kernel conventions documented in :mod:`bench.methods.engine.hashgrid`
(torch-ngp ``gridencoder.cu``), which this module shares through :class:`HashGridConfig`, :func:`per_level_scale`
and :func:`kernel_scales`:

- defaults as ``GridEncoder``'s: 16 levels x 2 features, base resolution 16, 2**19 rows per level, growth 2 per
  level (``desired_resolution=None``; here the equivalent 16 * 2**15), ``gridtype='hash'``, ``align_corners=False``;
- table sizes: resolution_l = ceil(base * per_level_scale**l),
  size_l = min(2**log2_hashmap_size, (resolution_l + 1)**3) (resolution_l**3 with align_corners), rounded up to a
  multiple of 8; ``offsets`` is their int32 prefix sum and ``embeddings`` one (offsets[-1], level_dim) parameter, so a
  released ``GridEncoder`` state dict loads unchanged;
- kernel: float32 scale_l = exp2f(l * log2(per_level_scale)) * base - 1, resolution_l = ceil(scale_l) + 1,
  position = x01 * scale_l + 0.5 (+ 0 with align_corners), trilinear weights from its fractional part;
- corner row: dense x + y * s + z * s**2 with s = resolution_l + 1 (resolution_l with align_corners) when s**3 fits
  the level's table, else (x * 1) XOR (y * 2654435761) XOR (z * 805459861) in uint32; then modulo the table size;
- points with a coordinate outside [0, 1] after the mapping encode to 0 and get no gradient;
- output (..., L * F), level-major; initialisation U(-1e-4, 1e-4).

Differences: RAD-NeRF's own network (``nerf/network.py``, ``encoder``/``encoder_ambient``) builds this encoder as
``'tiledgrid'`` (``gridtype='tiled'``: never hashed, the dense index taken modulo the table size); only the
``'hash'`` grid type is implemented here. ``smoothstep`` interpolation, ``grad_total_variation`` and the
input-gradient kernel (``dy_dx``) are not reproduced (input gradients come from autograd instead). The CUDA source
itself is not in ``/work/shared/upstream`` (only ``grid.py``); the kernel arithmetic and primes are the torch-ngp
conventions recorded in :mod:`bench.methods.engine.hashgrid`. Computation is always float32 (no half embeddings under
autocast).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bench.methods.engine.hashgrid import (
    HASH_PRIME_Y,
    INIT_RANGE,
    UINT32_MASK,
    HashGridConfig,
    _check_loaded_offsets,
    kernel_scales,
    per_level_scale,
)

HASH_PRIME_Z = 805459861  # torch-ngp's third "coherent prime"
HASH_PRIMES = (1, HASH_PRIME_Y, HASH_PRIME_Z)
POINTS_PER_CHUNK = 1 << 13  # bounds the (levels, points, 8, 3) int64 temporaries (about 25 MB at 16 levels)

# GridEncoder's constructor defaults (gridencoder/grid.py): per_level_scale 2 over 16 levels from 16.
DEFAULT_CONFIG = HashGridConfig(num_levels=16, level_dim=2, base_resolution=16, desired_resolution=16 * 2**15,
                                log2_hashmap_size=19)
# RAD-NeRF's head encoder (nerf/network.py, ``self.encoder``): 16 x 2, 16 -> 2048 * bound, 2**16 rows (built there
# as 'tiledgrid'; pass desired_resolution=2048 * bound for another bound).
RAD_NERF_CONFIG = HashGridConfig(num_levels=16, level_dim=2, base_resolution=16, desired_resolution=2048,
                                 log2_hashmap_size=16)


def torch_ngp_offsets_3d(config: HashGridConfig, align_corners: bool = False) -> list[int]:
    """Row offset of each level (L + 1 entries), as ``GridEncoder.__init__`` allocates them for ``input_dim=3``."""
    scale = per_level_scale(config)
    offsets = [0]
    for level in range(config.num_levels):
        resolution = int(np.ceil(config.base_resolution * scale**level))
        side = resolution if align_corners else resolution + 1
        rows = min(2**config.log2_hashmap_size, side**3)
        offsets.append(offsets[-1] + int(np.ceil(rows / 8) * 8))
    return offsets


def _kernel_strides(config: HashGridConfig, align_corners: bool) -> np.ndarray:
    """Per-level dense stride: kernel resolution ceil(scale) + 1, plus one vertex without align_corners."""
    return np.ceil(kernel_scales(config)).astype(np.int64) + (1 if align_corners else 2)


class HashGrid3D(nn.Module):
    """torch-ngp ``GridEncoder(input_dim=3, gridtype='hash')``: (..., 3) in [-bound, bound] -> (..., L * F).

    Holds ``embeddings`` (rows, level_dim) and the int32 buffer ``offsets`` under torch-ngp's names; the per-level
    kernel constants are non-persistent buffers (they follow ``.to()`` but are not saved).
    """

    def __init__(self, config: HashGridConfig = DEFAULT_CONFIG, bound: float = 1.0, align_corners: bool = False) -> None:
        super().__init__()
        self.config = config
        self.bound = float(bound)
        self.align_corners = align_corners
        self.output_dim = config.output_dim
        self._layout = torch_ngp_offsets_3d(config, align_corners)
        self.register_buffer("offsets", torch.tensor(self._layout, dtype=torch.int32))
        self.embeddings = nn.Parameter(torch.empty(self._layout[-1], config.level_dim))
        nn.init.uniform_(self.embeddings, -INIT_RANGE, INIT_RANGE)
        self.register_load_state_dict_post_hook(_check_loaded_offsets)

        layout = np.asarray(self._layout, dtype=np.int64)
        sizes = np.diff(layout)
        strides = _kernel_strides(config, align_corners)
        levels = (-1, 1, 1)  # broadcast over (levels, points, corners)
        self.register_buffer("level_scales", torch.from_numpy(kernel_scales(config)).view(-1, 1, 1), persistent=False)
        self.register_buffer("level_sizes", torch.from_numpy(sizes).view(levels), persistent=False)
        self.register_buffer("level_starts", torch.from_numpy(layout[:-1]).view(levels), persistent=False)
        self.register_buffer("level_hashed", torch.from_numpy(strides**3 > sizes).view(levels), persistent=False)
        dense_steps = np.stack([np.ones_like(strides), strides, strides**2], axis=-1)  # (L, 3): 1, s, s^2
        self.register_buffer("dense_steps", torch.from_numpy(dense_steps).view(-1, 1, 1, 3), persistent=False)
        self.register_buffer("primes", torch.tensor(HASH_PRIMES, dtype=torch.int64), persistent=False)
        corner_bits = [[(corner >> axis) & 1 for axis in range(3)] for corner in range(8)]  # bit d: +1 along axis d
        self.register_buffer("corner_bits", torch.tensor(corner_bits, dtype=torch.int64), persistent=False)

    def _encode_unit(self, unit: torch.Tensor) -> torch.Tensor:
        """Trilinear lookup of points (n, 3) already clamped to [0, 1] -> (L, n, F), all levels and corners at once."""
        offset = 0.0 if self.align_corners else 0.5
        position = unit.unsqueeze(0) * self.level_scales + offset  # (L, n, 3), float32 as the kernel
        cell = position.floor()
        frac = position - cell
        corners = cell.long().unsqueeze(2) + self.corner_bits  # (L, n, 8, 3)
        dense = (corners * self.dense_steps).sum(dim=-1)
        scrambled = corners * self.primes
        hashed = (scrambled[..., 0] ^ scrambled[..., 1] ^ scrambled[..., 2]) & UINT32_MASK
        rows = torch.where(self.level_hashed, hashed, dense) % self.level_sizes + self.level_starts  # (L, n, 8)
        frac = frac.unsqueeze(2)  # (L, n, 1, 3)
        weights = torch.where(self.corner_bits.bool(), frac, 1 - frac).prod(dim=-1)  # (L, n, 8)
        values = self.embeddings[rows]  # (L, n, 8, F)
        return (values * weights.unsqueeze(-1)).sum(dim=2)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Encode points (..., 3) in [-bound, bound]; float32 output (..., L * F), 0 for points outside the cube."""
        prefix = inputs.shape[:-1]
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            unit = ((inputs.float() + self.bound) / (2 * self.bound)).reshape(-1, 3)
            inside = ((unit >= 0) & (unit <= 1)).all(dim=-1)
            clamped = unit.clamp(0, 1)
            chunks = [self._encode_unit(clamped[start : start + POINTS_PER_CHUNK])
                      for start in range(0, len(clamped), POINTS_PER_CHUNK)]
            levels = torch.cat(chunks, dim=1) if chunks else clamped.new_zeros(self.config.num_levels, 0,
                                                                               self.config.level_dim)
            features = (levels * inside.view(1, -1, 1)).permute(1, 0, 2).reshape(-1, self.output_dim)
        return features.reshape(*prefix, self.output_dim)


def reference_encode(grid: HashGrid3D, x: torch.Tensor) -> torch.Tensor:
    """Plain reference of :meth:`HashGrid3D.forward`: one level and one of the 8 corners at a time.

    Positions are computed in float32 as the CUDA kernel does; weights and sums in float64. Returns float64
    (..., L * F), 0 for points outside [-bound, bound]^3.
    """
    config = grid.config
    prefix = x.shape[:-1]
    table = grid.embeddings.double()
    offsets = grid.offsets.tolist()
    unit = ((x.float() + grid.bound) / (2 * grid.bound)).reshape(-1, 3)
    inside = ((unit >= 0) & (unit <= 1)).all(dim=-1)
    unit = unit.clamp(0, 1)
    outputs = []
    for level, scale in enumerate(kernel_scales(config)):
        side = math.ceil(scale) + 1 + (0 if grid.align_corners else 1)
        size = offsets[level + 1] - offsets[level]
        position = unit * torch.tensor(scale, dtype=torch.float32) + (0.0 if grid.align_corners else 0.5)
        cell = position.floor()
        frac = (position - cell).double()
        cell = cell.long()
        value = torch.zeros(len(unit), config.level_dim, dtype=torch.float64)
        for corner in range(8):
            weight = torch.ones(len(unit), dtype=torch.float64)
            coords = []
            for axis in range(3):
                bit = (corner >> axis) & 1
                weight = weight * (frac[:, axis] if bit else 1 - frac[:, axis])
                coords.append(cell[:, axis] + bit)
            if side**3 <= size:
                index = coords[0] + coords[1] * side + coords[2] * side * side
            else:
                index = ((coords[0] * HASH_PRIMES[0]) ^ (coords[1] * HASH_PRIMES[1]) ^ (coords[2] * HASH_PRIMES[2]))
                index = index & UINT32_MASK
            value = value + weight.unsqueeze(-1) * table[offsets[level] + index % size]
        outputs.append(value)
    encoded = torch.cat(outputs, dim=-1) * inside.unsqueeze(-1)
    return encoded.reshape(*prefix, config.num_levels * config.level_dim)
