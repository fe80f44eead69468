"""Tri-plane multiresolution hash encoding (SyncTalk Eq. 10-11) in plain PyTorch, optional tiny-cuda-nn backend.

SyncTalk encodes a point x = (x, y, z) with three 2-D hash grids on the (x, y), (y, z) and (x, z) planes and
concatenates the three feature vectors (paper §3.4, Eq. 11). The released code builds each plane with torch-ngp's
``gridencoder`` CUDA extension (``GridEncoder(input_dim=2, num_levels=12, level_dim=1, base_resolution=64,
log2_hashmap_size=14, desired_resolution=512 * bound)``, ``gridtype='hash'``, ``align_corners=False``).
:class:`HashGrid2D` reproduces that extension's arithmetic and parameter layout so that a released SyncTalk
checkpoint's ``encoder_xy.embeddings`` / ``encoder_xy.offsets`` (and ``_yz``, ``_xz``) load unchanged into the
``"torch"`` backend.

Conventions, as read in the upstream sources (ashawkey/torch-ngp ``gridencoder/src/gridencoder.cu`` and
``gridencoder/grid.py``; the align_corners variant of the same files in ER-NeRF / SyncTalk forks,
``Ryuukeisyou/SyncTalk gridencoder/grid.py``, ``wennjiee/ER-NeRF gridencoder/grid.py``):

- inputs in [-bound, bound] are mapped to [0, 1] by (x + bound) / (2 bound); a point with any coordinate outside [0, 1]
  after that mapping encodes to 0 and receives no gradient;
- per_level_scale = exp2(log2(desired / base) / (L - 1)) (float64, numpy);
- table sizes (Python side): resolution_l = ceil(base * per_level_scale**l),
  size_l = min(2**log2_hashmap_size, (resolution_l + 1)**2), rounded up to a multiple of 8; ``offsets`` is their int32
  prefix sum (L + 1 entries) and ``embeddings`` one flat (offsets[-1], level_dim) parameter;
- kernel side (float32, as the CUDA code): scale_l = exp2f(l * log2(per_level_scale)) * base - 1,
  resolution_l = ceil(scale_l) + 1, position = x01 * scale_l + 0.5, bilinear weights from its fractional part;
- corner index: dense x + y * (resolution_l + 1) when (resolution_l + 1)**2 fits the level's table, else torch-ngp's
  hash (x * 1) XOR (y * 2654435761) in uint32 arithmetic; either is then taken modulo the level's table size;
- output layout (N, L * level_dim), level-major ([level 0 features, level 1 features, ...]);
- initialisation U(-1e-4, 1e-4).
The SyncTalk code's defaults give 4 dense levels (resolutions 64, 78, 94, 113) and 8 hashed levels:
163,584 rows per plane. With level_dim 1 the upstream extension also runs in float32 under autocast (it only casts
embeddings to half when level_dim is even); this implementation always computes in float32.

Not confirmed against a running copy of the extension (no GPU here): bit-exact float32 rounding of the GPU's exp2f. A
level whose scale lies within an ulp of an integer could get another resolution; in both presets the only such levels
are the first and the last, whose scales evaluate to exactly 63 and 511 here.

``backend="tcnn"`` wraps ``tinycudann.Encoding`` (``otype: HashGrid``, ``n_dims`` 2). From tiny-cuda-nn's
``encodings/grid.h`` and ``common_device.h`` (``grid_scale``, ``grid_resolution``, ``grid_index``), its arithmetic
matches the above
(same scale, +0.5 offset, same primes) except for the parameter layout: tiny-cuda-nn sizes a level as
min(2**log2_hashmap_size, ceil8(resolution_l**2)) with resolution_l = ceil(scale_l) + 1 and strides dense levels by
resolution_l (torch-ngp: resolution_l + 1), and keeps all parameters in one flat vector ``tcnn_encoding.params`` of
length (sum of level sizes) * level_dim. Dense levels therefore index different rows, and a torch-backend state dict
(``embeddings``/``offsets``) cannot be loaded into the tcnn backend or vice versa. ``backend="auto"`` picks tcnn when it
imports and CUDA is available, else torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HASH_PRIME_Y = 2654435761  # torch-ngp / tiny-cuda-nn "coherent prime" hash: x * 1 XOR y * 2654435761 (uint32)
UINT32_MASK = 0xFFFFFFFF
INIT_RANGE = 1e-4
POINTS_PER_CHUNK = 1 << 17  # bounds the (levels, points) index/weight temporaries (a few MB each at 12 levels)


@dataclass(frozen=True)
class HashGridConfig:
    """Shape of one planar hash grid: L levels of F features, base..desired resolution, 2**log2_hashmap_size rows."""

    num_levels: int = 12
    level_dim: int = 1
    base_resolution: int = 64
    desired_resolution: int = 512
    log2_hashmap_size: int = 14

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.level_dim


# The released code (nerf_triplane/network.py): 12 levels x 1 feature, 64 -> 512 * bound, 2**14 rows per level
# (desired_resolution here is 512 * bound for SyncTalk's bound 1; pass 512 * bound explicitly for another bound).
CODE_CONFIG = HashGridConfig()
# The paper (§3.4): "2D hash encoder (L=14, F=1)"; the other settings are not stated there and are kept from the code.
PAPER_CONFIG = HashGridConfig(num_levels=14)
PRESETS: dict[str, HashGridConfig] = {"code": CODE_CONFIG, "paper": PAPER_CONFIG}


def tcnn_available() -> bool:
    """True when tinycudann imports and a CUDA device is present (what ``backend="auto"`` requires for tcnn)."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str) -> str:
    """Map "torch" | "tcnn" | "auto" to the backend that will run; "tcnn" without tinycudann+CUDA is an error."""
    if backend == "auto":
        return "tcnn" if tcnn_available() else "torch"
    if backend == "tcnn" and not tcnn_available():
        raise RuntimeError("backend='tcnn' needs tinycudann and a CUDA device; use backend='torch' or 'auto'")
    if backend not in ("torch", "tcnn"):
        raise ValueError(f"unknown hash-grid backend {backend!r}; expected 'torch', 'tcnn' or 'auto'")
    return backend


