"""Training presets. ``paper`` is the paper's recipe; ``fast`` a GPU budget of about ten minutes; ``smoke`` a few
minutes on a 2-core CPU at reduced resolution (used by the tests). Every value can be overridden with
``--config key=value``."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "train_size": 512,  # training image side (poses and intrinsics scaled to it)
        "iters_coarse": 100_000,
        "iters_fine": 25_000,
        "iters_torso": 150_000,  # only with torso=true (the released README's torso run)
        "rays": 256 * 256,
        "patch_size": 64,  # fine-stage LPIPS patches (16 patches of 64² = 256² rays)
        "levels": 14,  # the paper's "L=14, F=1" (the released code has 12)
        "max_steps": 16,
        "grid_resolution": 128,
        "lr_grid": 1e-2,
        "lr_net": 1e-3,
        "ema_every": 1000,
        "grid_update_every": 16,
        "checkpoint_every": 5000,
    },
    "fast": {
        "train_size": 512,
        "iters_coarse": 12_000,
        "iters_fine": 3_000,
        "iters_torso": 3_000,
        "rays": 256 * 256,
        "patch_size": 64,
        "levels": 12,
        "max_steps": 16,
        "grid_resolution": 128,
        "lr_grid": 1e-2,
        "lr_net": 1e-3,
        "ema_every": 50,
        "grid_update_every": 16,
        "checkpoint_every": 2000,
    },
    "smoke": {
        "train_size": 128,
        "iters_coarse": 500,
        "iters_fine": 100,
        "iters_torso": 300,
        "rays": 64 * 64,
        "patch_size": 16,
        "levels": 12,
        "max_steps": 16,
        "grid_resolution": 64,
        "lr_grid": 1e-2,
        "lr_net": 1e-3,
        "ema_every": 5,
        "grid_update_every": 16,
        "checkpoint_every": 200,
    },
}


def resolve(config: dict[str, Any]) -> dict[str, Any]:
    """The preset's values overridden by any explicit config keys."""
    from bench.contracts import BenchError

    name = config.get("preset", "smoke")
    if name not in PRESETS:
        raise BenchError(f"unknown SyncTalk preset {name!r}; presets are: {', '.join(PRESETS)}")
    return {**PRESETS[name], **config}
