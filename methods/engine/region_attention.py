"""ER-NeRF's region attention: channel-wise weights of the audio and eye features from the tri-plane encoding.

Follows ``ER-NeRF/nerf_triplane/network.py``: ``MLP`` (lines 69-90: bias-free linear layers, ReLU between them, none
after the last), ``NeRFNetwork.__init__`` (line 137: ``eye_att_net = MLP(in_dim, 1, 16, 2)``; line 148:
``aud_ch_att_net = MLP(in_dim, audio_dim, 64, 2)``, with ``in_dim`` 36 = 3 planes x 12 levels x 1 feature and
``audio_dim`` 32) and ``NeRFNetwork.density`` (lines 285-292 and 306-307):

- audio: ``aud_ch_att = aud_ch_att_net(enc_x)``, no output activation, and ``enc_w = enc_a * aud_ch_att``;
- eye: ``eye_att = sigmoid(eye_att_net(enc_x))`` and ``e = e * eye_att``;
- the "ambient" outputs used by the attention losses: ``aud_ch_att.norm(dim=-1, keepdim=True)`` and ``eye_att``.

Difference: the MLPs are :func:`bench.methods.engine.fields.mlp` (the same layers), whose state-dict keys are
``0.weight`` / ``2.weight`` where ER-NeRF's are ``net.0.weight`` / ``net.1.weight``.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.methods.engine.fields import mlp


class RegionAttention(nn.Module):
    """Region attention over tri-plane features (..., in_dim): reweights the audio and eye features per point."""

    def __init__(self, in_dim: int = 36, audio_dim: int = 32, eye_dim: int = 1) -> None:
        super().__init__()
        self.aud_ch_att_net = mlp([in_dim, 64, audio_dim])
        self.eye_att_net = mlp([in_dim, 16, eye_dim])

    def forward(self, encoded: torch.Tensor, audio: torch.Tensor, eye: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attended features for tri-plane features (N, in_dim), one frame's audio (1, audio_dim) and eye (1, eye_dim).

        Returns ``audio`` (N, audio_dim) = audio * aud_ch_att, ``eye`` (N, eye_dim) = eye * eye_att, the raw weights
        ``audio_weights`` (unbounded) and ``eye_weights`` (in (0, 1)), and ``ambient_audio`` (N, 1), the weights' norm.
        """
        audio_weights = self.aud_ch_att_net(encoded)
        eye_weights = torch.sigmoid(self.eye_att_net(encoded))
        return {
            "audio": audio * audio_weights,
            "eye": eye * eye_weights,
            "audio_weights": audio_weights,
            "eye_weights": eye_weights,
            "ambient_audio": audio_weights.norm(dim=-1, keepdim=True),
        }
