"""SyncTalk's audio path (Face-Sync Controller): mel windows, the audio-visual encoder, feature heads, attention.

What SyncTalk (``ZiqiaoPeng/SyncTalk`` @ d2427a3, ``nerf_triplane/{network,provider,utils}.py``) does, and this
module reproduces:

- Wav2Lip's mel spectrogram of 16 kHz audio: pre-emphasis 0.97, STFT n_fft 800 / hop 200 / win 800 (Hann, centred,
  zero padding: librosa >= 0.10's default, which SyncTalk's unpinned librosa uses), 80 Slaney mel bands 55-7600 Hz,
  20·log10(max(1e-5, ·)) − 20 dB, mapped from [−100, 0] dB to [−4, 4] and clipped. 80 mel frames per second.
- One 80×16 window (0.2 s) per video frame, as SyncTalk's ``AudDataset``: encoder output k uses the window starting
  at mel frame int(80·k/25) (moved back to end at the last mel frame), there are int((M − 16)/80·25) + 2 outputs for
  M mel frames, and two copies of the first and of the last output are added at each end. Frame i therefore uses
  output clamp(i − 2): the 0.2 s starting at (i − 2)/25 s, which spans frames i−2..i+2 (the Wav2Lip SyncNet
  alignment of one audio window to a 5-frame face window). Frames past the end reuse the last output.
- ``AudioEncoder``: Wav2Lip SyncNet's audio tower as SyncTalk ships it (13 conv blocks: one residual block fewer
  than Wav2Lip in the 256-channel stage), 512-d per window. The released ``audio_visual_encoder.pth`` holds the
  tower's ``nn.Sequential`` state dict *without* a prefix (``0.conv_block.0.weight`` ...); SyncTalk loads it by
  prefixing ``audio_encoder.``, strictly.
- ``AudioNetAVE`` (512→256→128→32), ``AudioNet`` (DeepSpeech / HuBERT / Whisper features), ``AudioAttNet`` over the 8-frame
  window [i−4, i+4) zero-padded at the ends. Module attribute names follow SyncTalk's so its state dicts map 1:1.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.contracts import BenchError

SAMPLE_RATE = 16000
FPS = 25
MEL_BANDS = 80
MEL_FRAMES_PER_SECOND = 80  # SAMPLE_RATE / hop 200
MEL_WINDOW = 16  # mel frames per encoder window: 0.2 s, five video frames
EDGE_COPIES = 2  # copies of the first and last encoder output that SyncTalk adds at each end
ATTENTION_WINDOW = 8  # frames [i-4, i+4) fed to AudioAttNet
AVE_DIM = 512
AUDIO_DIM = 32  # per-frame audio code fed to the NeRF (SyncTalk's audio_dim)
DEEPSPEECH_SHAPE = (16, 29)  # aud_ds.npy: (N, 16, 29)
HUBERT_SHAPE = (2, 1024)  # aud_hu.npy: (N, 2, 1024)
WHISPER_SHAPE = (2, 384)  # Whisper tiny.en: two encoder features per video frame (whisper.py)
AVE_PREFIX = "audio_encoder."


# Mel spectrogram and per-frame windows


def wav2lip_mel(samples: np.ndarray) -> np.ndarray:
    """(M, 80) float32 Wav2Lip mel spectrogram in [−4, 4] of 16 kHz mono samples; M = 1 + len // 200."""
    import librosa
    from scipy.signal import lfilter

    emphasised = lfilter([1.0, -0.97], [1.0], np.asarray(samples, dtype=np.float64))
    spectrum = np.abs(librosa.stft(emphasised, n_fft=800, hop_length=200, win_length=800, pad_mode="constant"))
    mel_basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=800, n_mels=MEL_BANDS, fmin=55, fmax=7600)
    decibels = 20.0 * np.log10(np.maximum(1e-5, mel_basis @ spectrum)) - 20.0
    normalised = np.clip(8.0 * ((decibels + 100.0) / 100.0) - 4.0, -4.0, 4.0)
    return normalised.T.astype(np.float32)


