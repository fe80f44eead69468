"""SyncTalk's mouth follows the audio it is given (slow; about 40 min on 2 CPU cores: prepare cnn, train the ``cpu``
preset with Whisper features, two renders of the test split).

Learned, not memorised: the same trained model renders cnn's test split (its poses, expressions and backgrounds)
with the true audio and with that audio shifted by 1 s; the true audio's mouth must follow the GT's more closely
(``lipsync@mouth-corr-gt``), and swapping a frame's audio code must change the lip box far more than the rest of
the image. ``benchmarks/lipsync_proof.py`` prints the full table (with another speaker's speech as a second control).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

CONFIG = {"preset": "cpu", "audio_encoder": "whisper"}


def test_true_audio_beats_a_shifted_control_on_cnn(mirror):
    from bench import pipeline, registry
    from bench.contracts import MetricInput, RunSpec, Track
    from bench.methods.engine import probe
    from bench.methods.engine.method import prepared_subject

    trained = pipeline.train(RunSpec(method="synctalk", subject="cnn", config=CONFIG))
    method, subject, checkpoint = trained.method, trained.subject, trained.checkpoint

    sensitivity = probe.audio_sensitivity(method, subject, checkpoint)
    print("audio sensitivity", sensitivity)
    assert sensitivity["lip_box_max"] > 20 and sensitivity["lip_box_mean"] > 5 * sensitivity["elsewhere_mean"]

    prepared = prepared_subject(subject)
    test = prepared.split.test
    gt = np.asarray(prepared.frames()[test.start : test.stop])
    samples = prepared.audio()
    spec = registry.metrics.get("lipsync@mouth-corr-gt")
    correlation = {}
    for label, drive in (("true", samples), ("shifted", probe.control_audio(samples, test, "shifted"))):
        frames = np.stack(list(method.render_test_split(subject, checkpoint, Track.HEAD, drive)))
        correlation[label] = pipeline.compute_metric(spec, MetricInput(pred=frames, gt=gt, audio=None)).aggregate
    print("mouth-opening correlation with GT", correlation)
    assert correlation["true"] > 0.5 and correlation["true"] > correlation["shifted"] + 0.3
