"""The full SyncTalk head model: audio path + head field + occupancy grid, and rendering of rays and frames."""

from __future__ import annotations

import torch
from torch import nn

from bench.contracts import BenchError
from bench.methods.engine import audio as audio_module
from bench.methods.engine import rendering
from bench.methods.engine.fields import HeadField


def audio_net_for(kind: str) -> nn.Module:
    if kind == "ave":
        return audio_module.AudioNetAVE()
    if kind == "mel":
        return audio_module.MelEncoder()
    if kind == "whisper":
        return audio_module.AudioNet(dim_in=audio_module.WHISPER_SHAPE[1])
    if kind == "hubert":
        return audio_module.AudioNet(dim_in=audio_module.HUBERT_SHAPE[1])
    if kind == "deepspeech":
        return audio_module.AudioNet()
    raise BenchError(f"unknown audio encoder {kind!r}: use ave, whisper, mel, hubert or deepspeech")


class TalkingHeadModel(nn.Module):
    def __init__(self, field: HeadField, audio_kind: str, grid_resolution: int = 128, max_steps: int = 16) -> None:
        super().__init__()
        self.field = field
        self.audio_kind = audio_kind
        self.audio_net = audio_net_for(audio_kind)
        self.audio_att = audio_module.AudioAttNet()
        self.grid = rendering.DensityGrid(resolution=grid_resolution)
        self.max_steps = max_steps

    def encode_audio(self, inputs: torch.Tensor, frame: int) -> torch.Tensor:
        """The 32-d audio code of ``frame``: per-frame codes over [frame-4, frame+4) through the attention net."""
        window = audio_module.context_windows(inputs, [frame])[0]  # (8, ...), zero rows outside the clip
        codes = self.audio_net(window.reshape(len(window), *inputs.shape[1:]))
        return self.audio_att(codes.unsqueeze(0))[0]

    def render_rays(
        self,
        rays_o: torch.Tensor,
        rays_d: torch.Tensor,
        audio: torch.Tensor,
        expression: torch.Tensor,
        code: int,
        background: torch.Tensor,
        perturb: bool,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Composite head colour over ``background`` (R, 3) for rays (R, 3): pixel = head + (1 - Σw)·bg.

        The ambient attention norms are summed over the ray's samples, unweighted, as SyncTalk's kernel does."""
        near, far = rendering.near_far_from_aabb(rays_o, rays_d)
        if generator is not None and generator.device != rays_o.device:
            generator = None  # CPU-seeded jitter cannot drive CUDA sampling; training on CUDA is then not bitwise resumable
        samples = rendering.march_rays(
            rays_o, rays_d, near, far, self.grid, max_steps=self.max_steps, perturb=perturb, generator=generator
        )
        out = self.field(samples.positions, samples.directions, audio, expression, code)
        ambients = {"ambient_audio": out["ambient_audio"], "ambient_expression": out["ambient_expression"]}
        result = rendering.composite(
            out["sigma"], out["rgb"], samples.deltas, samples.ray_index, len(rays_o), summed_extras=ambients
        )
        return {
            "image": result.rgb + (1 - result.weights_sum).unsqueeze(-1) * background,
            "weights_sum": result.weights_sum,
            **result.sums,
        }

    @torch.no_grad()
    def update_grid(self, audio: torch.Tensor, expression: torch.Tensor, generator: torch.Generator | None = None) -> None:
        if generator is not None and generator.device != self.grid.density_grid.device:
            generator = None
        self.grid.update(lambda points: self.field.density(points, audio, expression)["sigma"], generator=generator)

    @torch.no_grad()
    def render_frame(
        self,
        pose: torch.Tensor,
        intrinsics: tuple[float, float, float, float],
        side: int,
        audio: torch.Tensor,
        expression: torch.Tensor,
        background: torch.Tensor,
        chunk: int = 32768,
    ) -> torch.Tensor:
        """(side, side, 3) float image in [0, 1]; ``background`` (side, side, 3) float."""
        rays_o, rays_d = rendering.get_rays(pose[None], *intrinsics, side, side)
        rays_o, rays_d = rays_o[0], rays_d[0]
        flat_background = background.reshape(-1, 3)
        image = torch.empty_like(flat_background)
        for start in range(0, len(rays_o), chunk):
            part = slice(start, start + chunk)
            out = self.render_rays(rays_o[part], rays_d[part], audio, expression, 0, flat_background[part], perturb=False)
            image[part] = out["image"]
        return image.reshape(side, side, 3).clamp(0, 1)


def mirror_index(i: int, n: int) -> int:
    """SyncTalk's ping-pong replay of ``n`` training frames for OOD audio: 0..n-1, n-1..0, ..."""
    if n == 1:
        return 0
    period, position = divmod(i, n)
    return position if period % 2 == 0 else n - 1 - position