def mel_start(frame: np.ndarray | int) -> np.ndarray:
    """Mel index at video frame ``frame``'s start time: int(80·k/25) (the integer form equals the float one)."""
    return np.asarray(frame, dtype=np.int64) * MEL_FRAMES_PER_SECOND // FPS


def ave_window_starts(n_mel_frames: int, n_frames: int) -> np.ndarray:
    """Mel index where each video frame's 16-frame window starts, exactly as SyncTalk's AVE dataset aligns them."""
    if n_mel_frames < MEL_WINDOW:
        raise BenchError(
            f"audio gives {n_mel_frames} mel frames, fewer than one {MEL_WINDOW}-frame (0.2 s) window: "
            "drive with at least 0.2 s of audio"
        )
    n_outputs = int((n_mel_frames - MEL_WINDOW) / 80.0 * float(FPS)) + 2
    output = np.clip(np.arange(n_frames) - EDGE_COPIES, 0, n_outputs - 1)
    return np.minimum(mel_start(output), n_mel_frames - MEL_WINDOW)


def mel_windows(mel: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """(len(starts), 1, 80, 16) float32 encoder inputs: the mel frames [s, s+16) for each start s, band-major."""
    index = np.asarray(starts)[:, None] + np.arange(MEL_WINDOW)[None, :]
    return np.ascontiguousarray(mel[index].transpose(0, 2, 1)[:, None]).astype(np.float32)


def frame_mel_windows(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """(n_frames, 1, 80, 16) mel windows of 16 kHz mono audio for a 25 fps video, aligned as SyncTalk does."""
    mel = wav2lip_mel(samples)
    return mel_windows(mel, ave_window_starts(len(mel), n_frames))


# Audio-visual encoder (Wav2Lip SyncNet audio tower)


class ConvBlock(nn.Module):
    """Conv2d + BatchNorm + ReLU, optionally residual: the block of Wav2Lip's and SyncTalk's ``Conv2d``."""

    def __init__(
        self,
        channels_in: int,
        channels_out: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, kernel_size, stride, padding), nn.BatchNorm2d(channels_out)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


def _ave_tower() -> nn.Sequential:
    """The 13 blocks of SyncTalk's AudioEncoder: (1, 80, 16) → (512, 1, 1)."""
    return nn.Sequential(
        ConvBlock(1, 32, 3, 1, 1),
        ConvBlock(32, 32, 3, 1, 1, residual=True),
        ConvBlock(32, 32, 3, 1, 1, residual=True),
        ConvBlock(32, 64, 3, (3, 1), 1),
        ConvBlock(64, 64, 3, 1, 1, residual=True),
        ConvBlock(64, 64, 3, 1, 1, residual=True),
        ConvBlock(64, 128, 3, 3, 1),
        ConvBlock(128, 128, 3, 1, 1, residual=True),
        ConvBlock(128, 128, 3, 1, 1, residual=True),
        ConvBlock(128, 256, 3, (3, 2), 1),
        ConvBlock(256, 256, 3, 1, 1, residual=True),
        ConvBlock(256, 512, 3, 1, 0),
        ConvBlock(512, 512, 1, 1, 0),
    )


class AudioEncoder(nn.Module):
    """SyncTalk's audio-visual encoder: (B, 1, 80, 16) mel windows → (B, 512), non-negative (ends in ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = _ave_tower()

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder(mel).flatten(1)

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict in the layout of the released ``audio_visual_encoder.pth``: the tower's keys, no prefix."""
        return {key: value.detach().cpu().clone() for key, value in self.audio_encoder.state_dict().items()}


def load_ave(path: Path | str, device: str | torch.device = "cpu") -> AudioEncoder:
    """``AudioEncoder`` in eval mode with the weights of an ``audio_visual_encoder.pth`` (released layout).

    The released file's keys have no prefix; SyncTalk adds ``audio_encoder.`` and loads strictly, as here. A
    state dict saved from the whole module (keys already prefixed) loads the same way.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(
            f"{path}: no audio-visual encoder checkpoint there; get audio_visual_encoder.pth from "
            "github.com/ZiqiaoPeng/SyncTalk (nerf_triplane/checkpoints/) or train one with bench's train_ave"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise BenchError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    prefixed = {key if key.startswith(AVE_PREFIX) else AVE_PREFIX + key: value for key, value in state.items()}
    encoder = AudioEncoder()
    try:
        encoder.load_state_dict(prefixed, strict=True)
    except RuntimeError as error:
        summary = str(error).splitlines()[1].strip() if "\n" in str(error) else str(error)
        raise BenchError(f"{path}: not SyncTalk's audio-visual encoder ({summary[:200]})") from error
    return encoder.to(device).eval()


@torch.no_grad()
def encode_frames(
    encoder: nn.Module, samples: np.ndarray, n_frames: int, device: str | torch.device = "cpu", batch_size: int = 64
) -> np.ndarray:
    """(n_frames, D) per-frame audio features of 16 kHz mono audio from a window encoder (``AudioEncoder``)."""
    windows = torch.from_numpy(frame_mel_windows(samples, n_frames))
    encoder.eval()
    outputs = [encoder(windows[i : i + batch_size].to(device)).cpu() for i in range(0, len(windows), batch_size)]
    return torch.cat(outputs).numpy()


# Feature heads and temporal attention


class AudioNetAVE(nn.Module):
    """SyncTalk's ``AudioNet_ave``: MLP 512 → 256 → 128 → 32 with LeakyReLU 0.02, on (..., 512)."""

    def __init__(self, dim_in: int = AVE_DIM, dim_aud: int = AUDIO_DIM) -> None:
        super().__init__()
        self.encoder_fc1 = nn.Sequential(
            nn.Linear(dim_in, 256),
            nn.LeakyReLU(0.02, True),
            nn.Linear(256, 128),
            nn.LeakyReLU(0.02, True),
            nn.Linear(128, dim_aud),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.encoder_fc1(features)


class AudioNet(nn.Module):
    """SyncTalk's ``AudioNet`` for DeepSpeech (29 × 16 steps) or HuBERT (1024 × 2 steps) features: (B, C, T) → (B, 32).

    Four Conv1d (kernel 3, stride 2, padding 1: C → 32 → 32 → 64 → 64) with LeakyReLU 0.02 bring the first 16 (or
    fewer) steps to one; then FC 64 → 64 → 32.
    """

    def __init__(self, dim_in: int = DEEPSPEECH_SHAPE[1], dim_aud: int = AUDIO_DIM) -> None:
        super().__init__()
        self.encoder_conv = nn.Sequential(
            nn.Conv1d(dim_in, 32, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
            nn.Conv1d(32, 32, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
            nn.Conv1d(32, 64, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
            nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1),
            nn.LeakyReLU(0.02, True),
        )
        self.encoder_fc1 = nn.Sequential(nn.Linear(64, 64), nn.LeakyReLU(0.02, True), nn.Linear(64, dim_aud))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = self.encoder_conv(features[:, :, :16])  # SyncTalk keeps steps [0, 16)
        return self.encoder_fc1(pooled.squeeze(-1))


class MelEncoder(nn.Module):
    """Plain alternative to the AVE: a small conv net over the (1, 80, 16) mel window → (B, 32), no pretraining.

    Trained end to end with the NeRF. No batch norm: the NeRF sees one 8-frame window per step.
    """

    def __init__(self, dim_aud: int = AUDIO_DIM) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=(2, 1), padding=1),  # 40 × 16
            nn.LeakyReLU(0.02, True),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),  # 20 × 8
            nn.LeakyReLU(0.02, True),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),  # 10 × 4
            nn.LeakyReLU(0.02, True),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),  # 5 × 2
            nn.LeakyReLU(0.02, True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(128, 64), nn.LeakyReLU(0.02, True), nn.Linear(64, dim_aud))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(mel))


