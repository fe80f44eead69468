"""Plug-in specs: plain data, nothing heavy imported."""

import os

from bench.contracts import Capabilities, MethodSpec, MetricKind, MetricSpec, SubjectSpec, Track

METHOD = MethodSpec(
    id="echo",
    impl="bench_testplugin.adapter:Echo",
    description="test method: trains a mean frame, renders GT test frames plus seeded noise",
    capabilities=Capabilities(needs_training=True, ood_audio=True, tracks=(Track.HEAD,)),
    default_config={"noise": 8},
)
METRIC = MetricSpec(
    id="mean_abs",
    variant="mean_abs@test",
    impl="bench_testplugin.adapter:MeanAbs",
    higher_is_better=False,
    kind=MetricKind.NO_REFERENCE,
    description="test metric: mean absolute pixel value per frame",
)
SUBJECT = SubjectSpec(
    id="tiny",
    description="a synthetic 192x192 clip the tests generate",
    video_path=os.environ.get("BENCH_TEST_VIDEO"),
)
