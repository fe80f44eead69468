"""SyncTalk's optional torso stage (``--torso``; ``../shared/docs/synctalk.md`` §2.5, ER-NeRF's ``forward_torso``).

A 2-D field over normalised pixel coordinates in [-1, 1] (shrunk by 0.8), trained after the head with the head frozen:

- three learnable anchor points (homogeneous, head frame) are moved into the camera by the inverse head pose and
  projected (x/z, y/z), 6 values, frequency-encoded with 3 octaves (42-d); the pixel coordinates with 8 octaves (34-d);
- a deformation MLP (34 + 42 + 8 -> 32 -> 32 -> 2, the 8-d per-frame torso code) offsets the coordinates, which a
  2-D hash grid (16 levels x 2 features, base 16 -> 2048, 2^16 rows) encodes; the torso MLP (32 + 84 -> 32 -> 32 -> 4)
  gives alpha and colour (sigmoids stretched by 0.001);
- the head's background becomes torso·alpha + plate·(1 - alpha) instead of the frame's GT torso image.

Loss: L1 of the composite (frozen head over torso over plate) against the frame, plus 1e-4 x the binary entropy of
alpha. Left out: the released 2-D occupancy mask of the torso (a speed-up only) and its anchor-weight regulariser,
whose exact form our notes do not give. The torso track cannot be combined with the portrait track, as in SyncTalk.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from bench.methods.engine import rendering
from bench.methods.engine.data import SubjectData
from bench.methods.engine.fields import mlp
from bench.methods.engine.hashgrid import HashGrid2D
from bench.methods.engine.training import load_checkpoint, save_checkpoint, step_generator

SHRINK = 0.8
CODE_DIM = 8
CHECKPOINT = "torso.pt"


def frequency_encode(x: torch.Tensor, octaves: int) -> torch.Tensor:
    """torch-ngp's FreqEncoder: [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(k-1) x), cos(2^(k-1) x)] along the last axis."""
    parts = [x]
    for octave in range(octaves):
        parts += [torch.sin(x * 2.0**octave), torch.cos(x * 2.0**octave)]
    return torch.cat(parts, dim=-1)


