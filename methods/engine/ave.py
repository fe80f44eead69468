"""Training SyncTalk's audio-visual encoder (paper §3.2, Eq. 1-3); the released code has no trainer.

A Wav2Lip-style lip-sync expert whose audio tower is ``audio.AudioEncoder``:

- Audio: the 80×16 mel window (0.2 s) starting at mel frame int(80·t/25), as Wav2Lip's SyncNet trainer takes it
  for the face window of frames t..t+4 (SyncTalk's per-frame window for frame i is this window with t = i − 2).
- Face: frames t..t+4, each the lower half of a square crop around the 68 landmarks, stacked to 15 channels.
  Crop rule: the landmarks' bounding box, its centre and its longer side smoothed over 5 frames (moving mean), a
  square of 1.1 × that side around the centre (edge pixels repeated where it leaves the frame), resized with area
  averaging to ``face_size``² (Wav2Lip: 96), rows [face_size/2, face_size) kept: a 32×64 lower face by default.
- Face encoder: Wav2Lip SyncNet's face tower (7×7 conv, (1, 2)-strided 5×5 conv, four stride-2 stages with
  residual blocks, widths ``face_width``·(1, 2, 4, 8, 16), Wav2Lip: 32), ending in a global average pool and a
  1×1 conv block to 512-d, so any ``face_size`` divisible by 32 works.
- Sync loss (Eq. 1-2): cosine similarity of the two 512-d embeddings (both end in ReLU, so it lies in [0, 1]) under
  binary cross-entropy, label 1 for audio window t with face window t, 0 with a face window of the same clip at least
  5 frames away, averaged over the synchronised pairs and over the shifted ones, then halved (Wav2Lip's 50/50).
  ``negatives="sampled"`` (default, Wav2Lip's ``cosine_loss`` batches): half the batch synchronised, half paired
  with one random shifted partner. ``negatives="all"``: a step draws ``group_size`` windows from each of
  batch_size / group_size clips (chosen by training-window count) and scores every audio window against every face
  window of its clip: 32 windows give 32 synchronised and ~800 shifted pairs, not 16 and 16. It learns sooner
  (0.70 held-out after 100 steps on cnn) and tolerates lr 1e-3, but did not end higher (benchmarks/ave_accuracy.py).
- Reconstruction (Eq. 3): a decoder maps the concatenated embeddings [audio ⊕ face] of the synchronised pairs back
  to the face window; L1 to the input, added with weight ``recon_weight``.

Sync accuracy is measured on windows held aside: the last ``held_out_fraction`` of every clip's frames, unseen in
training. Every window t there is paired with every window t' there with |t − t'| ≥ 5: the fraction of
(synced, shifted) pairs where sim(face t, audio t) > sim(face t', audio t) (chance 0.5), and the balanced binary
accuracy at similarity threshold 0.5 (mean of the synced windows scored > 0.5 and shifted pairs ≤ 0.5). The same
sync accuracy on every ``TRAIN_EVAL_STRIDE``-th training window shows how far training fits what it saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.contracts import BenchError
from bench.methods.engine.audio import MEL_WINDOW, AudioEncoder, ConvBlock, mel_start, wav2lip_mel

SYNC_FRAMES = 5  # frames per face window (0.2 s, one mel window)
MIN_SHIFT = 5  # frames between a window and its non-synchronised partner
EMBEDDING_DIM = 512
N_LANDMARKS = 68
CROP_MARGIN = 1.1  # square side over the landmarks' longer bounding-box side
SMOOTHING_FRAMES = 5
TRAIN_EVAL_STRIDE = 9  # every 9th training window is scored for the train accuracy (~180 of cnn's 1600)
NEGATIVES = ("sampled", "all")


@dataclass(frozen=True)
class AveClip:
    """One talking-head clip: 25 fps RGB frames, their iBUG-68 landmarks in pixels (NaN where none) and its audio."""

    frames: np.ndarray  # (N, H, W, 3) uint8
    landmarks: np.ndarray  # (N, 68, 2) x, y pixels
    audio: np.ndarray  # float32 16 kHz mono

    def __post_init__(self) -> None:
        frames, landmarks, audio = self.frames, self.landmarks, self.audio
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise BenchError(f"AveClip frames: expected (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        if landmarks.shape != (len(frames), N_LANDMARKS, 2):
            raise BenchError(f"AveClip landmarks: expected ({len(frames)}, 68, 2), got {landmarks.shape}")
        if audio.ndim != 1:
            raise BenchError(f"AveClip audio: expected 16 kHz mono samples (1-D), got shape {audio.shape}")


# Lower-face crops


def _smoothed_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(N, 3) squares (centre x, centre y, side) from landmark boxes; frames without take the nearest frame's box."""
    from scipy.ndimage import uniform_filter1d

    valid = np.isfinite(landmarks).all(axis=(1, 2))
    if not valid.any():
        raise BenchError("AveClip: no frame has landmarks; detect faces (68 points) before training the AVE")
    low, high = landmarks[valid].min(axis=1), landmarks[valid].max(axis=1)
    boxes = np.concatenate([(low + high) / 2, (high - low).max(axis=1, keepdims=True) * CROP_MARGIN], axis=1)
    known, frames = np.flatnonzero(valid), np.arange(len(landmarks))
    after = np.clip(np.searchsorted(known, frames), 0, len(known) - 1)
    before = np.clip(after - 1, 0, len(known) - 1)
    nearest = np.where(np.abs(known[before] - frames) < np.abs(known[after] - frames), before, after)
    return uniform_filter1d(boxes[nearest], SMOOTHING_FRAMES, axis=0, mode="nearest")


