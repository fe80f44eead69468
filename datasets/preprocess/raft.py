"""RAFT-small optical flow (Teed & Deng, ECCV 2020) on torchvision's model, loading princeton-vl's ``raft-small.pth``.

SyncTalk's head-point tracker (UNFaceFlow, from DFA-NeRF) runs the princeton-vl RAFT code in its small
configuration: ``SmallEncoder`` feature (128-d, instance norm) and context (96 hidden + 64 context, no norm)
encoders, a 4-level correlation pyramid of radius 3, ``SmallUpdateBlock`` (motion encoder 96/64/32 -> 80 + flow,
one 3x3 ConvGRU of 96 channels, flow head 128) and bilinear ``upflow8`` upsampling (no learned mask), 12 updates
(UNFaceFlow's ``--iters`` default). ``torchvision.models.optical_flow.raft_small`` is the same network layer for layer
(torchvision's ``Raft_Small_Weights.C_T_V1`` are those weights ported), so the checkpoint loads after renaming
its keys (``princeton_to_torchvision``); the file stays unchanged.

Inputs: uint8 RGB images; they are scaled to [-1, 1] (what princeton-vl's ``RAFT.forward`` does with 0-255 input
and what torchvision's model expects) and padded by edge replication to a multiple of 8 (princeton-vl's
``InputPadder``), at least 128 px (the correlation pyramid needs 16 feature cells at the coarsest level).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bench.contracts import BenchError

ASSET = "raft_small"
ITERATIONS = 12  # UNFaceFlow's TestOptions --iters
MIN_SIDE = 128

# princeton-vl module names -> torchvision module names (applied in order, after dropping DataParallel's "module.")
_RENAMES = (
    (r"^fnet\.", "feature_encoder."),
    (r"^cnet\.", "context_encoder."),
    (r"^(feature_encoder|context_encoder)\.conv1\.", r"\1.convnormrelu.0."),
    (r"^(feature_encoder|context_encoder)\.conv2\.", r"\1.conv."),
    (r"^(\w+\.layer\d\.\d)\.conv(\d)\.", r"\1.convnormrelu\2.0."),
    (r"^update_block\.encoder\.convc1\.", "update_block.motion_encoder.convcorr1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", "update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.", "update_block.recurrent_block.convgru1."),
)


def princeton_to_torchvision(state: Mapping[str, object]) -> dict[str, object]:
    """Rename a princeton-vl RAFT-small state dict (``module.fnet.conv1.weight`` ...) to torchvision's layout."""
    renamed: dict[str, object] = {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        for pattern, replacement in _RENAMES:
            name = re.sub(pattern, replacement, name)
        renamed[name] = value
    return renamed


def load_raft_small(weights: Path | None = None):
    """torchvision's RAFT-small in eval mode with princeton-vl weights (default: the ``raft_small`` asset)."""
    import torch
    from torchvision.models.optical_flow import raft_small

    from bench import assets

    path = weights or assets.fetch(ASSET)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which
        raise BenchError(f"{path}: not a readable RAFT checkpoint ({error}); fetch the {ASSET!r} asset again") from error
    state = state.get("state_dict", state)
    model = raft_small(weights=None)
    try:
        model.load_state_dict(princeton_to_torchvision(state))
    except RuntimeError as error:
        raise BenchError(f"{path}: not a princeton-vl RAFT-small checkpoint ({str(error).splitlines()[0]})") from error
    return model.eval()


class RaftSmall:
    """Dense flow between image pairs: ``flow(first, second)`` -> (B, H, W, 2) float32, pixels (dx, dy)."""

    def __init__(self, weights: Path | None = None, iterations: int = ITERATIONS):
        self.model = load_raft_small(weights)
        self.iterations = int(iterations)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """``first``/``second``: uint8 RGB, (H, W, 3) or (B, H, W, 3); the flow maps ``first``'s pixels into ``second``."""
        import torch
        import torch.nn.functional as F

        single = first.ndim == 3
        first, second = (np.asarray(image)[None] if single else np.asarray(image) for image in (first, second))
        if first.shape != second.shape or first.shape[-1] != 3:
            raise BenchError(f"RAFT needs two RGB images of one size, got {first.shape} and {second.shape}")
        height, width = first.shape[1:3]
        pad_h = max(-height % 8, MIN_SIDE - height)
        pad_w = max(-width % 8, MIN_SIDE - width)
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)

        def prepare(images: np.ndarray):
            tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() * (2 / 255) - 1
            return F.pad(tensor, padding, mode="replicate")

        with torch.inference_mode():
            flow = self.model(prepare(first), prepare(second), num_flow_updates=self.iterations)[-1]
        flow = flow[:, :, padding[2] : padding[2] + height, padding[0] : padding[0] + width]
        flow = flow.permute(0, 2, 3, 1).numpy().astype(np.float32)
        return flow[0] if single else flow
