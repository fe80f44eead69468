"""The method contract: configs resolved before hashing (presets, `auto`, unknown keys), variants, declared
preparation steps keying training, availability, and `bench ablate` (dry run, and a real run on a short clip)."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_bench, write_clip

from bench import configs, pipeline, registry, stages
from bench.contracts import BenchError, Capabilities, MethodSpec, RunSpec, Track, Unavailable, Variant

# a few seconds of training: these tests are about keys and wiring, not quality
TINY = {"preset": "smoke", "train_size": 64, "iters_coarse": 30, "iters_fine": 6, "rays": 1024, "grid_resolution": 32,
        "max_steps": 4, "checkpoint_every": 20, "ema_every": 5}


@pytest.fixture
def clip_subject(clip_source, tmp_path, single_torch_thread):
    """A real 3 s clip (from the mirror) registered as the user subject "clip" (only ingested: runs prepare the rest)."""
    from bench.datasets.preprocess.prepared import prepare

    frames, audio = clip_source
    prepare(str(write_clip(tmp_path / "clip.mp4", frames, audio)), name="clip", steps=["ingest"], progress=False)


def _register(monkeypatch, *specs: MethodSpec) -> None:
    known = dict(registry.methods.all())
    known.update({spec.id: spec for spec in specs})
    monkeypatch.setattr(registry.methods, "_specs", known)


def test_unknown_config_key_fails_with_did_you_mean():
    with pytest.raises(BenchError, match=r"no option 'iter_coarse'; did you mean iters_coarse"):
        configs.resolve(configs.choose_method("synctalk"), {"iter_coarse": 3})
    result = run_bench("run", "--method", "still-frame", "--subject", "cnn", "--config", "nosie=3", check=False)
    assert result.returncode == 2 and "has no option 'nosie'" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture
def tiny_synthetic(monkeypatch, tiny_video):
    from bench.contracts import SubjectSpec

    subjects = dict(registry.subjects.all())
    subjects["tiny-synthetic"] = SubjectSpec(id="tiny-synthetic", description="test", video_path=str(tiny_video))
    monkeypatch.setattr(registry.subjects, "_specs", subjects)


def test_presets_are_expanded_and_their_values_key_the_cache(monkeypatch, tiny_synthetic):
    synctalk = registry.methods.get("synctalk")
    resolved = configs.resolve(configs.MethodChoice(synctalk), {"preset": "smoke", "rays": 512})
    assert "preset" not in resolved.values and resolved.preset == "smoke"
    assert resolved.values["iters_coarse"] == synctalk.presets["smoke"]["iters_coarse"] and resolved.values["rays"] == 512
    with pytest.raises(BenchError, match="unknown synctalk preset 'tiny'"):
        configs.resolve(configs.MethodChoice(synctalk), {"preset": "tiny"})

    # a method with presets, trained through the pipeline: same preset values reuse, edited values retrain
    presets = {"soft": {"noise": 2}}
    echo = MethodSpec(id="preset-echo", impl="bench.methods.reference.adapter:StillFrame", description="test",
                      capabilities=Capabilities(needs_training=True), default_config={"preset": "soft"}, presets=presets)
    _register(monkeypatch, echo)
    first = pipeline.train(RunSpec(method="preset-echo", subject="tiny-synthetic"), progress=False)
    again = pipeline.train(RunSpec(method="preset-echo", subject="tiny-synthetic"), progress=False)
    assert again.checkpoint == first.checkpoint and first.inputs["config"] == {"noise": 2}
    _register(monkeypatch, replace(echo, presets={"soft": {"noise": 3}}))
    edited = pipeline.train(RunSpec(method="preset-echo", subject="tiny-synthetic"), progress=False)
    assert edited.checkpoint != first.checkpoint and edited.inputs["config"] == {"noise": 3}


def test_auto_settings_are_resolved_before_hashing(monkeypatch, tmp_path):
    import importlib.util

    from bench.methods.engine import hashgrid

    choice = configs.choose_method("synctalk")
    resolved = configs.resolve(choice, {})
    # this machine: no AVE weights, Whisper in the mirror, no AlexNet weights, no tinycudann
    assert resolved.values["audio_encoder"] == "whisper" and resolved.choices["audio_encoder"].startswith("auto -> whisper")
    assert resolved.values["lpips_loss"] is False and resolved.choices["lpips_loss"].startswith("auto -> False")
    assert resolved.values["grid_backend"] == "torch" and resolved.choices["grid_backend"].startswith("auto -> torch")
    assert "auto" not in resolved.values.values()
    # each choice follows the machine: weights given -> the AVE; tinycudann with CUDA -> tcnn
    ave = configs.resolve(choice, {"ave_path": str(tmp_path / "ave.pth")})
    assert ave.values["audio_encoder"] == "ave"
    # no Whisper (no ctranslate2, or its files neither cached nor mirrored) -> mel, and why
    mirror = os.environ["BENCH_ASSET_MIRROR"]
    monkeypatch.setenv("BENCH_ASSET_MIRROR", str(tmp_path))
    mel = configs.resolve(choice, {})
    assert mel.values["audio_encoder"] == "mel" and "whisper_tiny_en_ct2_config_json is missing" in mel.choices["audio_encoder"]
    monkeypatch.setenv("BENCH_ASSET_MIRROR", mirror)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "tinycudann" else real_find_spec(name, *a))
    monkeypatch.setattr(hashgrid, "tcnn_available", lambda: True)
    tcnn = configs.resolve(choice, {})
    assert tcnn.values["grid_backend"] == "tcnn" and tcnn.choices["grid_backend"].startswith("auto -> tcnn")


def test_variants_and_availability():
    choice = configs.choose_method("synctalk:no-stabilizer")
    assert choice.variant.config == {"pose": "raw"} and configs.resolve(choice, {}).values["pose"] == "raw"
    assert configs.run_track(configs.choose_method("synctalk:no-portrait"), Track.PORTRAIT) is Track.HEAD
    with pytest.raises(BenchError, match="has no variant 'no-stabiliser'; its variants are: hubert"):
        configs.choose_method("synctalk:no-stabiliser")
    # HuBERT's weights cannot be had: unavailable with the reason, never silently another encoder
    assert "needs HuBERT" in configs.unavailable(configs.choose_method("synctalk:hubert"))
    assert configs.unavailable(configs.choose_method("synctalk:hubert"), {"hubert_features": "f.npy"}) is None
    assert "capture.openface_csv" in configs.unavailable(configs.choose_method("synctalk:au45"))
    assert configs.unavailable(configs.choose_method("synctalk:au45"), None, {"capture": {"openface_csv": "x.csv"}}) is None
    listing = run_bench("list", "methods").stdout
    for variant in registry.methods.get("synctalk").variants:
        assert f"synctalk:{variant.name}" in listing
    assert "unavailable: synctalk:hubert" in listing and "reference method" in listing


def test_missing_asset_makes_a_method_variant_unavailable(monkeypatch):
    spec = MethodSpec(id="needs-weights", impl="bench.methods.reference.adapter:StillFrame", description="test",
                      variants=(Variant("big", "a variant with weights", assets=("syncnet_v2_model",)),),
                      capabilities=Capabilities(needs_training=False))
    _register(monkeypatch, spec)
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    assert configs.unavailable(configs.choose_method("needs-weights")) is None
    reason = configs.unavailable(configs.choose_method("needs-weights:big"))
    assert reason.startswith("needs-weights:big: asset 'syncnet_v2_model' is missing")
    with pytest.raises(Unavailable):
        pipeline.train(RunSpec(method="needs-weights:big", subject="cnn"), progress=False)


def test_training_is_keyed_on_the_preparation_steps_the_method_reads(clip_subject, monkeypatch):
    reads_landmarks = MethodSpec(
        id="reads-landmarks", impl="bench.methods.reference.adapter:StillFrame", description="test",
        capabilities=Capabilities(needs_training=True), prepare_steps=("landmarks",),
    )
    _register(monkeypatch, reads_landmarks)
    first = pipeline.train(RunSpec(method="reads-landmarks", subject="clip"), progress=False)
    assert set(first.subject.steps) == {"ingest", "landmarks"}  # exactly what it reads, nothing more
    assert first.inputs["prepared"] == {name: folder.name for name, folder in first.subject.steps.items()}
    # an option of a step it does not read: the same training
    unread = pipeline.train(RunSpec(method="reads-landmarks", subject="clip",
                                    prepare_options={"capture": {"openface_csv": ""}, "export": {}}), progress=False)
    assert unread.checkpoint == first.checkpoint
    # an option of a step it reads: prepared again, trained again
    read = pipeline.train(RunSpec(method="reads-landmarks", subject="clip",
                                  prepare_options={"landmarks": {"max_gap_frames": 6}}), progress=False)
    assert read.checkpoint != first.checkpoint
    assert read.subject.steps["landmarks"] != first.subject.steps["landmarks"]
    assert read.subject.steps["ingest"] == first.subject.steps["ingest"]
    plan = pipeline.plan(RunSpec(method="reads-landmarks", subject="clip", prepare_options={"landmarks": {"max_gap_frames": 6}}))
    assert plan["prepare"] == "cached" and plan["train"] == "cached" and plan["render"] == "to run"
    assert pipeline.plan(RunSpec(method="reads-landmarks", subject="clip", prepare_options={"landmarks": {"max_gap_frames": 5}}))[
        "prepare"] == "to run"


def test_a_second_method_from_engine_parts_alone(clip_subject, monkeypatch):
    """A minimal NeRF talking head composed from the engine only (no SyncTalk import): tri-plane head field with no
    region masks, mel audio front end, raw poses; it trains and renders through the pipeline."""
    import sys
    import types

    from bench.methods.engine.fields import HeadField
    from bench.methods.engine.method import TalkingHeadMethod
    from bench.methods.engine.model import TalkingHeadModel

    class MinimalHead(TalkingHeadMethod):
        def build_model(self, prepared, data, audio_kind):
            field = HeadField(expression_dim=data.expressions.shape[1], n_codes=data.split.train.stop, levels=4,
                              backend=self.config["grid_backend"])
            return TalkingHeadModel(field, audio_kind, grid_resolution=self.config["grid_resolution"],
                                    max_steps=self.config["max_steps"])

    module = types.ModuleType("minimal_head_adapter")
    module.MinimalHead = MinimalHead
    monkeypatch.setitem(sys.modules, "minimal_head_adapter", module)
    tiny = {key: value for key, value in TINY.items() if key != "preset"}
    spec = MethodSpec(
        id="minimal-head", impl="minimal_head_adapter:MinimalHead", description="engine parts only",
        capabilities=Capabilities(needs_training=True, ood_audio=True, tracks=(Track.HEAD,)),
        default_config={**tiny, "audio_encoder": "auto", "expression": "blendshapes", "pose": "raw", "lpips_loss": "auto",
                        "grid_backend": "auto", "lr_grid": 1e-2, "lr_net": 1e-3, "grid_update_every": 16},
        prepare_steps=("landmarks", "capture", "parsing", "background", "torso", "pose"),
    )
    _register(monkeypatch, spec)
    result = pipeline.run(RunSpec(method="minimal-head", subject="clip", metrics=("psnr",)), progress=False)
    assert result.n_frames == 7 and result.outcomes[0].value.aggregate > 10
    trained = pipeline.train(RunSpec(method="minimal-head", subject="clip"), progress=False)
    meta = json.loads((trained.checkpoint / "meta.json").read_text())
    assert meta["audio_encoder"] == "whisper" and meta["steps"] == 36
    assert "bundle" not in trained.subject.steps and "points" not in trained.subject.steps  # raw poses: no bundle step


def test_ablate_on_a_short_clip(clip_subject):
    """`bench ablate` at a tiny preset: every Table 4 row present or marked unavailable, shared stages reused."""
    config = [arg for key, value in TINY.items() for arg in ("--config", f"{key}={value}")]
    dry = run_bench("ablate", "--method", "synctalk", "--subject", "clip", "--dry-run", *config).stdout
    assert "synctalk:no-stabilizer" in dry and "train to run" in dry and "unavailable: audio_encoder=hubert" in dry
    table = run_bench("ablate", "--method", "synctalk", "--subject", "clip", "--metrics", "psnr,lmd", "--no-progress",
                      *config).stdout
    for label in ("synctalk (full)", "without Head-Sync Stabilizer", "without Portrait-Sync Generator",
                  "without facial-aware masked attention", "audio-visual encoder replaced by HuBERT — unavailable",
                  "facial animation capturer replaced by AU45 — unavailable", "full SyncTalk", "[bench]"):
        assert label in table, label
    rows = {line.split("|")[2].strip(): line.split("|")[3:-1] for line in table.splitlines() if line.startswith("| measured")}
    assert float(rows["without Head-Sync Stabilizer"][0].split()[0].replace("<ins>", "").strip("*")) > 10  # a measured PSNR
    assert rows["audio-visual encoder replaced by HuBERT — unavailable"][0].strip() == "–"
    again = run_bench("ablate", "--method", "synctalk", "--subject", "clip", "--dry-run", *config).stdout
    assert "train to run" not in again and "render to run" not in again  # resumable: everything is cached now
    trainings = list((stages.stage_path("train", "x").parent).glob("[!.]*"))
    # full, no-masked-attention, no-stabilizer, masked-attention-code, mel; no-portrait and whisper (what auto
    # resolves to here) share the full training
    assert len(trainings) == 5


def test_the_engine_imports_no_method():
    """Engine modules import only the engine and bench's core, never a method (SyncTalk or any other)."""
    import ast
    from pathlib import Path

    import bench.methods.engine as engine

    for path in sorted(Path(engine.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith("bench.methods.") or name.startswith("bench.methods.engine"), (path.name, name)


@pytest.mark.slow
def test_ablate_on_cnn_at_smoke(mirror, single_torch_thread):
    table = run_bench("ablate", "--method", "synctalk", "--subject", "cnn", "--preset", "smoke", "--no-progress").stdout
    print(table)
    rows = {line.split("|")[2].strip(): line.split("|")[3:-1] for line in table.splitlines() if line.startswith("| measured")}
    for label in ("synctalk (full)", "without Head-Sync Stabilizer", "without Portrait-Sync Generator",
                  "without facial-aware masked attention"):
        value = rows[label][0].split()[0].replace("<ins>", "").strip("*")
        assert np.isfinite(float(value)), label  # a measured PSNR
    assert "audio-visual encoder replaced by HuBERT — unavailable" in rows
