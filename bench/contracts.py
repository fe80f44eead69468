"""The types that methods, metrics, subjects and runs exchange: bench's contracts, in one small module.

Spec classes (``MethodSpec``, ``MetricSpec``, ``SubjectSpec``, ``AudioSpec``) are plain data that import
nothing heavy: registries list them without importing torch. Each names its implementation with a lazy
``"module:Class"`` string, loaded only when a run needs it.

Frames are ``numpy`` arrays of shape (N, H, W, 3), dtype uint8, RGB, 25 fps (often read-only memory maps).
Audio is 16 kHz mono.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy only for annotations: spec modules stay import-light
    import numpy as np

from bench.basics import AUDIO_RATE, FPS, SAMPLES_PER_FRAME, BenchError, Unavailable  # noqa: F401 (the API re-exports)

SELF_AUDIO = "self"
"""Driving-audio id meaning the subject's own test-split audio (the only audio with ground truth)."""
GROUND_TRUTH = "ground-truth"
"""The reference method whose renders are the test-split frames themselves (never ranked)."""
MIN_FRAMES = 2 * FPS
"""The shortest clip a subject may be (2 s): enough for preparation's smoothing windows and a 10/11 split."""


def arrow(higher_is_better: bool) -> str:
    """The direction mark every table, plot and report prints after a metric's name."""
    return "↑" if higher_is_better else "↓"