def pixel_coordinates(side: int, pixels: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised (x, y) in [-1, 1] of pixel indices (row * side + col), or of every pixel when None."""
    if pixels is None:
        pixels = torch.arange(side * side)
    axis = torch.linspace(-1, 1, side)
    return torch.stack([axis[pixels % side], axis[torch.div(pixels, side, rounding_mode="floor")]], dim=-1)


class TorsoField(nn.Module):
    """The pose-deformed 2-D torso field; state-dict names follow ER-NeRF (``anchor_points``, ``torso_net`` ...)."""

    def __init__(self, n_codes: int) -> None:
        super().__init__()
        self.anchor_points = nn.Parameter(torch.tensor([[0.01, 0.01, 0.1, 1.0], [-0.1, -0.1, 0.1, 1.0], [0.1, -0.1, 0.1, 1.0]]))
        self.torso_deform_net = mlp([34 + 42 + CODE_DIM, 32, 32, 2])
        self.torso_encoder = HashGrid2D(num_levels=16, level_dim=2, base_resolution=16, desired_resolution=2048,
                                        log2_hashmap_size=16)
        self.torso_net = mlp([self.torso_encoder.output_dim + 34 + 42 + CODE_DIM, 32, 32, 4])
        self.individual_codes_torso = nn.Parameter(torch.randn(n_codes, CODE_DIM) * 0.1)

    def forward(self, coords: torch.Tensor, pose: torch.Tensor, code: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(alpha (N, 1), colour (N, 3), offset (N, 2)) at coords (N, 2) for one NGP camera-to-world ``pose`` (4, 4)."""
        x = coords * SHRINK
        camera = self.anchor_points @ torch.linalg.inv(pose).T  # (3, 4) anchors in the camera frame
        projected = (camera[:, :2] / camera[:, 3:] / camera[:, 2:3]).reshape(1, -1)
        context = torch.cat([frequency_encode(projected, 3), self.individual_codes_torso[code : code + 1]], dim=-1)
        h = torch.cat([frequency_encode(x, 8), context.expand(len(x), -1)], dim=-1)
        offset = self.torso_deform_net(h)
        features = self.torso_encoder((x + offset).clamp(-1, 1))
        out = self.torso_net(torch.cat([features, h], dim=-1))
        alpha = torch.sigmoid(out[:, :1]) * (1 + 2e-3) - 1e-3
        colour = torch.sigmoid(out[:, 1:]) * (1 + 2e-3) - 1e-3
        return alpha, colour, offset

    def background(self, coords: torch.Tensor, pose: torch.Tensor, code: int, plate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(torso over ``plate`` (N, 3), alpha (N, 1))."""
        alpha, colour, _ = self(coords, pose, code)
        return colour * alpha + plate * (1 - alpha), alpha


class TorsoTrainer:
    """Trains a TorsoField behind a frozen head model; resumable exactly like the head trainer."""

    def __init__(self, head, torso: TorsoField, data: SubjectData, plate: torch.Tensor, audio: torch.Tensor,
                 config: dict[str, Any], seed: int, device: torch.device) -> None:
        self.head = head.to(device).eval().requires_grad_(False)
        self.torso = torso.to(device)
        self.data = data
        self.plate = plate.reshape(-1, 3).float().div(255)  # at train size
        self.audio = audio.to(device)
        self.config = config
        self.seed = seed
        self.device = device
        grid = list(torso.torso_encoder.parameters())
        others = [p for name, p in torso.named_parameters() if not name.startswith("torso_encoder.")]
        self.optimizer = torch.optim.AdamW(
            [{"params": grid, "lr": config["lr_grid"]}, {"params": others, "lr": config["lr_net"]}],
            betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0,
        )
        self.step_count = 0
        self.losses: list[float] = []
        self.seconds = 0.0
        self.intrinsics = data.intrinsics(data.size)

    def step(self) -> float:
        data, side = self.data, self.data.size
        generator = step_generator(self.seed + 7919, self.step_count)
        train = data.split.train
        frame = train.start + int(torch.randint(len(train), (1,), generator=generator))
        pixels = torch.randint(0, side * side, (self.config["rays"],), generator=generator)
        pose = data.poses[frame].to(self.device)
        rays_o, rays_d = rendering.get_rays(pose[None], *self.intrinsics, side, side, pixels.to(self.device)[None])
        with torch.no_grad():
            audio = self.head.encode_audio(self.audio, frame)
            zeros = torch.zeros(len(pixels), 3, device=self.device)
            head = self.head.render_rays(rays_o[0], rays_d[0], audio, data.expressions[frame].to(self.device), frame,
                                         zeros, False)
        coords = pixel_coordinates(side, pixels).to(self.device)
        background, alpha = self.torso.background(coords, pose, frame, self.plate[pixels].to(self.device))
        image = head["image"] + (1 - head["weights_sum"]).unsqueeze(-1) * background
        target = data.images[frame].reshape(-1, 3)[pixels].to(self.device).float() / 255
        photometric = F.l1_loss(image, target)
        a = alpha.clamp(1e-5, 1 - 1e-5)
        loss = photometric + 1e-4 * (-(a * torch.log(a) + (1 - a) * torch.log(1 - a))).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        self.losses.append(float(photometric.detach()))
        return self.losses[-1]

    def save(self, folder: Path) -> None:
        payload = {"torso": self.torso.state_dict(), "optimizer": self.optimizer.state_dict(),
                   "step": self.step_count, "losses": self.losses, "seconds": self.seconds}
        save_checkpoint(folder / CHECKPOINT, payload)

    def load(self, folder: Path) -> bool:
        payload = load_checkpoint(folder / CHECKPOINT, self.device)
        if payload is None:
            return False
        self.torso.load_state_dict(payload["torso"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step_count, self.losses, self.seconds = payload["step"], payload["losses"], payload["seconds"]
        return True

    def train(self, folder: Path, until: int | None = None, progress: bool = True) -> None:
        from tqdm import tqdm

        total = self.config["iters_torso"] if until is None else min(until, self.config["iters_torso"])
        started = time.time()
        bar = tqdm(total=total, initial=self.step_count, desc="train torso", unit="it", disable=not progress)
        while self.step_count < total:
            loss = self.step()
            bar.update(1)
            if self.step_count % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if self.step_count % self.config["checkpoint_every"] == 0:
                self.seconds += time.time() - started
                started = time.time()
                self.save(folder)
        bar.close()
        self.seconds += time.time() - started
        self.save(folder)