def per_level_scale(config: HashGridConfig) -> float:
    """Growth factor between levels, exp2(log2(desired / base) / (L - 1)), as torch-ngp's GridEncoder computes it."""
    if config.num_levels == 1:
        return 1.0
    return float(np.exp2(np.log2(config.desired_resolution / config.base_resolution) / (config.num_levels - 1)))


def torch_ngp_offsets(config: HashGridConfig) -> list[int]:
    """Row offset of each level in ``embeddings`` (L + 1 entries), exactly as torch-ngp's grid.py allocates them."""
    scale = per_level_scale(config)
    max_rows = 2**config.log2_hashmap_size
    offsets = [0]
    for level in range(config.num_levels):
        resolution = int(np.ceil(config.base_resolution * scale**level))
        rows = min(max_rows, (resolution + 1) ** 2)
        offsets.append(offsets[-1] + int(np.ceil(rows / 8) * 8))
    return offsets


def kernel_scales(config: HashGridConfig) -> np.ndarray:
    """Per-level float32 scale exp2f(level * log2(per_level_scale)) * base - 1, as the CUDA kernel evaluates it."""
    log2_scale = np.float32(np.log2(per_level_scale(config)))
    levels = np.arange(config.num_levels, dtype=np.float32)
    return (np.exp2(levels * log2_scale) * np.float32(config.base_resolution) - np.float32(1.0)).astype(np.float32)


