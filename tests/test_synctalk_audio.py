"""SyncTalk's audio path: Wav2Lip mel, per-frame window alignment, the AVE audio tower and its trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.contracts import BenchError
from bench.methods.engine import audio
from bench.methods.engine.ave import (
    AveClip,
    _Batch,
    _PreparedClip,
    _sample_all_pairs,
    _sample_pairs,
    _sync_loss,
    lower_face_crops,
    train_ave,
)
from bench.methods.engine.model import audio_net_for

RATE = 16000


def slaney_mel_bank(n_fft: int = 800, n_mels: int = 80, fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    """Slaney-scale, area-normalised triangular filters, written from the formula (no librosa)."""

    def to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz < 1000, hz * 3 / 200, 15 + np.log(np.maximum(hz, 1e-9) / 1000) / (np.log(6.4) / 27))

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel < 15, mel * 200 / 3, 1000 * np.exp((mel - 15) * np.log(6.4) / 27))

    edges = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    bins = np.linspace(0, RATE / 2, n_fft // 2 + 1)
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    return np.maximum(0, np.minimum(rising, falling)) * (2 / (edges[2:] - edges[:-2]))[:, None]


def numpy_wav2lip_mel(samples: np.ndarray) -> np.ndarray:
    """Wav2Lip's mel from its formula: numpy pre-emphasis, framing, periodic Hann and rfft."""
    emphasised = np.concatenate([samples[:1], samples[1:] - 0.97 * samples[:-1]]).astype(np.float64)
    padded = np.pad(emphasised, 400)  # centred frames, zero padding
    n_frames = 1 + len(emphasised) // 200
    frames = np.stack([padded[200 * m : 200 * m + 800] for m in range(n_frames)])
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)
    magnitude = np.abs(np.fft.rfft(frames * hann, axis=1))
    decibels = 20 * np.log10(np.maximum(1e-5, magnitude @ slaney_mel_bank().T)) - 20
    return np.clip(8 * (decibels + 100) / 100 - 4, -4, 4)


