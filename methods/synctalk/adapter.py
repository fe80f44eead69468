"""SyncTalk as a bench method: train on a prepared subject, render the test split or OOD audio on either track.

- Training prepares the subject fully (``bench prepare``; cached), trains the head field with the chosen preset and
  writes ``model.pt`` (EMA weights) and ``meta.json`` (resolved config, audio encoder used, loss trend, timings,
  what was unavailable) into the checkpoint folder. Interrupted training resumes from its last checkpoint, kept
  in a sibling ``.<key>.resume`` folder until training finishes.
- Head track: the head is rendered over the frame's own torso image composited over the background plate (as the
  released code does in head-only mode). Portrait track (Portrait-Sync Generator): that render pasted into the
  original frame through the frame's soft face-only mask, out = render·m + frame·(1 − m).
- ``torso=true`` adds SyncTalk's optional torso stage after the head (``torso.py``, ``torso.pt``): the head track is then
  rendered over the learned torso over the plate instead of the frame's GT torso (head track only).
- Self audio renders the test split with its own poses and expressions; OOD audio replays poses, expressions,
  torso and (portrait) frames from the training split in ping-pong order, as the released code does.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import SELF_AUDIO, BenchError, DrivingAudio, Method, Subject, Track


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_audio_encoder(config: dict[str, Any]) -> tuple[str, str]:
    """(kind, why): ``auto`` takes the AVE when its weights are at hand (config ``ave_path`` or the asset), else the
    plain mel encoder trained end to end."""
    from bench import assets

    kind = config["audio_encoder"]
    if kind != "auto":
        return kind, "chosen in the config"
    if config.get("ave_path"):
        return "ave", f"AVE weights from {config['ave_path']}"
    if "synctalk_ave" in assets.catalog() and assets.locate("synctalk_ave") != "missing":
        return "ave", "AVE weights from the asset synctalk_ave"
    return "mel", "no audio-visual encoder weights here (config ave_path or asset synctalk_ave): mel encoder trained end to end"


def audio_inputs(kind: str, samples: np.ndarray, n_frames: int, config: dict[str, Any]) -> np.ndarray:
    """Per-frame inputs of the audio net for ``n_frames`` frames of 16 kHz mono ``samples``."""
    from bench import assets
    from bench.methods.synctalk import audio

    if kind == "mel":
        return audio.frame_mel_windows(samples, n_frames)
    if kind == "ave":
        path = config.get("ave_path") or assets.fetch("synctalk_ave")
        return audio.encode_frames(audio.load_ave(path, _device()), samples, n_frames, _device())
    feature_file = config.get(f"{kind}_features")
    if not feature_file:
        raise BenchError(f"audio_encoder={kind} needs precomputed features: --config {kind}_features=PATH.npy")
    loader = audio.load_hubert_features if kind == "hubert" else audio.load_deepspeech_features
    return audio.per_frame(loader(feature_file), n_frames)


def _lpips_loss(config: dict[str, Any]):
    """LPIPS (AlexNet v0.1) for the fine stage, or None with the reason when its weights are not here."""
    from bench import assets
    from bench.metrics.lpips import NETS, build_lpips

    if config["lpips_loss"] is False or config["lpips_loss"] == "off":
        return None, "off in the config"
    net = NETS["lpips@alex-v0.1"]
    try:
        model = build_lpips(net, assets.fetch(net.backbone_asset), assets.fetch(net.heads_asset))
    except BenchError as error:
        if config["lpips_loss"] == "auto":
            return None, f"unavailable: {error}"
        raise
    return model.to(_device()).requires_grad_(False), "AlexNet LPIPS v0.1"


def face_vertices(prepared) -> np.ndarray:
    """The subject's fitted 3-D face model (head frame, metres): the mean of the pose step's per-frame model points,
    else MediaPipe's canonical face."""
    from bench.datasets.preprocess import face_model

    pose = prepared.pose(stabilised=False)
    if "model_points" in pose:
        return np.asarray(pose["model_points"], dtype=np.float32).mean(axis=0)
    return np.asarray(face_model.mediapipe_canonical().points, dtype=np.float32)