def lower_face_crops(frames: np.ndarray, landmarks: np.ndarray, face_size: int = 96) -> np.ndarray:
    """(N, 3, face_size/2, face_size) uint8 lower halves of square face crops (rule in the module docstring)."""
    import cv2

    crops = np.empty((len(frames), 3, face_size // 2, face_size), dtype=np.uint8)
    for index, (centre_x, centre_y, side) in enumerate(_smoothed_boxes(landmarks)):
        side = max(round(side), 2)
        left, top = round(centre_x - side / 2), round(centre_y)  # the lower half starts at the centre
        frame = frames[index]
        height, width = frame.shape[:2]
        pads = (max(0, -top), max(0, top + side // 2 - height), max(0, -left), max(0, left + side - width))
        padded = cv2.copyMakeBorder(np.ascontiguousarray(frame), *pads, cv2.BORDER_REPLICATE) if any(pads) else frame
        region = padded[top + pads[0] : top + pads[0] + side // 2, left + pads[2] : left + pads[2] + side]
        crops[index] = cv2.resize(region, (face_size, face_size // 2), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    return crops


# Networks


class FaceEncoder(nn.Module):
    """Wav2Lip SyncNet's face tower: (B, 15, S/2, S) five stacked lower faces → (B, 512), non-negative."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        layers: list[nn.Module] = [ConvBlock(3 * SYNC_FRAMES, w, 7, 1, 3), ConvBlock(w, 2 * w, 5, (1, 2), 1)]
        layers += [ConvBlock(2 * w, 2 * w, 3, 1, 1, residual=True) for _ in range(2)]
        for channels_in, channels_out in ((2 * w, 4 * w), (4 * w, 8 * w), (8 * w, 16 * w)):
            layers.append(ConvBlock(channels_in, channels_out, 3, 2, 1))
            layers += [ConvBlock(channels_out, channels_out, 3, 1, 1, residual=True) for _ in range(2)]
        layers += [
            ConvBlock(16 * w, 16 * w, 3, 2, 1),
            nn.AdaptiveAvgPool2d(1),
            ConvBlock(16 * w, EMBEDDING_DIM, 1, 1, 0),
        ]
        self.face_encoder = nn.Sequential(*layers)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.face_encoder(faces).flatten(1)


class FaceDecoder(nn.Module):
    """Dec of Eq. 3: [audio ⊕ face] (B, 1024) → (B, 15, S/2, S) face window in [0, 1]."""

    def __init__(self, face_size: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.start = (8 * w, face_size // 32, face_size // 16)
        self.project = nn.Linear(2 * EMBEDDING_DIM, int(np.prod(self.start)))
        layers: list[nn.Module] = []
        for channels_in, channels_out in ((8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w), (w, w)):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(channels_in, channels_out, 3, 1, 1),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(),
            ]
        layers += [nn.Conv2d(w, 3 * SYNC_FRAMES, 3, 1, 1), nn.Sigmoid()]
        self.decode = nn.Sequential(*layers)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.decode(F.relu(self.project(fused)).reshape(-1, *self.start))


class AudioVisualSync(nn.Module):
    """Audio tower (SyncTalk's ``AudioEncoder``), face tower and reconstruction decoder trained together."""

    def __init__(self, face_size: int, face_width: int) -> None:
        super().__init__()
        self.audio = AudioEncoder()
        self.face = FaceEncoder(face_width)
        self.decoder = FaceDecoder(face_size, face_width)


# Data


@dataclass
class _PreparedClip:
    crops: torch.Tensor  # (N, 3, S/2, S) uint8
    mel: torch.Tensor  # (M, 80)
    train_starts: np.ndarray  # window starts t whose frames t..t+4 lie before the held-out part
    held_starts: np.ndarray  # window starts inside the held-out part


def _prepare(clip: AveClip, face_size: int, held_out_fraction: float) -> _PreparedClip:
    mel = wav2lip_mel(clip.audio)
    n_frames = len(clip.frames)
    starts = np.arange(max(0, n_frames - SYNC_FRAMES + 1))
    starts = starts[mel_start(starts) + MEL_WINDOW <= len(mel)]
    split = n_frames - round(n_frames * held_out_fraction)
    return _PreparedClip(
        crops=torch.from_numpy(lower_face_crops(clip.frames, clip.landmarks, face_size)),
        mel=torch.from_numpy(mel),
        train_starts=starts[starts + SYNC_FRAMES <= split],
        held_starts=starts[starts >= split],
    )


def _face_windows(clip: _PreparedClip, starts: np.ndarray) -> torch.Tensor:
    """(B, 15, S/2, S) float in [0, 1]: frames t..t+4 stacked along channels for each start t."""
    index = torch.as_tensor(starts).reshape(-1, 1) + torch.arange(SYNC_FRAMES)
    windows = clip.crops[index]  # (B, 5, 3, h, w)
    return windows.reshape(len(starts), 3 * SYNC_FRAMES, *windows.shape[-2:]).float() / 255.0


def _mel_windows(clip: _PreparedClip, starts: np.ndarray) -> torch.Tensor:
    """(B, 1, 80, 16) mel windows for face windows starting at ``starts``."""
    index = torch.as_tensor(mel_start(starts)).reshape(-1, 1) + torch.arange(MEL_WINDOW)
    return clip.mel[index].transpose(1, 2).unsqueeze(1)


def _shifted_partner(rng: np.random.Generator, starts: np.ndarray, t: int) -> int | None:
    far = starts[np.abs(starts - t) >= MIN_SHIFT]
    return int(rng.choice(far)) if len(far) else None


@dataclass
class _Batch:
    mel: torch.Tensor  # (B, 1, 80, 16)
    faces: torch.Tensor  # (B, 15, S/2, S)
    positive: torch.Tensor  # (B, B) bool: audio row i with face column j is a synchronised pair
    negative: torch.Tensor  # (B, B) bool: a shifted pair (same clip, ≥ MIN_SHIFT frames apart)


def _clip_weights(clips: list[_PreparedClip]) -> np.ndarray:
    weights = np.array([len(c.train_starts) for c in clips], dtype=np.float64)
    return weights / weights.sum()


def _sample_all_pairs(rng: np.random.Generator, clips: list[_PreparedClip], batch_size: int, group_size: int) -> _Batch:
    """Groups of ``group_size`` distinct windows of one clip each; every same-clip (audio, face) pair is scored.
    Drawn again in the rare case (tiny groups only) of no pair 5 frames apart, which would leave the loss undefined."""
    while True:
        mels, faces, starts, owners = [], [], [], []
        for _ in range(max(1, batch_size // group_size)):
            owner = int(rng.choice(len(clips), p=_clip_weights(clips)))
            clip = clips[owner]
            chosen = rng.choice(clip.train_starts, size=min(group_size, len(clip.train_starts)), replace=False)
            mels.append(_mel_windows(clip, chosen))
            faces.append(_face_windows(clip, chosen))
            starts.append(chosen)
            owners.append(np.full(len(chosen), owner))
        t, owner_of = np.concatenate(starts), np.concatenate(owners)
        negative = (owner_of[:, None] == owner_of[None, :]) & (np.abs(t[:, None] - t[None, :]) >= MIN_SHIFT)
        if negative.any():
            return _Batch(
                torch.cat(mels), torch.cat(faces), torch.eye(len(t), dtype=torch.bool), torch.from_numpy(negative)
            )


def _sample_pairs(rng: np.random.Generator, clips: list[_PreparedClip], batch_size: int) -> _Batch:
    """Wav2Lip's batches: the first half synchronised, the rest audio t with one face window shifted ≥ 5 frames."""
    mels, faces, synced = [], [], []
    while len(synced) < batch_size:
        clip = clips[rng.choice(len(clips), p=_clip_weights(clips))]
        t = int(rng.choice(clip.train_starts))
        is_synced = len(synced) < batch_size // 2
        face_start = t if is_synced else _shifted_partner(rng, clip.train_starts, t)
        if face_start is None:
            continue
        mels.append(_mel_windows(clip, np.array([t])))
        faces.append(_face_windows(clip, np.array([face_start])))
        synced.append(is_synced)
    diagonal = torch.eye(batch_size, dtype=torch.bool)  # only the pairs as drawn are scored
    synced_rows = torch.tensor(synced)[:, None]
    return _Batch(torch.cat(mels), torch.cat(faces), diagonal & synced_rows, diagonal & ~synced_rows)


def _sync_loss(audio: torch.Tensor, face: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """Binary cross-entropy of the cosine similarities, mean over synchronised pairs and over shifted pairs, halved."""
    similarity = (F.normalize(audio, dim=1) @ F.normalize(face, dim=1).T).clamp(1e-6, 1 - 1e-6)
    positive, negative = batch.positive.to(similarity.device), batch.negative.to(similarity.device)
    return -0.5 * (torch.log(similarity[positive]).mean() + torch.log1p(-similarity[negative]).mean())


@torch.no_grad()
def _held_out_scores(model: AudioVisualSync, clips: list[_PreparedClip], device: torch.device) -> dict[str, Any]:
    """Sync accuracy and balanced binary accuracy on the held-aside windows (definitions in the module docstring)."""
    return _sync_scores(model, [(clip, clip.held_starts) for clip in clips], device)


@torch.no_grad()
def _train_scores(model: AudioVisualSync, clips: list[_PreparedClip], device: torch.device) -> dict[str, Any]:
    """The held-out scores' definitions on every ``TRAIN_EVAL_STRIDE``-th training window: how well training fits."""
    return _sync_scores(model, [(clip, clip.train_starts[::TRAIN_EVAL_STRIDE]) for clip in clips], device)


@torch.no_grad()
def _sync_scores(
    model: AudioVisualSync, windows: list[tuple[_PreparedClip, np.ndarray]], device: torch.device
) -> dict[str, Any]:
    """Every window start paired with every start of its clip ≥ MIN_SHIFT frames away (module docstring); also the
    sync accuracy of each clip alone (None where it has no such pair), so one clip's share of a pool can be read."""
    model.eval()
    wins, pairs, per_clip, synced_sims, shifted_sims = 0, 0, [], [], []
    for clip, starts in windows:
        if len(starts) == 0:
            per_clip.append(None)
            continue
        audio = F.normalize(model.audio(_mel_windows(clip, starts).to(device)), dim=1)
        face = F.normalize(model.face(_face_windows(clip, starts).to(device)), dim=1)
        similarity = (audio @ face.T).cpu().numpy()  # [audio window, face window]
        shifted = np.abs(starts[:, None] - starts[None, :]) >= MIN_SHIFT
        synced = np.diag(similarity)
        clip_wins, clip_pairs = int((synced[:, None] > similarity)[shifted].sum()), int(shifted.sum())
        per_clip.append(clip_wins / clip_pairs if clip_pairs else None)
        wins += clip_wins
        pairs += clip_pairs
        synced_sims.append(synced)
        shifted_sims.append(similarity[shifted])
    model.train()
    synced_all, shifted_all = np.concatenate(synced_sims), np.concatenate(shifted_sims)
    if not pairs:  # windows too few or too close (a short clip's training subsample): nothing to score
        return {"sync_accuracy": None, "pairs": 0, "windows": len(synced_all), "per_clip_sync_accuracy": per_clip}
    return {
        "sync_accuracy": wins / pairs,
        "binary_accuracy": 0.5 * (float((synced_all > 0.5).mean()) + float((shifted_all <= 0.5).mean())),
        "mean_similarity_synced": float(synced_all.mean()),
        "mean_similarity_shifted": float(shifted_all.mean()),
        "pairs": pairs,
        "windows": len(synced_all),
        "per_clip_sync_accuracy": per_clip,
    }


# Training


def train_ave(
    clips: list[AveClip],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    held_out_fraction: float = 0.1,
    face_size: int = 64,
    face_width: int = 16,
    recon_weight: float = 1.0,
    negatives: Literal["sampled", "all"] = "sampled",
    group_size: int = 16,
    eval_every: int = 0,
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the audio-visual encoder on ``clips``; returns its state dict in the released layout and a report.

    The state dict is what ``audio_visual_encoder.pth`` holds (keys ``0.conv_block.0.weight`` ..., no prefix;
    ``audio.load_ave`` loads it). The report has the per-step losses, the held-aside sync accuracy before and after
    training, the train accuracy after it and, with ``eval_every`` > 0, both accuracies every that many steps.
    Deterministic for a seed on a given device (cuDNN pinned to deterministic kernels).

    Measured on cnn (one minute; benchmarks/ave_accuracy.py): Wav2Lip's sampled pairs at lr 1e-4 reach held-out
    sync accuracy 0.77-0.83 from step 750 to 2000 with the 64-px crops and width-16 tower (1/4.5 of the compute per
    step of Wav2Lip's 96 px and width 32, which gave 0.72-0.77 at steps 200-500); all same-clip pairs at lr 1e-3 get
    0.70 from step 100 on but level off at 0.70-0.78; sampled pairs at lr 1e-3 do not learn (0.54-0.64). Every
    setting fits the training windows (train accuracy > 0.93) far better than the held-out ones: the footage is the
    limit.
    """
    from tqdm import tqdm

    if face_size % 32 or face_size < 32:
        raise BenchError(f"train_ave: face_size must be a multiple of 32 (got {face_size})")
    if not 0.0 < held_out_fraction < 1.0:
        raise BenchError(f"train_ave: held_out_fraction must lie in (0, 1), got {held_out_fraction}")
    if batch_size < 2:
        raise BenchError(
            f"train_ave: batch_size must be at least 2 (one synced and one shifted pair), got {batch_size}"
        )
    if negatives not in NEGATIVES:
        raise BenchError(f"train_ave: negatives must be one of {', '.join(NEGATIVES)}, got {negatives!r}")
    if group_size < 2:
        raise BenchError(f"train_ave: group_size must be at least 2 (windows drawn from one clip), got {group_size}")
    device = torch.device(device)
    prepared = [_prepare(clip, face_size, held_out_fraction) for clip in clips]
    trainable = [clip for clip in prepared if len(clip.train_starts) > MIN_SHIFT]
    if not trainable:
        raise BenchError("train_ave: no clip has enough frames before its held-out part for shifted pairs (> 10)")
    if not any((np.abs(c.held_starts[:, None] - c.held_starts[None, :]) >= MIN_SHIFT).any() for c in prepared):
        raise BenchError(
            "train_ave: the held-out part of every clip is too short for a shifted pair; "
            "use longer clips or a larger held_out_fraction (it needs 10 frames or more)"
        )

    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AudioVisualSync(face_size, face_width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: dict[str, list[float]] = {"loss": [], "sync_loss": [], "recon_loss": []}
    curve: list[dict[str, float]] = []
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
        before = _held_out_scores(model, prepared, device)
        model.train()
        for step in tqdm(range(1, steps + 1), desc="train AVE", disable=not progress, unit="step"):
            if negatives == "all":
                batch = _sample_all_pairs(rng, trainable, batch_size, min(group_size, batch_size))
            else:
                batch = _sample_pairs(rng, trainable, batch_size)
            faces = batch.faces.to(device)
            audio_embedding, face_embedding = model.audio(batch.mel.to(device)), model.face(faces)
            sync_loss = _sync_loss(audio_embedding, face_embedding, batch)
            synced = batch.positive.diagonal().to(device)
            fused = torch.cat([audio_embedding[synced], face_embedding[synced]], dim=1)
            recon_loss = F.l1_loss(model.decoder(fused), faces[synced])
            loss = sync_loss + recon_weight * recon_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            for name, value in (("loss", loss), ("sync_loss", sync_loss), ("recon_loss", recon_loss)):
                losses[name].append(value.item())
            if eval_every and step % eval_every == 0:
                curve.append({
                    "step": step,
                    "train_sync_accuracy": _train_scores(model, prepared, device)["sync_accuracy"],
                    "held_out_sync_accuracy": _held_out_scores(model, prepared, device)["sync_accuracy"],
                })  # fmt: skip
        after = _held_out_scores(model, prepared, device)
        train = _train_scores(model, prepared, device)
    report = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "device": str(device),
        "face_size": face_size,
        "face_width": face_width,
        "recon_weight": recon_weight,
        "negatives": negatives,
        "group_size": group_size,
        "held_out_fraction": held_out_fraction,
        "train_windows": int(sum(len(c.train_starts) for c in prepared)),
        "losses": losses,
        "before": before,
        "after": after,
        "train": train,
        "curve": curve,
        "seconds": time.perf_counter() - started,
    }
    return model.audio.released_state_dict(), report
