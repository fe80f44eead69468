"""Training a talking-head NeRF's head, SyncTalk's recipe (paper Eq. 13, released schedule; ``../shared/docs/synctalk.md`` §2.6).

- One training frame per step; ``rays`` random pixels in the coarse stage. The fine stage alternates two kinds of
  step as the released ``--finetune_lips`` does: patches of ``patch_size``² with 0.1·LPIPS (AlexNet, when its
  weights are available), and the square lip box with 0.01·LPIPS.
- Photometric loss: MSE (the paper's Eq. 13; ``loss="l1"`` gives the released code's L1).
- Weight entropy 1e-4; masked attention losses (``masked_attention="code"``): 1e-4·s·mean audio attention outside
  the lower-face rect and 1e-4·s·mean expression attention inside it, s = step/iters.
- AdamW (betas 0.9/0.99, eps 1e-8): ``lr_grid`` for the hash planes, ``lr_net`` for the rest; lr·0.5^(step/iters)
  in the coarse stage and lr·0.05^(step/iters) in the fine stage. The occupancy grid is refreshed every
  ``grid_update_every`` steps with a random training frame's audio and expression.
- EMA of the weights (decay 0.95, every ``ema_every`` steps) is what rendering uses.
- Randomness is drawn from a generator seeded by (seed, step), and checkpoints hold the model, EMA, optimiser and
  step: resuming from a checkpoint gives exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from bench.methods.engine import rendering
from bench.methods.engine.data import SubjectData
from bench.methods.engine.model import TalkingHeadModel

CHECKPOINT = "latest.pt"
EMA_DECAY = 0.95


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)  # photometric loss per step
    seconds: float = 0.0


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """torch.save atomically (a partial file, then a rename): an interruption never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    partial.replace(path)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    return torch.load(path, map_location=device, weights_only=False) if path.is_file() else None


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def make_optimizer(model: TalkingHeadModel, config: dict[str, Any]) -> torch.optim.Optimizer:
    grid = model.field.grid_parameters()
    grid_ids = {id(p) for p in grid}
    others = [p for p in model.parameters() if id(p) not in grid_ids]
    return torch.optim.AdamW(
        [{"params": grid, "lr": config["lr_grid"], "base_lr": config["lr_grid"]},
         {"params": others, "lr": config["lr_net"], "base_lr": config["lr_net"]}],
        betas=(0.9, 0.99), eps=1e-8, weight_decay=0.0,
    )


def set_learning_rate(optimizer: torch.optim.Optimizer, step: int, config: dict[str, Any]) -> None:
    coarse = config["iters_coarse"]
    if step < coarse:
        factor = 0.5 ** (step / max(coarse, 1))
    else:
        factor = 0.5 * 0.05 ** ((step - coarse) / max(config["iters_fine"], 1))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _pixels_random(side: int, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, side * side, (count,), generator=generator)


