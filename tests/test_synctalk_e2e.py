"""SyncTalk end to end on the prepared cnn subject at the ``smoke`` preset (issue check; about 12 min on 2 CPU cores).

Prepares cnn from the mirror, trains, renders the test split on the head track, and scores it beside the
``still-frame`` reference: training must lower the photometric loss steadily, the render must beat still-frame on
PSNR and on LMD, and the dlib face detector must find a face in every rendered frame.
"""

from __future__ import annotations

import itertools
import json

import pytest

pytestmark = pytest.mark.slow

METRICS = ("psnr@frame-mean", "lmd@dlib-mouth20-centred-px")


def _scores(result) -> dict[str, object]:
    return {outcome.spec.variant: outcome for outcome in result.outcomes}


def test_smoke_preset_on_cnn_beats_still_frame(mirror):
    from bench import pipeline, stages
    from bench.contracts import RunSpec

    synctalk = pipeline.run(RunSpec(method="synctalk", subject="cnn", config={"preset": "smoke"}, metrics=METRICS))
    still = pipeline.run(RunSpec(method="still-frame", subject="cnn", metrics=METRICS))
    ours, reference = _scores(synctalk), _scores(still)
    print({variant: (ours[variant].value.aggregate, reference[variant].value.aggregate) for variant in METRICS})

    trained = pipeline.train(RunSpec(method="synctalk", subject="cnn", config={"preset": "smoke"}))
    meta = json.loads((trained.checkpoint / "meta.json").read_text())
    trend = meta["loss_trend"]
    print("loss trend", trend)
    assert all(later <= earlier * 1.05 for earlier, later in itertools.pairwise(trend)), trend
    assert trend[-1] < 0.5 * trend[0], trend
    assert stages.record("train", trained.checkpoint.name)["seconds"] < 600

    assert ours["psnr@frame-mean"].value.aggregate > reference["psnr@frame-mean"].value.aggregate
    lmd = ours["lmd@dlib-mouth20-centred-px"].value
    assert lmd.aggregate < reference["lmd@dlib-mouth20-centred-px"].value.aggregate
    assert lmd.extras["no_face_pred"] == 0, "the detector found no face in some rendered frames"