class _LevelGroup:
    """Constants of a set of levels that share an indexing rule (all dense or all hashed), on one device.

    Corners of a cell are numbered as in the CUDA kernel: bit 0 selects +1 along x, bit 1 along y. Row indices are
    int32 where they cannot overflow: for a power-of-two table only the low log2(size) bits of the uint32 hash survive
    the modulo, and those depend only on the low bits of the prime, so y * (prime mod size) stays far below 2**31.
    """

    def __init__(self, levels: np.ndarray, scales: np.ndarray, strides: np.ndarray, sizes: np.ndarray,
                 starts: np.ndarray, hashed: bool, device: torch.device) -> None:
        def column(values: np.ndarray | int, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(values, dtype=dtype, device=device).view(-1, 1)

        self.levels = torch.as_tensor(levels, dtype=torch.int64, device=device)
        self.scales = column(scales, torch.float32)
        self.hashed = hashed
        max_cell = int(np.ceil(scales.max())) + 2
        power_of_two = bool(np.all((sizes & (sizes - 1)) == 0))
        if hashed and power_of_two:
            low_primes = HASH_PRIME_Y & (sizes - 1)
            self.index_dtype = torch.int32 if max_cell * int(low_primes.max()) < 2**31 else torch.int64
            self.primes = column(low_primes, self.index_dtype)
            self.size_masks = column(sizes - 1, self.index_dtype)
        elif hashed:  # general table size: full uint32 hash, then modulo
            self.index_dtype = torch.int64
            self.primes = column(HASH_PRIME_Y, torch.int64)
            self.size_masks = None
            self.sizes = column(sizes, torch.int64)
        else:
            self.index_dtype = torch.int32 if int((starts + sizes).max()) < 2**31 else torch.int64
            self.strides = column(strides, self.index_dtype)
        self.starts = column(starts, self.index_dtype)

    def cells(self, unit_x: torch.Tensor, unit_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Lower-left vertex (g, n) of each point's cell at every level of the group, and the fractions fx, fy."""
        scales = self.scales.to(unit_x.dtype)
        position_x = unit_x * scales + 0.5
        position_y = unit_y * scales + 0.5
        cell_x, cell_y = position_x.floor(), position_y.floor()
        return cell_x.to(self.index_dtype), cell_y.to(self.index_dtype), position_x - cell_x, position_y - cell_y

    def corner_rows(self, cell_x: torch.Tensor, cell_y: torch.Tensor) -> list[torch.Tensor]:
        """Table rows (g, n) of the 4 corners, in kernel order."""
        if not self.hashed:
            base = cell_x + cell_y * self.strides + self.starts
            return [base, base + 1, base + self.strides, base + self.strides + 1]
        next_x = cell_x + 1
        hash_y0 = cell_y * self.primes
        hash_y1 = hash_y0 + self.primes
        pairs = [(cell_x, hash_y0), (next_x, hash_y0), (cell_x, hash_y1), (next_x, hash_y1)]
        if self.size_masks is not None:
            return [((x ^ y) & self.size_masks) + self.starts for x, y in pairs]
        return [((x ^ (y & UINT32_MASK)) % self.sizes) + self.starts for x, y in pairs]


def _level_groups(config: HashGridConfig, offsets: list[int], device: torch.device) -> list[_LevelGroup]:
    """Split the levels into a dense group and a hashed group (torch-ngp's rule: hash when (res + 1)^2 > table)."""
    scales = kernel_scales(config)
    strides = np.ceil(scales).astype(np.int64) + 2  # kernel resolution ceil(scale) + 1, dense stride resolution + 1
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    sizes = np.diff(np.asarray(offsets, dtype=np.int64))
    hashed = strides**2 > sizes
    groups = []
    for is_hashed in (False, True):
        levels = np.flatnonzero(hashed == is_hashed)
        if levels.size:
            groups.append(_LevelGroup(levels, scales[levels], strides[levels], sizes[levels], starts[levels],
                                      is_hashed, device))
    return groups


def _corner_weights(frac_x: torch.Tensor, frac_y: torch.Tensor) -> list[torch.Tensor]:
    """Bilinear weights (g, n) of the 4 corners, in kernel order."""
    one_x, one_y = 1 - frac_x, 1 - frac_y
    return [one_x * one_y, frac_x * one_y, one_x * frac_y, frac_x * frac_y]


def _flat_rows(rows: torch.Tensor, features: int) -> torch.Tensor:
    """Indices into the flattened (rows * F) embedding table; 1-D gathers and index_add_ are much faster on CPU."""
    if features == 1:
        return rows.reshape(-1)
    feature = torch.arange(features, dtype=rows.dtype, device=rows.device)
    return (rows.unsqueeze(-1) * features + feature).reshape(-1)


def _lookup(embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Embedding rows for an index tensor (g, n) -> (g, n, F)."""
    features = embeddings.shape[1]
    return embeddings.view(-1).index_select(0, _flat_rows(rows, features)).view(*rows.shape, features)


class _HashGridFunction(torch.autograd.Function):
    """Bilinear hash-grid lookup with a hand-written backward (saves only the inputs, recomputes corners)."""

    @staticmethod
    def forward(ctx, unit_points: torch.Tensor, embeddings: torch.Tensor, groups: list[_LevelGroup]) -> torch.Tensor:
        inside = ((unit_points >= 0) & (unit_points <= 1)).all(dim=-1)
        clamped = unit_points.clamp(0, 1)
        count, features = unit_points.shape[0], embeddings.shape[1]
        levels = sum(group.levels.numel() for group in groups)
        output = unit_points.new_empty(levels, count, features)
        for start in range(0, count, POINTS_PER_CHUNK):
            chunk = slice(start, start + POINTS_PER_CHUNK)
            for group in groups:
                cell_x, cell_y, frac_x, frac_y = group.cells(clamped[chunk, 0], clamped[chunk, 1])
                rows = group.corner_rows(cell_x, cell_y)
                weights = _corner_weights(frac_x, frac_y)
                value = _lookup(embeddings, rows[0]) * weights[0].unsqueeze(-1)
                for row, weight in zip(rows[1:], weights[1:]):
                    value.addcmul_(_lookup(embeddings, row), weight.unsqueeze(-1))
                output[group.levels, chunk] = value
        ctx.save_for_backward(clamped, inside, embeddings)
        ctx.groups = groups
        return (output * inside.view(1, -1, 1)).permute(1, 0, 2).reshape(count, levels * features)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        clamped, inside, embeddings = ctx.saved_tensors
        groups: list[_LevelGroup] = ctx.groups
        features = embeddings.shape[1]
        grad = (grad_output.reshape(clamped.shape[0], -1, features) * inside.view(-1, 1, 1)).to(embeddings.dtype)
        grad = grad.permute(1, 0, 2)  # (L, N, F)
        need_points, need_embeddings = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_embeddings = torch.zeros_like(embeddings) if need_embeddings else None
        grad_points = torch.zeros_like(clamped) if need_points else None
        for start in range(0, clamped.shape[0], POINTS_PER_CHUNK):
            chunk = slice(start, start + POINTS_PER_CHUNK)
            for group in groups:
                cell_x, cell_y, frac_x, frac_y = group.cells(clamped[chunk, 0], clamped[chunk, 1])
                rows = group.corner_rows(cell_x, cell_y)
                level_grad = grad[group.levels, chunk]  # (g, n, F)
                if need_embeddings:
                    for row, weight in zip(rows, _corner_weights(frac_x, frac_y)):
                        contribution = weight.unsqueeze(-1) * level_grad
                        grad_embeddings.view(-1).index_add_(0, _flat_rows(row, features), contribution.reshape(-1))
                if need_points:
                    # dL/d(corner value) . value for each corner, then the derivative of the bilinear weights
                    v00, v10, v01, v11 = ((_lookup(embeddings, row) * level_grad).sum(dim=-1) for row in rows)
                    scales = group.scales.to(clamped.dtype)
                    d_x = ((v10 - v00) * (1 - frac_y) + (v11 - v01) * frac_y) * scales
                    d_y = ((v01 - v00) * (1 - frac_x) + (v11 - v10) * frac_x) * scales
                    grad_points[chunk, 0] += d_x.sum(dim=0)
                    grad_points[chunk, 1] += d_y.sum(dim=0)
        return grad_points, grad_embeddings, None


def _check_loaded_offsets(grid: HashGrid2D, incompatible_keys) -> None:
    """A loaded ``offsets`` buffer must describe this grid's layout (else the checkpoint is for another config)."""
    if grid.offsets.tolist() != grid._layout:
        raise ValueError(f"hash-grid checkpoint offsets {grid.offsets.tolist()} do not match this grid's layout "
                         f"{grid._layout} ({grid.config}); build the grid with the checkpoint's configuration")


class HashGrid2D(nn.Module):
    """One multiresolution hashed 2-D grid with bilinear interpolation: (..., 2) in [-bound, bound] -> (..., L * F).

    The "torch" backend holds ``embeddings`` (rows, level_dim) and the int32 buffer ``offsets`` with torch-ngp's layout
    (see the module docstring); the "tcnn" backend holds ``tcnn_encoding`` (tinycudann.Encoding, float32 params).
    """

    def __init__(
        self,
        num_levels: int = 12,
        level_dim: int = 1,
        base_resolution: int = 64,
        desired_resolution: int = 512,
        log2_hashmap_size: int = 14,
        bound: float = 1.0,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        self.config = HashGridConfig(num_levels, level_dim, base_resolution, desired_resolution, log2_hashmap_size)
        self.bound = float(bound)
        self.output_dim = self.config.output_dim
        self.backend = resolve_backend(backend)
        self._groups: list[_LevelGroup] = []
        if self.backend == "torch":
            self._layout = torch_ngp_offsets(self.config)
            self.register_buffer("offsets", torch.tensor(self._layout, dtype=torch.int32))
            self.embeddings = nn.Parameter(torch.empty(self._layout[-1], level_dim))
            nn.init.uniform_(self.embeddings, -INIT_RANGE, INIT_RANGE)
            self.register_load_state_dict_post_hook(_check_loaded_offsets)
        else:
            import tinycudann

            encoding_config = {
                "otype": "HashGrid",
                "n_levels": num_levels,
                "n_features_per_level": level_dim,
                "log2_hashmap_size": log2_hashmap_size,
                "base_resolution": base_resolution,
                "per_level_scale": per_level_scale(self.config),
            }
            self.tcnn_encoding = tinycudann.Encoding(2, encoding_config, dtype=torch.float32)

    def _level_groups(self) -> list[_LevelGroup]:
        """Kernel constants on the embeddings' device (rebuilt after the module moves)."""
        device = self.embeddings.device
        if not self._groups or self._groups[0].scales.device != device:
            self._groups = _level_groups(self.config, self._layout, device)
        return self._groups

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Encode points (..., 2) in [-bound, bound]; float32 output (..., L * F), 0 for points outside the square."""
        prefix = inputs.shape[:-1]
        with torch.autocast(device_type=inputs.device.type, enabled=False):
            if self.backend == "torch":
                unit = ((inputs.to(self.embeddings.dtype) + self.bound) / (2 * self.bound)).reshape(-1, 2)
                features = _HashGridFunction.apply(unit, self.embeddings, self._level_groups())
            else:
                unit = ((inputs.float() + self.bound) / (2 * self.bound)).reshape(-1, 2)
                inside = ((unit >= 0) & (unit <= 1)).all(dim=-1, keepdim=True)
                features = self.tcnn_encoding(unit.clamp(0, 1).contiguous()).float() * inside
        return features.reshape(*prefix, self.output_dim)


class TriPlaneEncoder(nn.Module):
    """SyncTalk's tri-plane hash representation (Eq. 11): concat(H_xy(x, y), H_yz(y, z), H_xz(x, z)), 3 * L * F dims.

    The three grids are named as in SyncTalk's NeRFNetwork (``encoder_xy``, ``encoder_yz``, ``encoder_xz``), so a
    network that holds them as direct attributes has SyncTalk's state-dict keys (``encoder_xy.embeddings`` ...).
    """

    def __init__(self, config: HashGridConfig = CODE_CONFIG, bound: float = 1.0, backend: str = "torch") -> None:
        super().__init__()
        self.config = config
        self.bound = float(bound)
        grid_kwargs = {**vars(config), "bound": bound, "backend": backend}
        self.encoder_xy = HashGrid2D(**grid_kwargs)
        self.encoder_yz = HashGrid2D(**grid_kwargs)
        self.encoder_xz = HashGrid2D(**grid_kwargs)
        self.output_dim = 3 * config.output_dim

    @classmethod
    def from_preset(cls, name: str, bound: float = 1.0, backend: str = "torch") -> TriPlaneEncoder:
        """Build from a named preset: "code" (12 levels, the released code) or "paper" (L=14, F=1)."""
        if name not in PRESETS:
            raise ValueError(f"unknown tri-plane preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(PRESETS[name], bound=bound, backend=backend)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """Encode points (..., 3) in [-bound, bound]^3 into (..., 3 * L * F) float32 features."""
        xy = xyz[..., 0:2]
        yz = xyz[..., 1:3]
        xz = torch.stack([xyz[..., 0], xyz[..., 2]], dim=-1)
        return torch.cat([self.encoder_xy(xy), self.encoder_yz(yz), self.encoder_xz(xz)], dim=-1)