def build_model(prepared, data, config: dict[str, Any], audio_kind: str):
    import torch

    from bench.methods.synctalk.model import SyncTalkModel
    from bench.methods.synctalk.network import HeadField, region_boxes

    boxes = (None, None)
    if config["masked_attention"] == "paper":
        vertices = torch.from_numpy(face_vertices(prepared))
        boxes = region_boxes(vertices[:, [1, 2, 0]] * 4.0)
    elif config["masked_attention"] not in ("code", "off"):
        raise BenchError(f"masked_attention={config['masked_attention']!r}: use paper, code or off")
    field = HeadField(
        expression_dim=data.expressions.shape[1],
        n_codes=data.split.train.stop,
        levels=config["levels"],
        lip_box=boxes[0],
        expression_box=boxes[1],
    )
    return SyncTalkModel(field, audio_kind, grid_resolution=config["grid_resolution"], max_steps=config["max_steps"])


class SyncTalk(Method):
    def _config(self) -> dict[str, Any]:
        from bench.methods.synctalk import presets

        config = presets.resolve(self.config)
        if config["pose"] not in ("stabilised", "raw"):
            raise BenchError(f"pose={config['pose']!r}: use stabilised or raw")
        if not isinstance(config["torso"], bool):
            raise BenchError(f"torso={config['torso']!r}: use true or false")
        return config

    def _prepare(self, subject: Subject):
        from bench.datasets.preprocess.prepared import prepare

        return prepare(subject.id, options=self.config.get("prepare_options") or None, progress=self.progress)

    def train(self, subject: Subject, checkpoint_dir: Path) -> None:
        import torch

        from bench import media
        from bench.methods.synctalk.data import HeadBackgrounds, load_subject
        from bench.methods.synctalk.training import Trainer, loss_trend

        config = self._config()
        torch.manual_seed(self.seed)
        prepared = self._prepare(subject)
        data = load_subject(prepared, config["train_size"], config["expression"], config["pose"] == "stabilised")
        kind, why = resolve_audio_encoder(config)
        samples = media.read_wav(prepared.folder("ingest") / "audio.wav")
        inputs = torch.from_numpy(audio_inputs(kind, samples, prepared.n_frames, config)).float()
        model = build_model(prepared, data, config, kind)
        lpips, lpips_why = _lpips_loss(config)
        trainer = Trainer(model, data, inputs, config, self.seed, _device(), lpips)
        key = checkpoint_dir.name.split(".")[1] if checkpoint_dir.name.startswith(".") else checkpoint_dir.name
        resume = checkpoint_dir.parent / f".{key}.resume"
        resume.mkdir(exist_ok=True)
        resumed_at = trainer.state.step if trainer.load(resume) else 0
        state = trainer.train(resume, progress=self.progress)
        torch.save(trainer.ema.state_dict(), checkpoint_dir / "model.pt")
        torso_meta = None
        if config["torso"]:
            plate = HeadBackgrounds(prepared).plate
            torso_meta = self._train_torso(trainer.ema, data, plate, inputs, config, resume, checkpoint_dir)
        meta = {
            "config": config,
            "audio_encoder": kind,
            "audio_encoder_reason": why,
            "lpips_loss": lpips_why,
            "steps": state.step,
            "resumed_at_step": resumed_at,
            "train_seconds": round(state.seconds, 1),
            "iterations_per_second": round(state.step / state.seconds, 3) if state.seconds else None,
            "loss_trend": loss_trend(state.losses),
            "torso": torso_meta,
            "device": str(_device()),
            "prepared_steps": {name: str(folder) for name, folder in prepared.folders.items()},
        }
        (checkpoint_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        shutil.rmtree(resume, ignore_errors=True)

    def _train_torso(self, head, data, plate: np.ndarray, inputs, config: dict[str, Any], resume: Path,
                     checkpoint_dir: Path) -> dict[str, Any]:
        """The optional torso stage behind the frozen (EMA) head; writes ``torso.pt``."""
        import torch

        from bench.methods.synctalk.data import resize_stack
        from bench.methods.synctalk.torso import TorsoField, TorsoTrainer
        from bench.methods.synctalk.training import loss_trend

        plate_tensor = torch.from_numpy(resize_stack(plate[None], data.size)[0])
        torso = TorsoField(n_codes=data.split.train.stop)
        trainer = TorsoTrainer(head, torso, data, plate_tensor, inputs, config, self.seed, _device())
        trainer.load(resume)
        trainer.train(resume, progress=self.progress)
        torch.save(torso.state_dict(), checkpoint_dir / "torso.pt")
        return {"steps": trainer.step_count, "train_seconds": round(trainer.seconds, 1), "loss_trend": loss_trend(trainer.losses)}

    def load(self, subject: Subject, checkpoint_dir: Path):
        import torch

        from bench.methods.synctalk.data import load_subject

        config = self._config()
        meta = json.loads((checkpoint_dir / "meta.json").read_text())
        prepared = self._prepare(subject)
        data = load_subject(prepared, config["train_size"], config["expression"], config["pose"] == "stabilised", images=False)
        model = build_model(prepared, data, config, meta["audio_encoder"])
        model.load_state_dict(torch.load(checkpoint_dir / "model.pt", map_location="cpu", weights_only=True))
        return model.to(_device()).eval(), prepared, data, meta, config

    @staticmethod
    def _load_torso(checkpoint_dir: Path, data, device):
        import torch

        from bench.methods.synctalk.torso import TorsoField

        torso = TorsoField(n_codes=data.split.train.stop)
        torso.load_state_dict(torch.load(checkpoint_dir / "torso.pt", map_location="cpu", weights_only=True))
        return torso.to(device).eval()

    def render(self, subject: Subject, checkpoint_dir: Path | None, audio: DrivingAudio, track: Track) -> Iterator[np.ndarray]:
        import torch

        from bench import media
        from bench.methods.synctalk.data import HeadBackgrounds
        from bench.methods.synctalk.model import mirror_index
        from bench.methods.synctalk.torso import pixel_coordinates

        if checkpoint_dir is None:
            raise BenchError("synctalk renders from a trained checkpoint")
        if self._config()["torso"] and track is Track.PORTRAIT:
            raise BenchError("torso=true renders the head track only: the portrait track pastes the face into the original "
                             "frame, whose torso is real (SyncTalk cannot combine --torso and --portrait either)")
        model, prepared, data, meta, config = self.load(subject, checkpoint_dir)
        device = _device()
        torso = self._load_torso(checkpoint_dir, data, device) if config["torso"] else None
        frames = prepared.frames()
        side = frames.shape[1]
        if audio.id == SELF_AUDIO:
            sources = list(data.split.test)
            samples = media.read_wav(prepared.folder("ingest") / "audio.wav")
            n_inputs = prepared.n_frames
        else:
            sources = [mirror_index(i, len(data.split.train)) for i in range(audio.n_frames)]
            samples = audio.samples()
            n_inputs = audio.n_frames
        inputs = torch.from_numpy(audio_inputs(meta["audio_encoder"], samples, n_inputs, config)).float().to(device)
        head_background = HeadBackgrounds(prepared)
        face = prepared.array("parsing", "face_soft.npy")
        intrinsics = data.intrinsics(side)
        if torso is not None:
            coords = pixel_coordinates(side).to(device)
            plate = torch.from_numpy(head_background.plate).to(device).float().reshape(-1, 3) / 255
        for index, source in enumerate(sources):
            audio_frame = source if audio.id == SELF_AUDIO else index
            with torch.no_grad():
                code = model.encode_audio(inputs, audio_frame)
                if torso is None:
                    background = torch.from_numpy(head_background(source)).to(device).float() / 255
                else:
                    background = torso.background(coords, data.poses[source].to(device), 0, plate)[0].reshape(side, side, 3)
                image = model.render_frame(
                    data.poses[source].to(device), intrinsics, side, code, data.expressions[source].to(device), background
                )
            rendered = image.cpu().numpy()
            if track is Track.PORTRAIT:
                mask = np.asarray(face[source], dtype=np.float32)[..., None] / 255.0
                rendered = rendered * mask + (np.asarray(frames[source], dtype=np.float32) / 255.0) * (1 - mask)
            yield np.clip(rendered * 255 + 0.5, 0, 255).astype(np.uint8)