class AudioAttNet(nn.Module):
    """SyncTalk's temporal attention: (B, 8, D) per-frame codes → (B, D) softmax-weighted sum over the 8 frames.

    Conv1d D → 16 → 8 → 4 → 2 → 1 (kernel 3, padding 1, LeakyReLU 0.02 after each) scores every frame, then
    Linear 8 → 8 and a softmax over the window give the weights.
    """

    def __init__(self, dim_aud: int = AUDIO_DIM, seq_len: int = ATTENTION_WINDOW) -> None:
        super().__init__()
        self.seq_len = seq_len
        channels = [dim_aud, 16, 8, 4, 2, 1]
        layers: list[nn.Module] = []
        for channels_in, channels_out in itertools.pairwise(channels):
            layers += [
                nn.Conv1d(channels_in, channels_out, kernel_size=3, stride=1, padding=1),
                nn.LeakyReLU(0.02, True),
            ]
        self.attentionConvNet = nn.Sequential(*layers)
        self.attentionNet = nn.Sequential(nn.Linear(seq_len, seq_len), nn.Softmax(dim=1))

    def weights(self, window: torch.Tensor) -> torch.Tensor:
        """(B, 8) attention weights, summing to 1 over the window."""
        scores = self.attentionConvNet(window.permute(0, 2, 1))  # (B, 1, 8)
        return self.attentionNet(scores.reshape(-1, self.seq_len))

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return (self.weights(window).unsqueeze(-1) * window).sum(dim=1)


