"""A NeRF talking head as a bench method: the train/render plumbing every engine method shares.

A method built on the engine subclasses :class:`TalkingHeadMethod` and supplies ``build_model`` (which field, audio
front end and conditioning it composes); the engine does the rest:

- ``resolve_config`` resolves the machine-dependent choices before the pipeline hashes the config: the audio front end
  (``audio_encoder=auto``: the AVE when its weights are at hand, else the mel encoder trained end to end), the
  fine-stage LPIPS loss (``lpips_loss=auto``: on when AlexNet's weights are here) and the hash-grid backend
  (``grid_backend=auto``: tiny-cuda-nn on CUDA when it imports, else plain PyTorch).
- Training reads the prepared subject the pipeline hands over (``Subject.steps``), trains the head field with the
  resolved config and writes ``model.pt`` (EMA weights) and ``meta.json`` (config, audio front end, loss trend,
  timings). Interrupted training resumes from its last checkpoint, kept in a sibling ``.<key>.resume`` folder.
- Head track: the head rendered over the frame's torso image composited over the background plate (as the released
  code does in head-only mode). Portrait track (SyncTalk's Portrait-Sync Generator): that render pasted into the
  original frame through the frame's soft face-only mask, out = render·m + frame·(1 − m).
- ``torso=true`` adds the optional torso stage after the head (``torso.py``, ``torso.pt``): the head track is then
  rendered over the learned torso over the plate instead of the frame's GT torso (head track only).
- Self audio renders the test split with its own poses and expressions; OOD audio replays poses, expressions, torso
  and (portrait) frames from the training split in ping-pong order, as the released code does.

Nothing heavy is imported at module level: the pipeline imports this module to resolve configs.
"""

from __future__ import annotations

import abc
import importlib.util
import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import SELF_AUDIO, BenchError, DrivingAudio, Method, Subject, Track, Unavailable

AUDIO_ENCODERS = ("ave", "whisper", "mel", "hubert", "deepspeech")
FEATURE_ENCODERS = {"hubert": "HuBERT (facebook/hubert-large-ls960-ft)", "deepspeech": "DeepSpeech v0.1.0"}


def device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_audio_encoder(config: Mapping[str, Any]) -> tuple[str, str]:
    """(kind, why). ``auto`` takes the AVE when its weights are at hand (config ``ave_path`` or the asset
    ``synctalk_ave``), else Whisper tiny.en when ctranslate2 and its model files are here (no download), else the
    plain mel encoder trained end to end. A feature encoder without its features is unavailable: its weights cannot
    be had here."""
    from bench import assets
    from bench.methods.engine import whisper

    kind = config["audio_encoder"]
    if kind == "auto":
        if config.get("ave_path"):
            return "ave", f"AVE weights from {config['ave_path']}"
        if "synctalk_ave" in assets.catalog() and assets.locate("synctalk_ave") != "missing":
            return "ave", "AVE weights from the asset synctalk_ave"
        whisper_missing = whisper.missing(download=False)
        if whisper_missing is None:
            return "whisper", "no audio-visual encoder weights here (config ave_path or asset synctalk_ave): Whisper tiny.en features"
        return "mel", (f"no audio-visual encoder weights here (config ave_path or asset synctalk_ave) and no Whisper "
                       f"({whisper_missing}): mel encoder trained end to end")
    if kind not in AUDIO_ENCODERS:
        raise BenchError(f"audio_encoder={kind!r}: use auto or one of {', '.join(AUDIO_ENCODERS)}")
    if kind in FEATURE_ENCODERS and not config.get(f"{kind}_features"):
        raise Unavailable(
            f"audio_encoder={kind} needs {FEATURE_ENCODERS[kind]} features, whose model weights are not available here: "
            f"compute them as the released code does and pass --config {kind}_features=PATH.npy"
        )
    if kind == "ave" and not config.get("ave_path") and "synctalk_ave" not in assets.catalog():
        raise Unavailable("audio_encoder=ave needs the audio-visual encoder's weights: train them with `bench train-ave` "
                          "and pass --config ave_path=PATH")
    if kind == "whisper" and (reason := whisper.missing(download=True)):
        raise Unavailable(f"audio_encoder=whisper: {reason}")
    return kind, "chosen in the config"