def _pixels_patch(side: int, patch: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """Indices of ``count // patch²`` random square patches, row-major per patch."""
    n = max(1, count // (patch * patch))
    corners = torch.randint(0, side - patch + 1, (n, 2), generator=generator)
    ys = corners[:, 0, None, None] + torch.arange(patch)[None, :, None]
    xs = corners[:, 1, None, None] + torch.arange(patch)[None, None, :]
    return (ys * side + xs).reshape(-1), n


def _pixels_rect(rect: torch.Tensor, side: int, minimum: int = 32) -> tuple[torch.Tensor, int, int]:
    x0, x1, y0, y1 = (int(v) for v in rect)
    width, height = max(x1 - x0, minimum), max(y1 - y0, minimum)
    x0, y0 = min(max(x0 - (width - (x1 - x0)) // 2, 0), side - width), min(max(y0 - (height - (y1 - y0)) // 2, 0), side - height)
    ys, xs = torch.meshgrid(torch.arange(y0, y0 + height), torch.arange(x0, x0 + width), indexing="ij")
    return (ys * side + xs).reshape(-1), height, width


class Trainer:
    def __init__(self, model: TalkingHeadModel, data: SubjectData, audio: torch.Tensor, config: dict[str, Any],
                 seed: int, device: torch.device, lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
                 desc: str = "train") -> None:
        self.model = model.to(device)
        self.desc = desc  # the progress bar's label
        self.data = data
        self.audio = audio.to(device)
        self.config = config
        self.seed = seed
        self.device = device
        self.lpips = lpips
        self.optimizer = make_optimizer(model, config)
        self.ema = copy.deepcopy(model).requires_grad_(False)
        self.state = TrainState()
        self.total = config["iters_coarse"] + config["iters_fine"]
        side = data.size
        self.intrinsics = data.intrinsics(side)
        train_poses = data.poses[data.split.train][:: max(1, len(data.split.train) // 64)]  # cost is cells x poses
        self.model.grid.mark_untrained(train_poses.to(device), *self.intrinsics)

    # checkpoints ------------------------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        payload = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": self.state.__dict__,
        }
        save_checkpoint(folder / CHECKPOINT, payload)

    def load(self, folder: Path) -> bool:
        payload = load_checkpoint(folder / CHECKPOINT, self.device)
        if payload is None:
            return False
        self.model.load_state_dict(payload["model"])
        self.ema.load_state_dict(payload["ema"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state = TrainState(**payload["state"])
        return True

    # one step ---------------------------------------------------------------------------------------------------

    def _frame_inputs(self, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        audio = self.model.encode_audio(self.audio, frame)
        expression = self.data.expressions[frame].to(self.device)
        return audio, expression

    def step(self) -> float:
        config, data, step = self.config, self.data, self.state.step
        generator = step_generator(self.seed, step)
        set_learning_rate(self.optimizer, step, config)
        train = data.split.train
        if step % config["grid_update_every"] == 0:
            frame = train.start + int(torch.randint(len(train), (1,), generator=generator))
            with torch.no_grad():
                self.model.update_grid(*self._frame_inputs(frame), generator)
        frame = train.start + int(torch.randint(len(train), (1,), generator=generator))
        side = data.size
        fine = step >= config["iters_coarse"]
        lip_step = fine and (step - config["iters_coarse"]) % 2 == 1
        patch_shape: tuple[int, int, int] | None = None
        if lip_step:
            pixels, height, width = _pixels_rect(data.rects["lips"][frame], side)
            patch_shape = (1, height, width)
        elif fine and self.lpips is not None:
            patch = config["patch_size"]
            pixels, n = _pixels_patch(side, patch, config["rays"], generator)
            patch_shape = (n, patch, patch)
        else:
            pixels = _pixels_random(side, config["rays"], generator)
        pose = data.poses[frame : frame + 1].to(self.device)
        rays_o, rays_d = rendering.get_rays(pose, *self.intrinsics, side, side, pixels.to(self.device)[None])
        target = data.images[frame].reshape(-1, 3)[pixels].to(self.device).float() / 255
        background = data.backgrounds[frame].reshape(-1, 3)[pixels].to(self.device).float() / 255
        audio, expression = self._frame_inputs(frame)
        out = self.model.render_rays(rays_o[0], rays_d[0], audio, expression, frame, background, True, generator)
        image = out["image"]
        photometric = F.mse_loss(image, target)
        loss = photometric
        weights = out["weights_sum"].clamp(1e-5, 1 - 1e-5)
        loss = loss + 1e-4 * (-(weights * torch.log(weights) + (1 - weights) * torch.log(1 - weights))).mean()
        progress = step / max(self.total, 1)
        if config.get("masked_attention") == "code":
            lower = self._inside(pixels, data.rects["lower"][frame], side).to(self.device)
            loss = loss + 1e-4 * progress * (out["ambient_audio"] * ~lower).mean()
            loss = loss + 1e-4 * progress * (out["ambient_expression"] * lower).mean()
        if patch_shape is not None and self.lpips is not None:
            n, h, w = patch_shape
            pred = image.reshape(n, h, w, 3).permute(0, 3, 1, 2)
            true = target.reshape(n, h, w, 3).permute(0, 3, 1, 2)
            loss = loss + (0.01 if lip_step else 0.1) * self.lpips(pred * 2 - 1, true * 2 - 1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.state.step += 1
        if self.state.step % config["ema_every"] == 0:
            self._update_ema()
        value = float(photometric.detach())
        self.state.losses.append(value)
        return value

    @staticmethod
    def _inside(pixels: torch.Tensor, rect: torch.Tensor, side: int) -> torch.Tensor:
        ys, xs = pixels // side, pixels % side
        x0, x1, y0, y1 = rect.tolist()
        return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA of the weights; the occupancy grid is state, not a weight, so it is copied."""
        live_state = self.model.state_dict()
        for name, ema in self.ema.state_dict().items():
            if ema.dtype.is_floating_point and not name.startswith("grid."):
                ema.mul_(EMA_DECAY).add_(live_state[name], alpha=1 - EMA_DECAY)
            else:
                ema.copy_(live_state[name])

    def train(self, folder: Path, until: int | None = None, progress: bool = True) -> TrainState:
        """Train to ``until`` steps (default: all), checkpointing every ``checkpoint_every`` steps and at the end."""
        from tqdm import tqdm

        until = self.total if until is None else min(until, self.total)
        started = time.time()
        bar = tqdm(total=until, initial=self.state.step, desc=self.desc, unit="it", disable=not progress)
        while self.state.step < until:
            loss = self.step()
            bar.update(1)
            if self.state.step % 10 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
            if self.state.step % self.config["checkpoint_every"] == 0:
                self.state.seconds += time.time() - started
                started = time.time()
                self.save(folder)
        bar.close()
        self.state.seconds += time.time() - started
        self.ema.grid.load_state_dict(self.model.grid.state_dict())  # rendering uses the latest occupancy grid
        self.save(folder)
        return self.state


def loss_trend(losses: list[float], windows: int = 5) -> list[float]:
    """Mean loss over ``windows`` equal consecutive stretches of training (to check it falls steadily)."""
    size = max(1, math.ceil(len(losses) / windows))
    return [sum(losses[i : i + size]) / len(losses[i : i + size]) for i in range(0, len(losses), size)]
