"""Decoding and preparation: 25 fps resampling, 16 kHz mono audio, frame files, the 10/11 split."""

import numpy as np
import pytest
from conftest import make_video

from bench import media
from bench.contracts import BenchError, Split


def test_split_matches_synctalk():
    split = Split.for_frames(1779)
    assert (len(split.train), len(split.test)) == (1617, 162)
    assert split.test.stop == 1779 and split.train.stop == split.test.start
    assert len(Split.for_frames(200).test) == 19


def test_video_at_25fps_passes_through(tiny_video):
    frames = list(media.iter_video(tiny_video))
    assert len(frames) == 55 and frames[0].shape == (192, 192, 3) and frames[0].dtype == np.uint8


def test_other_frame_rates_are_resampled_by_nearest_timestamp(tmp_path):
    source = make_video(tmp_path / "v30.mp4", n_frames=60, fps=30)  # 2.0 s
    frames = list(media.iter_video(source))
    assert len(frames) == 50  # 2.0 s at 25 fps
    originals = list(media.iter_video(source, fps=30))
    # output frame k shows the input frame nearest to k/25 s
    for k in (0, 7, 24, 49):
        nearest = min(range(60), key=lambda i: abs(i / 30 - k / 25))
        assert np.array_equal(frames[k], originals[nearest])


def test_audio_is_16k_mono_and_keeps_its_pitch(tmp_path):
    source = make_video(tmp_path / "stereo48k.mp4", n_frames=50, audio_rate=48000, channels=2)
    samples = media.decode_audio(source)
    assert samples.dtype == np.float32 and abs(len(samples) - 32000) < 2048
    segment = samples[4000:20000]
    peak_hz = np.argmax(np.abs(np.fft.rfft(segment))) * 16000 / len(segment)
    assert abs(peak_hz - 220) < 3


def test_wav_round_trip(tmp_path):
    samples = np.sin(np.linspace(0, 50, 16000)).astype(np.float32) * 0.5
    media.write_wav(tmp_path / "a.wav", samples)
    np.testing.assert_allclose(media.read_wav(tmp_path / "a.wav"), samples, atol=1 / 32767)


def test_frame_file_round_trip_and_validation(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 8, 6, 3), dtype=np.uint8)
    assert media.write_frames(tmp_path / "f", iter(frames)) == 5
    loaded = media.open_frames(tmp_path / "f")
    assert np.array_equal(loaded, frames) and not loaded.flags.writeable
    with pytest.raises(BenchError, match="expected uint8"):
        media.write_frames(tmp_path / "g", [frames[0].astype(np.float32)])


def test_frame_folders_and_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "renders"
    folder.mkdir()
    frames = np.random.default_rng(1).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    assert np.array_equal(np.stack(list(media.iter_frames(folder))), frames)
    assert np.array_equal(next(media.iter_frames(folder / "0001.png")), frames[1])


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(BenchError, match="broken.mp4") as error:
        list(media.iter_video(broken))
    assert "\n" not in str(error.value)
    with pytest.raises(BenchError, match="no such file"):
        media.video_info(tmp_path / "missing.mp4")


def test_write_video_muxes_audio_and_handles_odd_sizes(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.broadcast_to(rng.integers(0, 255, (5, 1, 1, 3), dtype=np.uint8), (5, 33, 47, 3)).copy()  # flat colours
    tone = (0.4 * np.sin(2 * np.pi * 220 * np.arange(3200) / 16000)).astype(np.float32)  # 0.2 s = 5 frames
    assert media.write_video(tmp_path / "odd.mp4", frames, tone) == 5  # odd sides: yuv444p, no chroma halving
    decoded = np.stack(list(media.iter_video(tmp_path / "odd.mp4")))
    assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() < 3
    audio = media.decode_audio(tmp_path / "odd.mp4")
    n = min(len(audio), len(tone))
    assert abs(len(audio) - len(tone)) < 2048 and np.corrcoef(audio[:n], tone[:n])[0, 1] > 0.9
    with pytest.raises(BenchError, match="no frames"):
        media.write_video(tmp_path / "empty.mp4", [], None)
    assert not list(tmp_path.glob("*empty*"))  # no partial file left behind