def resolve_lpips_loss(setting: Any) -> tuple[bool, str]:
    """Whether the fine stage uses the AlexNet LPIPS loss: ``auto`` when its weights are here."""
    from bench import configs
    from bench.metrics.lpips import NETS

    if setting in (False, "off"):
        return False, "off in the config"
    net = NETS["lpips@alex-v0.1"]
    reason = configs.missing(("lpips",), (net.backbone_asset, net.heads_asset))
    if setting == "auto":
        return (False, f"unavailable: {reason}") if reason else (True, "AlexNet LPIPS v0.1")
    if setting is True or setting == "on":
        if reason:
            raise Unavailable(f"lpips_loss=true: {reason}")
        return True, "AlexNet LPIPS v0.1"
    raise BenchError(f"lpips_loss={setting!r}: use auto, true or false")


def resolve_grid_backend(setting: str) -> tuple[str, str]:
    """``auto``: tiny-cuda-nn when it imports and CUDA is present, else plain PyTorch (checked without importing torch
    when tinycudann is not installed)."""
    if setting == "auto":
        if importlib.util.find_spec("tinycudann") is None:
            return "torch", "tinycudann is not installed"
        from bench.methods.engine.hashgrid import tcnn_available

        return ("tcnn", "tinycudann with CUDA") if tcnn_available() else ("torch", "no CUDA device for tinycudann")
    if setting not in ("torch", "tcnn"):
        raise BenchError(f"grid_backend={setting!r}: use auto, torch or tcnn")
    return setting, "chosen in the config"


def audio_inputs(kind: str, samples: np.ndarray, n_frames: int, config: Mapping[str, Any]) -> np.ndarray:
    """Per-frame inputs of the audio net for ``n_frames`` frames of 16 kHz mono ``samples``."""
    from bench import assets
    from bench.methods.engine import audio

    if kind == "mel":
        return audio.frame_mel_windows(samples, n_frames)
    if kind == "whisper":
        from bench.methods.engine import whisper

        return whisper.frame_inputs(samples, n_frames)
    if kind == "ave":
        path = config.get("ave_path") or assets.fetch("synctalk_ave")
        return audio.encode_frames(audio.load_ave(path, device()), samples, n_frames, device())
    loader = audio.load_hubert_features if kind == "hubert" else audio.load_deepspeech_features
    return audio.per_frame(loader(config[f"{kind}_features"]), n_frames)


def lpips_loss_model(enabled: bool):
    """The LPIPS (AlexNet v0.1) network for the fine stage, frozen on the device, or None."""
    if not enabled:
        return None
    from bench import assets
    from bench.metrics.lpips import NETS, build_lpips

    net = NETS["lpips@alex-v0.1"]
    model = build_lpips(net, assets.fetch(net.backbone_asset), assets.fetch(net.heads_asset))
    return model.to(device()).requires_grad_(False)


def prepared_subject(subject: Subject):
    """The ``bench prepare`` view of the steps the pipeline prepared for this method."""
    from bench.datasets.preprocess.prepared import PreparedSubject

    return PreparedSubject.of(subject)


