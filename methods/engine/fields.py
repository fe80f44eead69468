"""SyncTalk's head field (paper Eq. 4, 11-12; released ``nerf_triplane/network.py`` layout).

A point x in the head's canonical box is encoded by the tri-plane hash grids (36-d with 12 levels). Two attention
nets read that encoding: ``aud_ch_att_net`` (36->64->32) modulates the 32-d audio feature channel-wise and
``eye_att_net`` (36->64->E) modulates the E-d expression vector (7 blendshapes or AU45). ``sigma_net``
(36+32+E -> 64 -> 64 -> 65) gives the density exp(h0) and a 64-d geometry feature; ``color_net`` (16-d degree-4
spherical harmonics of the view direction + 64 + a 4-d per-frame code -> 64 -> 3) the colour through a sigmoid
stretched by 0.001. All MLPs are bias-free with ReLU, as released. The released
``unc_net`` (uncertainty re-weighting of the loss) is left out: the paper's loss (Eq. 13) has no such term.

Facial-aware masked attention (Eq. 4): with ``masked_attention="paper"`` the attention vectors are multiplied by
region masks, V_lip = V ⊙ M_lip and V_exp = V ⊙ M_exp. Because the field lives in the head's canonical space, the
masks are fixed soft boxes there: M_lip covers the lower face (below the nose tip: lips, jaw, chin), M_exp the upper
face (brows, eyes, forehead); both are built from the subject's fitted 3-D face model. The released code instead
penalises the composited attention norms outside/inside the lower-face image rectangle with small losses
(``masked_attention="code"``, see ``training.py``); ``"off"`` uses neither.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bench.methods.engine.hashgrid import HashGridConfig, TriPlaneEncoder

_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
       1.445305721320277, -0.5900435899266435)


def sh_encode(directions: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics up to degree 3 (16 values) of unit directions (M, 3): the degree-4 SH encoder."""
    x, y, z = directions.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack(
        [
            torch.full_like(x, _C0),
            -_C1 * y, _C1 * z, -_C1 * x,
            _C2[0] * x * y, _C2[1] * y * z, _C2[2] * (2 * zz - xx - yy), _C2[3] * x * z, _C2[4] * (xx - yy),
            _C3[0] * y * (3 * xx - yy), _C3[1] * x * y * z, _C3[2] * y * (4 * zz - xx - yy),
            _C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _C3[4] * x * (4 * zz - xx - yy), _C3[5] * z * (xx - yy),
            _C3[6] * x * (xx - 3 * yy),
        ],
        dim=-1,
    )


def mlp(dims: list[int]) -> nn.Sequential:
    """Bias-free linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b, bias=False))
        if index < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SoftBox(nn.Module):
    """A soft indicator of an axis-aligned box: product of sigmoids with edge width ``sharpness``⁻¹."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor, sharpness: float = 60.0) -> None:
        super().__init__()
        self.register_buffer("low", low.float())
        self.register_buffer("high", high.float())
        self.sharpness = sharpness

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        inside = torch.sigmoid(self.sharpness * (points - self.low)) * torch.sigmoid(self.sharpness * (self.high - points))
        return inside.prod(dim=-1, keepdim=True)


class HeadField(nn.Module):
    """The expression- and audio-conditioned tri-plane hash field of the head."""

    audio_dim = 32

    def __init__(
        self,
        expression_dim: int,
        n_codes: int,
        levels: int = 12,
        log2_table: int = 14,
        bound: float = 1.0,
        lip_box: tuple[torch.Tensor, torch.Tensor] | None = None,
        expression_box: tuple[torch.Tensor, torch.Tensor] | None = None,
        code_dim: int = 4,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.bound = bound
        grid = HashGridConfig(num_levels=levels, log2_hashmap_size=log2_table, desired_resolution=int(512 * bound))
        self.encoder = TriPlaneEncoder(grid, bound=bound, backend=backend)
        width = self.encoder.output_dim
        self.aud_ch_att_net = mlp([width, 64, self.audio_dim])
        self.eye_att_net = mlp([width, 64, expression_dim])
        self.sigma_net = mlp([width + self.audio_dim + expression_dim, 64, 64, 65])
        self.color_net = mlp([16 + 64 + code_dim, 64, 3])
        self.codes = nn.Parameter(torch.randn(n_codes, code_dim) * 0.1)
        self.lip_mask = SoftBox(*lip_box) if lip_box is not None else None
        self.expression_mask = SoftBox(*expression_box) if expression_box is not None else None

    def grid_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def attention(self, encoded: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lip = self.aud_ch_att_net(encoded)
        expression = self.eye_att_net(encoded)
        if self.lip_mask is not None:
            lip = lip * self.lip_mask(points)
        if self.expression_mask is not None:
            expression = expression * self.expression_mask(points)
        return lip, expression

    def density(self, points: torch.Tensor, audio: torch.Tensor, expression: torch.Tensor) -> dict[str, torch.Tensor]:
        """sigma and geometry feature at ``points`` (M, 3) for one frame's 32-d audio and E-d expression."""
        encoded = self.encoder(points)
        lip_att, expression_att = self.attention(encoded, points)
        features = torch.cat([encoded, audio.expand(len(points), -1) * lip_att, expression.expand(len(points), -1) * expression_att], -1)
        h = self.sigma_net(features)
        return {
            "sigma": torch.exp(h[:, 0].clamp(max=15.0)),
            "geometry": h[:, 1:],
            "encoded": encoded,
            "ambient_audio": lip_att.norm(dim=-1),
            "ambient_expression": expression_att.norm(dim=-1),
        }

    def forward(
        self, points: torch.Tensor, directions: torch.Tensor, audio: torch.Tensor, expression: torch.Tensor, code: int
    ) -> dict[str, torch.Tensor]:
        out = self.density(points, audio, expression)
        code_vector = self.codes[code].expand(len(points), -1)
        h = self.color_net(torch.cat([sh_encode(directions), out["geometry"], code_vector], -1))
        out["rgb"] = torch.sigmoid(h) * (1 + 2e-3) - 1e-3
        return out


def region_boxes(vertices_ngp: torch.Tensor, nose_tip: int = 1, margin: float = 0.04) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Lower-face (lip) and upper-face (expression) boxes in NGP coordinates from the fitted face-model vertices.

    ``nerf_matrix_to_ngp`` maps a head-frame point (x, y, z) to NGP (y, z, x)·scale, so the head's up axis (y) is
    NGP axis 0 and "below the nose tip" means a smaller axis-0 coordinate. The lip box spans the face model below the
    nose tip, the expression box the model above it, extended upward to the forehead and hair line.
    """
    up = 0
    nose = vertices_ngp[nose_tip, up]
    low, high = vertices_ngp.min(0).values - margin, vertices_ngp.max(0).values + margin
    lip_high = high.clone()
    lip_high[up] = nose
    expression_low = low.clone()
    expression_low[up] = nose + margin
    expression_high = high.clone()
    expression_high[up] = high[up] + 4 * margin
    return (low, lip_high), (expression_low, expression_high)


def sh_orthonormality_error(samples: int = 200_000, seed: int = 0) -> float:
    """Max deviation of the Monte-Carlo Gram matrix of ``sh_encode`` from the identity (used by the tests)."""
    generator = torch.Generator().manual_seed(seed)
    directions = F.normalize(torch.randn(samples, 3, generator=generator, dtype=torch.float64), dim=-1)
    basis = sh_encode(directions)
    gram = basis.T @ basis * (4 * math.pi / samples)
    return float((gram - torch.eye(16, dtype=torch.float64)).abs().max())
