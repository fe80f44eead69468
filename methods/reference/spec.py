"""Specs of the reference methods (imports nothing heavy)."""

from bench.contracts import Capabilities, MethodSpec, MethodStatus, Track

_BOTH_TRACKS = (Track.HEAD, Track.PORTRAIT)

SPECS = (
    MethodSpec(
        id="ground-truth",
        impl="bench.methods.reference.adapter:GroundTruth",
        description="The test-split frames themselves: the upper bound of every full-reference metric",
        capabilities=Capabilities(needs_training=False, ood_audio=False, tracks=_BOTH_TRACKS),
        status=MethodStatus.REFERENCE,
    ),
    MethodSpec(
        id="still-frame",
        impl="bench.methods.reference.adapter:StillFrame",
        description="The first training frame repeated for every frame: no motion, no lip sync (a lower bound)",
        capabilities=Capabilities(needs_training=False, ood_audio=True, tracks=_BOTH_TRACKS),
        status=MethodStatus.REFERENCE,
    ),
    MethodSpec(
        id="video",
        impl="bench.methods.reference.adapter:ImportedVideo",
        description="Scores frames any tool rendered: a video file, a folder of images or one image (--renders)",
        capabilities=Capabilities(needs_training=False, ood_audio=True, tracks=_BOTH_TRACKS, external_renders=True),
        default_config={"renders": None},  # the rendered video, frame folder or image (--renders)
        status=MethodStatus.REFERENCE,
    ),
)