class TalkingHeadMethod(Method):
    """Train/render plumbing of an engine method; subclasses compose the model in ``build_model``."""

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        resolved, choices = dict(config), {}
        resolvers = {
            "audio_encoder": resolve_audio_encoder,
            "lpips_loss": lambda values: resolve_lpips_loss(values["lpips_loss"]),
            "grid_backend": lambda values: resolve_grid_backend(values["grid_backend"]),
        }
        for key, resolver in resolvers.items():
            if key in resolved:
                before = resolved[key]
                resolved[key], why = resolver(resolved)
                if before == "auto":
                    choices[key] = f"auto -> {resolved[key]}: {why}"
        cls.check_config(resolved)
        return resolved, choices

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """Refuse values the method does not know (one-line errors); keys are checked by the pipeline."""
        if not isinstance(config.get("torso", False), bool):
            raise BenchError(f"torso={config['torso']!r}: use true or false")

    @abc.abstractmethod
    def build_model(self, prepared, data, audio_kind: str):
        """The method's model (a ``TalkingHeadModel``) for the prepared subject and its loaded data."""

    def load_data(self, prepared, images: bool = True):
        from bench.methods.engine.data import load_subject

        config = self.config
        return load_subject(prepared, config["train_size"], config["expression"], config["pose"] == "stabilised", images=images)

    def train(self, subject: Subject, checkpoint_dir: Path) -> None:
        import torch

        from bench.methods.engine.data import HeadBackgrounds
        from bench.methods.engine.training import Trainer, loss_trend

        config = self.config
        torch.manual_seed(self.seed)
        prepared = prepared_subject(subject)
        data = self.load_data(prepared)
        kind = config["audio_encoder"]
        samples = prepared.audio()
        inputs = torch.from_numpy(audio_inputs(kind, samples, prepared.n_frames, config)).float()
        model = self.build_model(prepared, data, kind)
        trainer = Trainer(model, data, inputs, config, self.seed, device(), lpips_loss_model(config.get("lpips_loss", False)),
                          desc=f"train {self.spec.id}")
        key = checkpoint_dir.name.split(".")[1] if checkpoint_dir.name.startswith(".") else checkpoint_dir.name
        resume = checkpoint_dir.parent / f".{key}.resume"
        resume.mkdir(exist_ok=True)
        resumed_at = trainer.state.step if trainer.load(resume) else 0
        state = trainer.train(resume, progress=self.progress)
        torch.save(trainer.ema.state_dict(), checkpoint_dir / "model.pt")
        torso_meta = None
        if config.get("torso"):
            plate = HeadBackgrounds(prepared).plate
            torso_meta = self._train_torso(trainer.ema, data, plate, inputs, resume, checkpoint_dir)
        meta = {
            "config": config,
            "audio_encoder": kind,
            "steps": state.step,
            "resumed_at_step": resumed_at,
            "train_seconds": round(state.seconds, 1),
            "iterations_per_second": round(state.step / state.seconds, 3) if state.seconds else None,
            "loss_trend": loss_trend(state.losses),
            "torso": torso_meta,
            "device": str(device()),
            "prepared_steps": {name: str(folder) for name, folder in prepared.folders.items()},
        }
        (checkpoint_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        shutil.rmtree(resume, ignore_errors=True)

    def _train_torso(self, head, data, plate: np.ndarray, inputs, resume: Path, checkpoint_dir: Path) -> dict[str, Any]:
        """The optional torso stage behind the frozen (EMA) head; writes ``torso.pt``."""
        import torch

        from bench.methods.engine.data import resize_stack
        from bench.methods.engine.torso import TorsoField, TorsoTrainer
        from bench.methods.engine.training import loss_trend

        plate_tensor = torch.from_numpy(resize_stack(plate[None], data.size)[0])
        torso = TorsoField(n_codes=data.split.train.stop)
        trainer = TorsoTrainer(head, torso, data, plate_tensor, inputs, self.config, self.seed, device())
        trainer.load(resume)
        trainer.train(resume, progress=self.progress)
        torch.save(torso.state_dict(), checkpoint_dir / "torso.pt")
        return {"steps": trainer.step_count, "train_seconds": round(trainer.seconds, 1), "loss_trend": loss_trend(trainer.losses)}

    def load(self, subject: Subject, checkpoint_dir: Path):
        """(model on the device in eval mode, prepared subject, data without training images, meta)."""
        import torch

        meta = json.loads((checkpoint_dir / "meta.json").read_text())
        prepared = prepared_subject(subject)
        data = self.load_data(prepared, images=False)
        model = self.build_model(prepared, data, meta["audio_encoder"])
        model.load_state_dict(torch.load(checkpoint_dir / "model.pt", map_location="cpu", weights_only=True))
        return model.to(device()).eval(), prepared, data, meta

    @staticmethod
    def _load_torso(checkpoint_dir: Path, data, on):
        import torch

        from bench.methods.engine.torso import TorsoField

        torso = TorsoField(n_codes=data.split.train.stop)
        torso.load_state_dict(torch.load(checkpoint_dir / "torso.pt", map_location="cpu", weights_only=True))
        return torso.to(on).eval()

    def render(self, subject: Subject, checkpoint_dir: Path | None, audio: DrivingAudio, track: Track) -> Iterator[np.ndarray]:
        if checkpoint_dir is None:
            raise BenchError(f"{self.spec.id} renders from a trained checkpoint")
        if audio.id == SELF_AUDIO:
            prepared = prepared_subject(subject)
            yield from self.render_test_split(subject, checkpoint_dir, track, prepared.audio())
            return
        from bench.methods.engine.model import mirror_index

        n_train = len(prepared_subject(subject).split.train)
        sources = [mirror_index(i, n_train) for i in range(audio.n_frames)]
        yield from self.render_sources(subject, checkpoint_dir, track, sources, audio.samples(), list(range(audio.n_frames)),
                                       audio.n_frames)

    def render_test_split(self, subject: Subject, checkpoint_dir: Path, track: Track, samples: np.ndarray) -> Iterator[np.ndarray]:
        """The test split's frames (their poses, expressions and backgrounds) driven by ``samples``, 16 kHz audio
        aligned with the whole clip: the subject's own audio, or a control such as that audio shifted."""
        prepared = prepared_subject(subject)
        test = list(prepared.split.test)
        yield from self.render_sources(subject, checkpoint_dir, track, test, samples, test, prepared.n_frames)

    def render_sources(self, subject: Subject, checkpoint_dir: Path, track: Track, sources: list[int],
                       samples: np.ndarray, audio_frames: list[int], n_inputs: int) -> Iterator[np.ndarray]:
        """Frame k: the pose, expression and background of clip frame ``sources[k]``, the audio of video frame
        ``audio_frames[k]`` of ``samples`` (whose per-frame audio inputs are computed for ``n_inputs`` frames)."""
        import torch

        from bench.methods.engine.data import HeadBackgrounds
        from bench.methods.engine.torso import pixel_coordinates

        config = self.config
        if config.get("torso") and track is Track.PORTRAIT:
            raise BenchError("torso=true renders the head track only: the portrait track pastes the face into the original "
                             "frame, whose torso is real (SyncTalk cannot combine --torso and --portrait either)")
        model, prepared, data, meta = self.load(subject, checkpoint_dir)
        on = device()
        torso = self._load_torso(checkpoint_dir, data, on) if config.get("torso") else None
        frames = prepared.frames()
        side = frames.shape[1]
        inputs = torch.from_numpy(audio_inputs(meta["audio_encoder"], samples, n_inputs, config)).float().to(on)
        head_background = HeadBackgrounds(prepared)
        face = prepared.array("parsing", "face_soft.npy")
        intrinsics = data.intrinsics(side)
        if torso is not None:
            coords = pixel_coordinates(side).to(on)
            plate = torch.from_numpy(head_background.plate).to(on).float().reshape(-1, 3) / 255
        for source, audio_frame in zip(sources, audio_frames, strict=True):
            with torch.no_grad():
                code = model.encode_audio(inputs, audio_frame)
                if torso is None:
                    background = torch.from_numpy(head_background(source)).to(on).float() / 255
                else:
                    background = torso.background(coords, data.poses[source].to(on), 0, plate)[0].reshape(side, side, 3)
                image = model.render_frame(
                    data.poses[source].to(on), intrinsics, side, code, data.expressions[source].to(on), background
                )
            rendered = image.cpu().numpy()
            if track is Track.PORTRAIT:
                mask = np.asarray(face[source], dtype=np.float32)[..., None] / 255.0
                rendered = rendered * mask + (np.asarray(frames[source], dtype=np.float32) / 255.0) * (1 - mask)
            yield np.clip(rendered * 255 + 0.5, 0, 255).astype(np.uint8)