def align_frames(pred: np.ndarray, gt: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """The frames that are scored: a prediction and its ground truth truncated to the shorter, with the record of
    what was done (the one alignment rule of runs and ``bench score``)."""
    n_frames = len(pred) if gt is None else min(len(pred), len(gt))
    alignment: dict[str, Any] = {"pred_frames": len(pred), "gt_frames": None if gt is None else len(gt),
                                 "scored_frames": n_frames}
    if gt is not None and len(pred) != len(gt):
        alignment["rule"] = "truncated to the shorter sequence"
    return pred[:n_frames], None if gt is None else gt[:n_frames], alignment


class Track(str, enum.Enum):
    """What is scored. Portrait renders paste the face into the GT frame, so the two never share a ranking."""

    HEAD = "head"
    PORTRAIT = "portrait"


class MetricKind(str, enum.Enum):
    FULL_REFERENCE = "full-reference"
    NO_REFERENCE = "no-reference"
    AUDIO_VISUAL = "audio-visual"


@dataclass(frozen=True)
class Split:
    """SyncTalk/ER-NeRF split: the first floor(N*10/11) frames train, the last 1/11 test."""

    train: range
    test: range

    @classmethod
    def for_frames(cls, n_frames: int) -> Split:
        cut = n_frames * 10 // 11
        return cls(train=range(0, cut), test=range(cut, n_frames))


# ---------------------------------------------------------------------------------------------------
# Specs: registry entries (plain data)


@dataclass(frozen=True)
class Capabilities:
    """What a method can do; the pipeline refuses runs that ask for anything else."""

    needs_training: bool = True
    ood_audio: bool = False
    tracks: tuple[Track, ...] = (Track.HEAD,)
    external_renders: bool = False  # scores frames some other tool produced (config key "renders")


class MethodStatus(str, enum.Enum):
    """How far a method's implementation in bench goes, as ``bench list methods`` shows it."""

    REFERENCE = "reference method"
    REPRODUCES = "reproduces the paper here"
    RUNS = "runs here"
    NEEDS_WEIGHTS = "needs weights"
    NEEDS_UPSTREAM = "needs the upstream code"


@dataclass(frozen=True)
class PaperResult:
    """One row of a table of a method's paper: the paper's label and its values by bench metric variant."""

    table: str  # "table1", "table2" or "table4" (bench's layouts); table2 values are keyed "<audio>/<variant>"
    row: str  # the row's label in the paper
    values: Mapping[str, float]
    track: Track = Track.HEAD
    subject: str | None = None  # None: an average over the paper's subjects


@dataclass(frozen=True)
class Variant:
    """A named configuration of a method (``METHOD:NAME``): config overrides, optionally another track, and the
    paper row it stands for. ``source`` says whether the paper has the row or bench adds it."""

    name: str
    label: str
    config: Mapping[str, Any] = field(default_factory=dict)
    track: Track | None = None  # None: the track the run asks for
    paper_row: str | None = None  # the label of the PaperResult it corresponds to
    source: str = "paper"  # "paper" | "bench"
    assets: tuple[str, ...] = ()  # asset-catalog names the variant needs beyond the method's
    requires: tuple[str, ...] = ()
    prepare_options: tuple[str, ...] = ()  # "step.option" the run must set (e.g. a file only the user can provide)


@dataclass(frozen=True)
class MethodSpec:
    """A method's registry entry: plain data. The pipeline prepares exactly ``prepare_steps`` (and what they read),
    keys training on their stage keys, refuses config keys that are neither in ``default_config`` nor in a preset,
    expands ``preset`` into its values, and reports the method unavailable while ``assets``/``requires`` are
    missing."""

    id: str
    impl: str  # "module:Class" of a bench.contracts.Method subclass
    description: str
    capabilities: Capabilities = Capabilities()
    version: str = "1"  # bump when renders change for the same inputs: it is part of every cache key
    default_config: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # config key "preset" names one
    prepare_steps: tuple[str, ...] = ()  # `bench prepare` steps the method reads (none: the minimal preparation)
    assets: tuple[str, ...] = ()  # asset-catalog names it always needs; missing -> reported unavailable
    requires: tuple[str, ...] = ()  # importable modules it needs (checked without importing them)
    variants: tuple[Variant, ...] = ()
    status: MethodStatus = MethodStatus.RUNS
    status_note: str = ""  # what the status rests on, or what is missing
    paper: str | None = None
    venue: str | None = None
    license: str | None = None
    paper_results: tuple[PaperResult, ...] = ()  # the numbers its paper reports (bench.reports.paper reads them)

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        names = ", ".join(v.name for v in self.variants) or "none"
        raise BenchError(f"method {self.id!r} has no variant {name!r}; its variants are: {names}")


@dataclass(frozen=True)
class MetricSpec:
    id: str  # family, e.g. "psnr"; `--metrics psnr` selects every variant of the family
    variant: str  # unique registry key naming what matters, e.g. "psnr@frame-mean"
    impl: str  # "module:Class" of a bench.contracts.Metric subclass
    higher_is_better: bool
    kind: MetricKind
    description: str
    assets: tuple[str, ...] = ()  # asset-catalog names the metric needs; missing -> reported unavailable
    requires: tuple[str, ...] = ()  # importable modules it needs (checked without importing them)
    unit: str = ""
    ground_truth_row: bool = False  # a full-reference metric that still scores the GT itself (FID's self-split)

    @property
    def arrow(self) -> str:
        return arrow(self.higher_is_better)


@dataclass(frozen=True)
class SubjectSpec:
    """A talking-head clip. Its video comes from an asset, a local path, or $BENCH_HOME/videos/<id>.mp4."""

    id: str
    description: str
    video_asset: str | None = None
    video_path: str | None = None
    license: str | None = None
    source: str | None = None  # where the footage comes from, shown when the video is missing


@dataclass(frozen=True)
class AudioSpec:
    """Out-of-distribution driving speech (any rate and channel count; prepared to 16 kHz mono)."""

    id: str
    asset: str
    description: str
    language: str | None = None


# ---------------------------------------------------------------------------------------------------
# Prepared data handed to methods and metrics


@dataclass(frozen=True)
class Subject:
    """A prepared subject: 25 fps frames, 16 kHz mono audio and the train/test split.

    ``steps`` holds the folders of the ``bench prepare`` steps the method declared (landmarks, parsing, poses, ...),
    each named by its stage key; methods read them from here and never prepare again.
    """

    id: str
    root: Path
    key: str  # cache key of the preparation: identifies exactly these frames
    n_frames: int
    width: int
    height: int
    split: Split
    video_path: Path  # 25 fps video whose decoded frames are the ground truth
    audio_path: Path  # whole clip, 16 kHz mono
    test_frames_path: Path  # decoded test-split frames (bench.media frame file)
    test_audio_path: Path  # test-split audio, 16 kHz mono
    sources: Mapping[str, str]  # asset or file -> sha256 it was prepared from
    steps: Mapping[str, Path] = field(default_factory=dict)  # finished `bench prepare` step folders the method reads

    def frames(self, indices: range) -> np.ndarray:
        """Decode frames ``indices`` (contiguous) from the subject video."""
        from bench import media

        return media.read_video_range(self.video_path, indices)

    def test_frames(self) -> np.ndarray:
        from bench import media

        return media.open_frames(self.test_frames_path)

    def self_audio(self) -> DrivingAudio:
        from bench.hashing import sha256_file

        return DrivingAudio(
            id=SELF_AUDIO,
            path=self.test_audio_path,
            n_frames=len(self.split.test),
            sha256=sha256_file(self.test_audio_path),
            has_ground_truth=True,
        )


@dataclass(frozen=True)
class DrivingAudio:
    """Speech that drives a render: the subject's own test audio (with GT frames) or an OOD wav (without)."""

    id: str
    path: Path  # 16 kHz mono wav
    n_frames: int  # video frames it drives at 25 fps
    sha256: str
    has_ground_truth: bool

    def samples(self) -> np.ndarray:
        from bench import media

        return media.read_wav(self.path)


# ---------------------------------------------------------------------------------------------------
# Implementations


class Method(abc.ABC):
    """A talking-head method: trains on a subject into a checkpoint folder, renders frames for an audio."""

    def __init__(self, spec: MethodSpec, config: Mapping[str, Any], seed: int) -> None:
        self.spec = spec
        self.config = dict(config)
        self.seed = seed
        self.progress = True  # whether long work (training) may show progress bars; the pipeline sets it

    @classmethod
    def resolve_config(cls, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Replace every machine-dependent choice (``auto``) by what will run here, before the config is hashed.

        Returns the resolved config and, per resolved key, why. Raises ``Unavailable`` when the config cannot run
        here (missing weights or inputs)."""
        return dict(config), {}

    def train(self, subject: Subject, checkpoint_dir: Path) -> None:
        """Fit the method to ``subject``, writing everything render needs into ``checkpoint_dir``.

        Called only when ``spec.capabilities.needs_training``; methods that learn nothing keep this default.
        """

    @abc.abstractmethod
    def render(
        self, subject: Subject, checkpoint_dir: Path | None, audio: DrivingAudio, track: Track
    ) -> Iterator[np.ndarray]:
        """Yield uint8 RGB frames (H, W, 3) at 25 fps, one per frame of ``audio``."""


@dataclass
class MetricInput:
    """What a metric sees: aligned predicted and GT frames (GT is None for OOD audio), the driving audio, and
    run options a metric may use (for example ``openface_csv_pred``/``openface_csv_gt``: precomputed files)."""

    pred: np.ndarray
    gt: np.ndarray | None
    audio: DrivingAudio | None
    fps: int = FPS
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class MetricValue:
    """Per-frame values (NaN where a frame could not be scored) and the aggregate the tables show."""

    aggregate: float
    per_frame: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Metric(abc.ABC):
    """One metric variant. ``assets`` maps each asset name of the spec to its verified local path."""

    def __init__(self, spec: MetricSpec, assets: Mapping[str, Path]) -> None:
        self.spec = spec
        self.assets = dict(assets)

    @abc.abstractmethod
    def compute(self, data: MetricInput) -> MetricValue: ...


# ---------------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunSpec:
    """One benchmark run: (method, subject, driving audio, track, config, seed) and the metrics to compute."""

    method: str
    subject: str
    audio: str = SELF_AUDIO
    track: Track = Track.HEAD
    config: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    metrics: tuple[str, ...] | None = None  # None: every registered metric that applies and is available
    metric_options: Mapping[str, Any] = field(default_factory=dict)  # passed to metrics as MetricInput.options
    prepare_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # step -> options (bench prepare --set)
    reference: bool = True  # also score ground truth on the no-reference and audio-visual metrics


@dataclass
class MetricOutcome:
    """A metric's result in a run, or why there is none."""

    spec: MetricSpec
    value: MetricValue | None = None
    unavailable: str | None = None
    cached: bool = False


@dataclass
class RunResult:
    run_id: str
    spec: RunSpec
    outcomes: list[MetricOutcome]
    provenance: dict[str, Any]
    n_frames: int
    reference: RunResult | None = None  # ground truth's own no-reference / audio-visual scores, stored beside
    video: Path | None = None  # the render as mp4 with the driving audio muxed in
    track: Track = Track.HEAD  # the track scored (a variant may fix it)