def context_windows(features: torch.Tensor, indices: torch.Tensor | list[int]) -> torch.Tensor:
    """(len(indices), 8, ...) rows [i−4, i+4) of per-frame ``features`` (N, ...), zeros outside [0, N)."""
    half = ATTENTION_WINDOW // 2
    padding = features.new_zeros((half, *features.shape[1:]))
    padded = torch.cat([padding, features, padding])
    index = torch.as_tensor(indices, device=features.device).reshape(-1, 1) + torch.arange(
        ATTENTION_WINDOW, device=features.device
    )
    return padded[index]


def per_frame(features: np.ndarray, n_frames: int) -> np.ndarray:
    """One feature row per video frame: row min(i, N−1), as SyncTalk indexes precomputed features."""
    if len(features) == 0:
        raise BenchError("audio features are empty: recompute them from the subject's audio")
    return features[np.minimum(np.arange(n_frames), len(features) - 1)]


# Precomputed DeepSpeech / HuBERT features


def _load_features(path: Path, shape: tuple[int, int], how: str) -> np.ndarray:
    if not path.is_file():
        raise BenchError(f"{path}: not found; {how}")
    features = np.load(path)
    if features.ndim != 3 or features.shape[1:] != shape:
        raise BenchError(f"{path}: shape {features.shape}, expected (N, {shape[0]}, {shape[1]}); {how}")
    return np.ascontiguousarray(features.astype(np.float32).transpose(0, 2, 1))


def load_deepspeech_features(path: Path | str) -> np.ndarray:
    """(N, 29, 16) AudioNet input from SyncTalk's ``aud_ds.npy`` (N, 16, 29): DeepSpeech logits, 16 steps per frame."""
    return _load_features(
        Path(path),
        DEEPSPEECH_SHAPE,
        "precompute it with SyncTalk's data_utils/deepspeech_features/extract_ds_features.py --input aud.wav "
        "(TensorFlow, DeepSpeech 0.1.0 graph); bench does not run DeepSpeech",
    )


def load_hubert_features(path: Path | str) -> np.ndarray:
    """(N, 1024, 2) AudioNet input from SyncTalk's ``aud_hu.npy`` (N, 2, 1024): HuBERT-large states, 2 per frame."""
    return _load_features(
        Path(path),
        HUBERT_SHAPE,
        "precompute it with SyncTalk's data_utils/hubert.py --wav aud.wav (needs the transformers package and the "
        "facebook/hubert-large-ls960-ft weights, neither of which bench installs)",
    )
