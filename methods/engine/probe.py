"""Does a trained engine model listen to its audio? Two checks any method on the engine gets.

- ``audio_sensitivity``: test frames rendered (at the training size) with their own audio code and with the code of
  a test frame half the split away; the change (0-255) inside the lip box (the square on 68-point landmarks 48-59
  that the fine stage samples), on the rest of the lower face (nose tip to chin: the jaw moves with the mouth) and
  elsewhere (eyes, forehead, hair, background: audio should not move them). A mouth that ignores the audio shows
  as a change of a few levels in the lip box, no larger than elsewhere.
- ``control_audio``: the clip's audio for a control (shifted by 1 s; another speaker's speech in place of the test
  segment). ``TalkingHeadMethod.render_test_split`` renders the test split with it, every other input unchanged, so
  that any difference in mouth motion is the audio's. Learned sync makes the true audio's mouth follow the GT and
  the controls' not (``benchmarks/lipsync_proof.py``).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from bench.contracts import AUDIO_RATE, SAMPLES_PER_FRAME, Subject

SHIFT_SECONDS = 1.0


def audio_sensitivity(method, subject: Subject, checkpoint_dir, n_frames: int = 8) -> dict[str, Any]:
    """Medians over ``n_frames`` evenly spaced test frames of the largest and mean change (0-255) per region when a
    frame's audio code is replaced by that of the test frame half the split away."""
    import torch

    from bench.methods.engine.method import audio_inputs

    model, prepared, data, meta = method.load(subject, checkpoint_dir)
    on = next(model.parameters()).device
    samples = prepared.audio()
    inputs = torch.from_numpy(audio_inputs(meta["audio_encoder"], samples, prepared.n_frames, method.config)).float().to(on)
    test = list(data.split.test)
    side = data.size
    intrinsics = data.intrinsics(side)
    background = torch.zeros(side, side, 3, device=on)
    rows = []
    for index in np.linspace(0, len(test) - 1, n_frames).round().astype(int):
        frame, partner = test[index], test[(index + len(test) // 2) % len(test)]
        with torch.no_grad():
            pose, expression = data.poses[frame].to(on), data.expressions[frame].to(on)
            own, other = (
                model.render_frame(pose, intrinsics, side, model.encode_audio(inputs, audio_frame), expression, background)
                for audio_frame in (frame, partner)
            )
        change = ((own - other).abs().amax(dim=-1) * 255).cpu().numpy()
        lips, lower = _box_mask(data.rects["lips"][frame], side), _box_mask(data.rects["lower"][frame], side)
        regions = (lips, lower & ~lips, ~lower & ~lips)
        rows.append([statistic(change[region]) for region in regions for statistic in (np.max, np.mean)])
    columns = ("lip_box_max", "lip_box_mean", "jaw_max", "jaw_mean", "elsewhere_max", "elsewhere_mean")
    report = {name: round(float(statistics.median(row[i] for row in rows)), 2) for i, name in enumerate(columns)}
    return {**report, "frames": len(rows), "render_side": side, "audio_encoder": meta["audio_encoder"]}


def _box_mask(rect, side: int) -> np.ndarray:
    x0, x1, y0, y1 = (int(v) for v in rect)
    mask = np.zeros((side, side), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def control_audio(samples: np.ndarray, test: range, kind: str, other: np.ndarray | None = None) -> np.ndarray:
    """The clip's 16 kHz audio for a control: ``shifted`` rolls it by 1 s (frame i hears frame i − 25's audio);
    ``other-speaker`` puts ``other`` (another speaker's speech) in place of the test segment."""
    if kind == "shifted":
        return np.roll(samples, int(SHIFT_SECONDS * AUDIO_RATE))
    if kind == "other-speaker":
        if other is None:
            raise ValueError("other-speaker needs the other speech")
        start, stop = test.start * SAMPLES_PER_FRAME, test.stop * SAMPLES_PER_FRAME
        replaced = samples.copy()
        length = min(stop - start, len(other), len(replaced) - start)
        replaced[start : start + length] = other[:length]
        return replaced
    raise ValueError(f"unknown control {kind!r}: use shifted or other-speaker")
