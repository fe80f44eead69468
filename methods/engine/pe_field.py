"""AD-NeRF's audio-conditioned head NeRF with frequency positional encoding.

Follows ``AD-NeRF/NeRFs/HeadNeRF/run_nerf_helpers.py`` (``Embedder`` / ``get_embedder``, lines 21-70; ``FaceNeRF``,
lines 143-200) and ``run_nerf.py`` (``run_network``, lines 33-50: the audio code is concatenated after the encoded
position, the encoded view direction last; ``create_nerf``, lines 234-257; argument defaults ``--multires 10``,
``--multires_views 4``, ``--dim_aud 64``, ``--netdepth 8``, ``--netwidth 256``, ``--use_viewdirs`` on).

The encoding is :func:`bench.methods.engine.torso.frequency_encode`, whose convention is AD-NeRF's ``get_embedder``:
include-input first, then sin and cos per octave, frequencies 2**0 .. 2**(k - 1) (``log_sampling``), so xyz with
10 octaves is 63-d and a view direction with 4 octaves 27-d. Layer and attribute names are FaceNeRF's, so its state
dict loads unchanged. Differences: only the ``use_viewdirs`` branch (AD-NeRF's default) exists, so FaceNeRF's
``output_linear`` is absent; the released ``feature_linear`` is created but unused there (the feature is ``h``
itself) and is kept here unused for the same state-dict layout; the activations (sigmoid on rgb, ReLU on sigma in
``raw2outputs``) are left to the renderer, as upstream.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.methods.engine.torso import frequency_encode


def encoded_dim(octaves: int, input_dim: int = 3) -> int:
    """Width of ``frequency_encode`` output: input plus sin and cos per octave (AD-NeRF's ``Embedder.out_dim``)."""
    return input_dim * (1 + 2 * octaves)


class PositionalEncodingField(nn.Module):
    """AD-NeRF's FaceNeRF: (points, view directions, audio code) -> raw (..., 4) = (rgb logits, sigma logit).

    ``pts_linears``: depth layers of ``width`` with ReLU, the encoded input (position + audio) concatenated again
    after layer index ``skip``; ``alpha_linear`` reads the last hidden state; ``views_linears`` (1 + depth // 4
    layers of width // 2, ReLU) read [hidden state, encoded direction] and ``rgb_linear`` gives the colour logits.
    """

    def __init__(self, depth: int = 8, width: int = 256, xyz_octaves: int = 10, dir_octaves: int = 4,
                 audio_dim: int = 64, skip: int = 4) -> None:
        super().__init__()
        self.xyz_octaves = xyz_octaves
        self.dir_octaves = dir_octaves
        self.skip = skip
        self.input_ch = encoded_dim(xyz_octaves)
        self.input_ch_views = encoded_dim(dir_octaves)
        self.dim_aud = audio_dim
        input_all = self.input_ch + audio_dim
        self.pts_linears = nn.ModuleList(
            [nn.Linear(input_all, width)]
            + [nn.Linear(width + input_all if index == skip else width, width) for index in range(depth - 1)]
        )
        self.views_linears = nn.ModuleList(
            [nn.Linear(self.input_ch_views + width, width // 2)]
            + [nn.Linear(width // 2, width // 2) for _ in range(depth // 4)]
        )
        self.feature_linear = nn.Linear(width, width)  # unused, as in FaceNeRF: kept for its state-dict layout
        self.alpha_linear = nn.Linear(width, 1)
        self.rgb_linear = nn.Linear(width // 2, 3)

    def encode(self, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positional encodings of points (..., 3) and unit view directions (..., 3): (..., 63) and (..., 27)."""
        return frequency_encode(points, self.xyz_octaves), frequency_encode(directions, self.dir_octaves)

    def forward(self, points: torch.Tensor, directions: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Raw (..., 4): rgb logits then the density logit, for points (..., 3), unit directions (..., 3) and one
        frame's audio code (audio_dim,) shared by all points (``run_network`` expands it)."""
        encoded_points, encoded_dirs = self.encode(points, directions)
        inputs = torch.cat([encoded_points, audio.expand(*points.shape[:-1], self.dim_aud)], dim=-1)
        h = inputs
        for index, layer in enumerate(self.pts_linears):
            h = F.relu(layer(h))
            if index == self.skip:
                h = torch.cat([inputs, h], dim=-1)
        alpha = self.alpha_linear(h)
        h = torch.cat([h, encoded_dirs], dim=-1)
        for layer in self.views_linears:
            h = F.relu(layer(h))
        return torch.cat([self.rgb_linear(h), alpha], dim=-1)
