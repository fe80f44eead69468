"""The SyncTalk plug-in through bench's pipeline on a real 3 s clip the user prepares: a tiny training run, the
head and portrait tracks, the optional torso stage, OOD audio replay and the mp4 with audio (about 2 min on 2 cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import write_clip

from bench.contracts import BenchError, DrivingAudio, RunSpec, Track

# a few seconds of training: the checks here are about wiring, not quality (tests/test_synctalk_e2e.py is)
TINY = {"preset": "smoke", "train_size": 64, "iters_coarse": 30, "iters_fine": 6, "iters_torso": 20, "rays": 1024,
        "grid_resolution": 32, "max_steps": 4, "checkpoint_every": 20, "ema_every": 5}


@pytest.fixture
def clip_subject(clip_source, tmp_path, single_torch_thread):
    from bench.datasets.preprocess.prepared import prepare

    frames, audio = clip_source
    prepare(str(write_clip(tmp_path / "clip.mp4", frames, audio)), name="clip", progress=False)


def test_synctalk_trains_renders_both_tracks_torso_and_ood_audio(clip_subject, tmp_path, monkeypatch, capfd):
    from bench import media, pipeline
    from bench.datasets.preprocess.prepared import open_prepared
    from bench.methods.engine.data import HeadBackgrounds
    from bench.methods.engine.model import TalkingHeadModel, mirror_index

    head = pipeline.run(RunSpec(method="synctalk", subject="clip", config=TINY, metrics=("psnr",)), progress=False)
    psnr = head.outcomes[0].value
    assert head.n_frames == 7 and psnr is not None and psnr.aggregate > 10  # a user-prepared subject runs by its name
    trained = pipeline.train(RunSpec(method="synctalk", subject="clip", config=TINY), progress=False)
    meta = json.loads((trained.checkpoint / "meta.json").read_text())
    assert meta["steps"] == 36 and meta["audio_encoder"] == "whisper" and meta["torso"] is None  # auto, with the mirror
    assert head.video is not None and len(list(media.iter_video(head.video))) == 7
    assert "train synctalk" not in capfd.readouterr().err  # progress=False (--no-progress) hides the training bar

    portrait = pipeline.run(
        RunSpec(method="synctalk", subject="clip", track=Track.PORTRAIT, config=TINY, metrics=("psnr",)), progress=False
    )
    assert portrait.run_id != head.run_id
    rendered = media.open_frames(portrait.video.parent / "frames")
    prepared = open_prepared("clip")
    test = list(prepared.split.test)
    outside = np.asarray(prepared.array("parsing", "face_soft.npy")[test]) == 0
    difference = np.abs(rendered.astype(int) - prepared.frames()[test].astype(int)).max(axis=-1)
    assert difference[outside].max() <= 1  # outside the soft face mask the portrait is the original frame
    assert portrait.outcomes[0].value.aggregate > psnr.aggregate

    with_torso = pipeline.run(
        RunSpec(method="synctalk", subject="clip", config={**TINY, "torso": True}, metrics=("psnr",)), progress=False
    )
    torso_trained = pipeline.train(RunSpec(method="synctalk", subject="clip", config={**TINY, "torso": True}), progress=False)
    torso_meta = json.loads((torso_trained.checkpoint / "meta.json").read_text())["torso"]
    assert torso_meta["steps"] == 20 and (torso_trained.checkpoint / "torso.pt").is_file()
    assert with_torso.outcomes[0].value.aggregate > 10
    # same seed, same head: only the background changed, from the frame's GT torso to the learned torso field
    head_frames = media.open_frames(head.video.parent / "frames")
    torso_frames = media.open_frames(with_torso.video.parent / "frames")
    assert np.abs(torso_frames.astype(int) - head_frames).mean() > 1
    with pytest.raises(BenchError, match="head track only"):
        pipeline.run(RunSpec(method="synctalk", subject="clip", track=Track.PORTRAIT, config={**TINY, "torso": True}),
                     progress=False)

    # OOD audio: 10 frames of speech replay the training poses in ping-pong order
    wav = tmp_path / "speech.wav"
    media.write_wav(wav, 0.3 * np.sin(np.arange(6400, dtype=np.float32) / 9.0))
    speech = DrivingAudio(id="speech", path=wav, n_frames=10, sha256="0" * 64, has_ground_truth=False)
    # with the head made transparent, each frame is exactly the replayed training frame's torso over the plate
    monkeypatch.setattr(TalkingHeadModel, "render_frame", lambda self, *args, **kwargs: args[-1])
    ood = list(trained.method.render(trained.subject, trained.checkpoint, speech, Track.HEAD))
    assert len(ood) == 10 and ood[0].shape == (512, 512, 3) and ood[0].dtype == np.uint8
    backgrounds = HeadBackgrounds(prepared)
    sources = [mirror_index(index, len(prepared.split.train)) for index in range(10)]
    assert all(np.abs(frame.astype(int) - backgrounds(source)).max() <= 1 for frame, source in zip(ood, sources))
