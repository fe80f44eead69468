"""``bench speed --method METHOD``: for a method built on the engine, training iterations per second, seconds per rendered frame, FPS, memory.

Protocol (``../shared/docs/synctalk.md`` §3, "FPS"): the model of the preset is trained (cached, as ``bench run``
trains it); render time is ``TalkingHeadModel.render_frame`` for one full head-only frame at the prepared size (512²)
with everything already on the device, excluding audio preprocessing and disk writes, after one warm-up frame,
synchronised on CUDA; the median over frames is reported. Training speed is the median step time of extra steps
run on a throw-away copy of the trained model (the checkpoint is not changed).
"""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    method_name: str, subject: str, config: dict[str, Any], frames: int = 10, train_steps: int = 30, progress: bool = True
) -> dict[str, Any]:
    from bench import pipeline
    from bench.contracts import BenchError, RunSpec
    from bench.methods.engine.data import HeadBackgrounds
    from bench.methods.engine.method import TalkingHeadMethod, audio_inputs, lpips_loss_model
    from bench.methods.engine.training import Trainer

    trained = pipeline.train(RunSpec(method=method_name, subject=subject, config=config), progress)
    method = trained.method
    if not isinstance(method, TalkingHeadMethod):
        raise BenchError(f"bench speed measures methods built on the NeRF engine; {method_name!r} is not one")
    resolved = method.config
    model, prepared, data, meta = method.load(trained.subject, trained.checkpoint)
    device = next(model.parameters()).device
    side = prepared.frames().shape[1]
    samples = prepared.audio()
    inputs = torch.from_numpy(audio_inputs(meta["audio_encoder"], samples, prepared.n_frames, resolved)).float().to(device)
    head_background = HeadBackgrounds(prepared)
    test = list(data.split.test)[: frames + 1]
    prepared_inputs = []
    for source in test:
        background = torch.from_numpy(head_background(source)).to(device).float() / 255
        with torch.no_grad():
            code = model.encode_audio(inputs, source)
        prepared_inputs.append((data.poses[source].to(device), code, data.expressions[source].to(device), background))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    intrinsics = data.intrinsics(side)
    for index, (pose, code, expression, background) in enumerate(prepared_inputs):
        _sync(device)
        started = time.perf_counter()
        model.render_frame(pose, intrinsics, side, code, expression, background)
        _sync(device)
        if index:  # the first frame warms up
            times.append(time.perf_counter() - started)
    render_seconds = statistics.median(times)

    model.train()
    data = method.load_data(prepared)
    trainer = Trainer(model, data, inputs.cpu(), resolved, seed=1, device=device, lpips=lpips_loss_model(resolved["lpips_loss"]))
    trainer.state.step = resolved["iters_coarse"] // 2  # a coarse-stage step, like most of training
    step_times = []
    for index in range(train_steps + 3):
        _sync(device)
        started = time.perf_counter()
        trainer.step()
        _sync(device)
        if index >= 3:
            step_times.append(time.perf_counter() - started)
    step_seconds = statistics.median(step_times)
    report = {
        "method": method_name,
        "subject": subject,
        "preset": trained.config.preset,
        "config_resolution": trained.config.choices,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "frame_size": side,
        "render_seconds_per_frame_median": round(render_seconds, 4),
        "render_fps": round(1 / render_seconds, 2),
        "frames_timed": len(times),
        "train_rays_per_step": resolved["rays"],
        "train_iterations_per_second": round(1 / step_seconds, 2),
        "train_steps_timed": len(step_times),
        "trained_model": {"steps": meta["steps"], "audio_encoder": meta["audio_encoder"], "train_seconds": meta["train_seconds"]},
        "peak_host_memory_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if device.type == "cuda":
        report["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return report