def test_mel_matches_numpy_formula():
    rng = np.random.default_rng(0)
    time = np.arange(int(1.3 * RATE)) / RATE
    samples = (0.3 * np.sin(2 * np.pi * 220 * time) * (time > 0.4) + 0.05 * rng.standard_normal(len(time))).astype(
        np.float32
    )
    mel = audio.wav2lip_mel(samples)
    assert mel.shape == (1 + len(samples) // 200, 80) and mel.dtype == np.float32
    expected = numpy_wav2lip_mel(samples)
    assert np.abs(mel - expected).max() < 2e-3
    assert mel.min() >= -4 and mel.max() <= 4 and mel.std() > 0.5  # a real spectrogram, not a clipped constant


def test_window_starts_follow_synctalk_rule():
    # 2 s of audio: 161 mel frames, int((161 - 16) / 80 * 25) + 2 = 47 encoder outputs, two copies added at each end
    starts = audio.ave_window_starts(161, 52)
    assert starts[:8].tolist() == [0, 0, 0, 3, 6, 9, 12, 16]  # frames 0-2 use output 0; then int(80 (i - 2) / 25)
    assert starts[46:].tolist() == [140, 144, 145, 145, 145, 145]  # output 46 starts at 147, moved back to 161 - 16
    with pytest.raises(BenchError, match="0.2 s"):
        audio.ave_window_starts(15, 10)


def test_click_train_lands_in_the_expected_window_column():
    """Clicks at known times appear where frame i's window (starting (i − 2)/25 s) should hold them."""
    click_mel_frames = np.arange(20, 300, 23)  # one click every 0.2875 s, on mel frame centres
    samples = np.zeros(4 * RATE, dtype=np.float32)
    samples[click_mel_frames * 200] = 0.9
    n_frames = 100
    windows = audio.frame_mel_windows(samples, n_frames)
    assert windows.shape == (n_frames, 1, 80, 16)
    loudness = windows[:, 0].mean(axis=1)  # (frames, 16 columns)
    checked = 0
    for frame in range(3, n_frames - 4):
        window_start_seconds = (frame - 2) / 25
        for click in click_mel_frames:
            column = click - int(np.floor(window_start_seconds * 80 + 1e-9))
            if 2 <= column <= 13:
                assert np.argmax(loudness[frame]) == column, (frame, click)
                checked += 1
    assert checked >= 40


def test_audio_encoder_loads_released_layout(tmp_path):
    torch.manual_seed(0)
    encoder = audio.AudioEncoder()
    for module in encoder.modules():  # non-trivial batch-norm statistics, so a load that skipped them would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    released = encoder.released_state_dict()
    # the layout of SyncTalk's audio_visual_encoder.pth: the Sequential's keys, 13 conv blocks, no prefix
    assert not any(key.startswith("audio_encoder.") for key in released)
    assert released["0.conv_block.0.weight"].shape == (32, 1, 3, 3)
    assert released["3.conv_block.0.weight"].shape == (64, 32, 3, 3)
    assert released["9.conv_block.0.weight"].shape == (256, 128, 3, 3)
    assert released["11.conv_block.0.weight"].shape == (512, 256, 3, 3)
    assert released["12.conv_block.0.weight"].shape == (512, 512, 1, 1)
    assert released["12.conv_block.1.running_var"].shape == (512,)
    assert "13.conv_block.0.weight" not in released and "10.conv_block.0.weight" in released
    assert sum(p.numel() for p in encoder.parameters()) == 2_812_672
    path = tmp_path / "audio_visual_encoder.pth"
    torch.save(released, path)

    loaded = audio.load_ave(path)
    mel = torch.randn(6, 1, 80, 16)
    with torch.no_grad():
        out = loaded(mel)
        assert out.shape == (6, 512)
        assert torch.allclose(out, encoder.eval()(mel))
    synctalk_way = audio.AudioEncoder()  # SyncTalk: load_state_dict({f'audio_encoder.{k}': v ...}), strict
    synctalk_way.load_state_dict({f"audio_encoder.{k}": v for k, v in torch.load(path).items()}, strict=True)

    features = audio.encode_frames(loaded, np.random.default_rng(0).standard_normal(RATE).astype(np.float32) * 0.1, 30)
    assert features.shape == (30, 512) and (features >= 0).all()

    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(BenchError, match="not SyncTalk's audio-visual encoder"):
        audio.load_ave(tmp_path / "other.pth")
    with pytest.raises(BenchError, match="audio_visual_encoder.pth"):
        audio.load_ave(tmp_path / "missing.pth")


def test_feature_heads_and_attention_shapes():
    torch.manual_seed(0)
    assert audio.AudioNetAVE()(torch.randn(5, 8, 512)).shape == (5, 8, 32)
    # every encoder the adapter can build, on one 8-frame window of its per-frame input
    for kind, frame_shape in (("ave", (512,)), ("mel", (1, 80, 16)), ("deepspeech", (29, 16)), ("hubert", (1024, 2))):
        assert audio_net_for(kind)(torch.randn(8, *frame_shape)).shape == (8, 32), kind

    attention = audio.AudioAttNet()
    window = torch.randn(3, 8, 32)
    weights = attention.weights(window)
    assert weights.shape == (3, 8) and torch.allclose(weights.sum(dim=1), torch.ones(3))
    assert torch.allclose(attention(window), torch.einsum("bt,btd->bd", weights, window), atol=1e-6)
    assert [m.out_channels for m in attention.attentionConvNet if isinstance(m, torch.nn.Conv1d)] == [16, 8, 4, 2, 1]


def test_context_windows_pad_with_zeros_at_the_ends():
    features = torch.arange(1, 11, dtype=torch.float32).reshape(10, 1) * torch.ones(10, 3)  # row i holds i + 1
    windows = audio.context_windows(features, [0, 5, 9])
    assert windows.shape == (3, 8, 3)
    assert windows[0, :, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]  # frames [-4, 4)
    assert windows[1, :, 0].tolist() == [2, 3, 4, 5, 6, 7, 8, 9]  # frames [1, 9)
    assert windows[2, :, 0].tolist() == [6, 7, 8, 9, 10, 0, 0, 0]  # frames [5, 13)
    assert audio.per_frame(np.arange(4), 6).tolist() == [0, 1, 2, 3, 3, 3]


def test_precomputed_feature_loaders(tmp_path):
    deepspeech = np.random.default_rng(0).standard_normal((7, 16, 29)).astype(np.float32)
    np.save(tmp_path / "aud_ds.npy", deepspeech)
    loaded = audio.load_deepspeech_features(tmp_path / "aud_ds.npy")
    assert loaded.shape == (7, 29, 16) and np.array_equal(loaded[3], deepspeech[3].T)
    np.save(tmp_path / "aud_hu.npy", np.zeros((7, 2, 1024), dtype=np.float32))
    assert audio.load_hubert_features(tmp_path / "aud_hu.npy").shape == (7, 1024, 2)
    with pytest.raises(BenchError, match="expected \\(N, 16, 29\\)"):
        audio.load_deepspeech_features(tmp_path / "aud_hu.npy")
    with pytest.raises(BenchError, match="data_utils/hubert.py"):
        audio.load_hubert_features(tmp_path / "missing_hu.npy")


def test_lower_face_crop_keeps_the_lower_half_of_the_landmark_square():
    frames = np.zeros((3, 100, 100, 3), dtype=np.uint8)
    frames[:, :50] = (0, 0, 255)  # above the landmarks' centre: blue
    frames[:, 50:] = (255, 0, 0)  # below: red
    frames[:, :, :17] = (0, 255, 0)  # left of the square (x < 17): green
    landmarks = np.tile(np.array([[30.0, 20.0], [70.0, 80.0]]), (3, 34, 1))  # box 40 × 60, centre (50, 50)
    landmarks[1] = np.nan  # a frame without a face takes its neighbour's box
    crops = lower_face_crops(frames, landmarks, face_size=32)  # square side 66: x 17..83, lower half y 50..83
    assert crops.shape == (3, 3, 16, 32)
    assert (crops[:, 0] == 255).all() and (crops[:, 1:] == 0).all()


def synthetic_clip(seed: int, n_frames: int = 250, size: int = 64) -> AveClip:
    """A face whose mouth rectangle opens with the loudness of random noise bursts: sync is learnable."""
    rng = np.random.default_rng(seed)
    n_samples = n_frames * RATE // 25
    gain = np.zeros(n_samples, dtype=np.float32)
    position = 0
    while position < n_samples:
        length = int(rng.uniform(0.08, 0.3) * RATE)
        if rng.random() < 0.5:
            gain[position : position + length] = rng.uniform(0.3, 1.0)
        position += length
    samples = rng.standard_normal(n_samples).astype(np.float32) * 0.3 * gain
    opening = np.round(gain.reshape(n_frames, -1).mean(axis=1) * 8).astype(int)
    frames = np.full((n_frames, size, size, 3), 120, dtype=np.uint8)
    frames[:, 8:56, 12:52] = (200, 170, 150)
    for index, half_height in enumerate(opening):
        frames[index, 42 - half_height : 43 + half_height, 24:40] = (60, 20, 20)
    points = rng.uniform([12, 8], [52, 56], size=(68, 2))
    points[:2] = [(12, 8), (52, 56)]  # the landmark box is the face rectangle
    return AveClip(frames, np.repeat(points[None], n_frames, axis=0).astype(np.float32), samples)


def test_train_ave_learns_sync_on_synthetic_mouth(tmp_path, single_torch_thread):
    """Two 10 s clips, 100 steps of 16 windows, all same-clip pairs (~5 s on one thread): held-aside sync accuracy
    from chance to ≥ 0.7."""
    clips = [synthetic_clip(seed) for seed in range(2)]
    state, report = train_ave(
        clips, steps=100, batch_size=16, lr=2e-3, seed=0, device="cpu", progress=False, face_size=32, face_width=8,
        negatives="all", group_size=8, eval_every=50,
    )  # fmt: skip
    before, after = report["before"], report["after"]
    assert before["windows"] == 42 and before["pairs"] == 544  # 21 held-aside windows per clip (frames 225-249)
    assert before["sync_accuracy"] < 0.6
    assert after["sync_accuracy"] >= 0.7 and after["sync_accuracy"] - before["sync_accuracy"] >= 0.2
    assert after["mean_similarity_synced"] > after["mean_similarity_shifted"]
    assert report["train"]["windows"] == 2 * 25  # every 9th of the 221 training windows per clip
    assert [row["step"] for row in report["curve"]] == [50, 100]
    assert report["curve"][-1]["held_out_sync_accuracy"] == after["sync_accuracy"]
    losses = report["losses"]
    assert len(losses["loss"]) == 100 and np.mean(losses["sync_loss"][-20:]) < np.mean(losses["sync_loss"][:20])

    torch.save(state, tmp_path / "audio_visual_encoder.pth")
    assert audio.load_ave(tmp_path / "audio_visual_encoder.pth")(torch.zeros(2, 1, 80, 16)).shape == (2, 512)


def toy_prepared(n_frames: int, train_until: int, offset: int) -> _PreparedClip:
    """Crops whose pixels hold offset + their frame index: a batch's windows can be read back."""
    values = torch.arange(offset, offset + n_frames, dtype=torch.uint8)
    crops = values.reshape(-1, 1, 1, 1).expand(n_frames, 3, 2, 4).contiguous()
    mel = torch.arange(4 * n_frames, dtype=torch.float32).reshape(-1, 1).expand(-1, 80).contiguous()  # row m holds m
    starts = np.arange(n_frames - 4)
    return _PreparedClip(crops, mel, starts[starts + 5 <= train_until], starts[starts >= train_until])


def test_all_pairs_batches_score_same_clip_pairs_five_frames_apart():
    clips = [toy_prepared(60, 50, offset=0), toy_prepared(30, 25, offset=100)]
    batch = _sample_all_pairs(np.random.default_rng(0), clips, batch_size=12, group_size=6)
    assert batch.mel.shape == (12, 1, 80, 16) and batch.faces.shape == (12, 15, 2, 4)
    values = (batch.faces[:, 0, 0, 0] * 255).round().long()  # the first frame of each window
    owner, starts = values // 100, values % 100
    assert (batch.mel[:, 0, 0, 0] == torch.from_numpy(audio.mel_start(starts.numpy())).float()).all()  # audio t, face t
    assert torch.equal(batch.positive, torch.eye(12, dtype=torch.bool))
    assert all(len(set(values[group].tolist())) == 6 for group in (slice(0, 6), slice(6, 12)))  # distinct in a group
    assert all(len(set(owner[group].tolist())) == 1 for group in (slice(0, 6), slice(6, 12)))  # one clip per group
    expected = (owner[:, None] == owner[None, :]) & ((starts[:, None] - starts[None, :]).abs() >= 5)
    assert torch.equal(batch.negative, expected) and batch.negative.sum() > 20

    sampled = _sample_pairs(np.random.default_rng(0), clips, batch_size=8)
    assert sampled.positive.diagonal()[:4].all() and sampled.negative.diagonal()[4:].all()
    assert (sampled.positive | sampled.negative).sum() == 8  # only the pairs as drawn are scored


def test_sync_loss_is_balanced_binary_cross_entropy():
    audio_embedding = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    face_embedding = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # similarities [[0.707, 0], [0.707, 1]]
    positive = torch.eye(2, dtype=torch.bool)
    negative = torch.tensor([[False, True], [True, False]])
    batch = _Batch(torch.zeros(2, 1, 80, 16), torch.zeros(2, 15, 2, 4), positive, negative)
    similarity = np.array([[2**-0.5, 0.0], [2**-0.5, 1.0]]).clip(1e-6, 1 - 1e-6)
    expected = -0.5 * (np.log(similarity[[0, 1], [0, 1]]).mean() + np.log(1 - similarity[[0, 1], [1, 0]]).mean())
    assert abs(_sync_loss(audio_embedding, face_embedding, batch).item() - expected) < 1e-5


def test_train_ave_is_deterministic_and_checks_its_input(single_torch_thread):
    clips = [synthetic_clip(3, n_frames=120)]
    first, _ = train_ave(clips, steps=2, batch_size=4, seed=5, progress=False, face_size=32, face_width=4)
    second, _ = train_ave(clips, steps=2, batch_size=4, seed=5, progress=False, face_size=32, face_width=4)
    assert all(torch.equal(first[key], second[key]) for key in first)
    all_pairs, _ = train_ave(clips, steps=1, batch_size=4, negatives="all", progress=False, face_size=32, face_width=4)
    assert all_pairs.keys() == first.keys()
    with pytest.raises(BenchError, match="negatives"):
        train_ave(clips, steps=1, negatives="hard", progress=False, face_size=32, face_width=4)
    with pytest.raises(BenchError, match="group_size"):
        train_ave(clips, steps=1, batch_size=4, group_size=1, progress=False, face_size=32, face_width=4)
    with pytest.raises(BenchError, match="too short"):
        train_ave([synthetic_clip(3, n_frames=60)], steps=1, progress=False, face_size=32, face_width=4)
    with pytest.raises(BenchError, match="landmarks"):
        AveClip(clips[0].frames, clips[0].landmarks[:, :5], clips[0].audio)
