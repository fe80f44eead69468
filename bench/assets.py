"""Asset registry: every external file bench uses, named by upstream URL, sha256, size and licence.

``fetch(name)`` returns a verified local path, looking in order at
1. the cache ``$BENCH_HOME/assets/<name>/<file>``,
   then, for files that a PyPI package ships (``package_file = "dist:path/in/dist"``), that installed package,
2. the mirror folders in ``$BENCH_ASSET_MIRROR`` (``os.pathsep``-separated; matched by its ``MANIFEST.json`` upstream URL or sha256, else by
   file name; always sha256-checked, then copied into the cache),
3. unless ``BENCH_OFFLINE=1``: for files published inside a PyPI distribution (``pypi_file =
   "requirement:path/in/archive"``), that archive fetched with ``pip download`` (the one way to PyPI where only
   package registries are reachable); then a download from the upstream URL with pooch (progress bar, sha256 check).
A file that cannot be had raises ``AssetUnavailable`` with one line naming the asset, its URL and where to put it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from urllib.parse import urlparse

from bench import home
from bench.contracts import BenchError
from bench.hashing import sha256_file


class AssetUnavailable(BenchError):
    """The asset is in neither cache nor mirror and could not be downloaded."""


class AssetHashMismatch(AssetUnavailable):
    """A file offered for an asset does not have the catalogued sha256."""


@dataclass(frozen=True)
class Asset:
    name: str
    url: str
    sha256: str
    license: str
    kind: str
    size: int | None = None  # bytes; None where no public source states it (the sha256 still decides)
    description: str = ""
    package_file: str | None = None  # "distribution:relative/path" of an installed package shipping the file
    pypi_file: str | None = None  # "requirement:path/inside/archive" of a PyPI sdist or wheel holding the file

    @property
    def filename(self) -> str:
        return Path(urlparse(self.url).path).name

    @property
    def cache_path(self) -> Path:
        return home.asset_cache_dir() / self.name / self.filename


@cache
def catalog() -> dict[str, Asset]:
    """Every ``bench/asset_catalog/*.toml`` file (grouped by what the assets serve); names are unique."""
    entries: dict[str, Asset] = {}
    for file in sorted(resources.files("bench").joinpath("asset_catalog").iterdir(), key=lambda f: f.name):
        if not file.name.endswith(".toml"):
            continue
        for name, fields in tomllib.loads(file.read_text(encoding="utf-8")).items():
            if name in entries:
                raise BenchError(f"asset {name!r} is catalogued twice (bench/asset_catalog/{file.name})")
            entries[name] = Asset(name=name, **fields)
    return entries


def get(name: str) -> Asset:
    try:
        return catalog()[name]
    except KeyError:
        raise BenchError(f"unknown asset {name!r} (`bench assets list` shows all)") from None


_verified: dict[Path, str] = {}


def _matches(path: Path, asset: Asset) -> bool:
    """sha256 check, remembered per (path, size, mtime) for this process."""
    stat = path.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    if _verified.get(path) != stamp:
        if (asset.size is not None and stat.st_size != asset.size) or sha256_file(path) != asset.sha256:
            return False
        _verified[path] = stamp
    return True


def _package_candidate(asset: Asset) -> Path | None:
    if not asset.package_file:
        return None
    dist_name, _, relative = asset.package_file.partition(":")
    try:
        path = Path(str(metadata.distribution(dist_name).locate_file(relative)))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _mirror_candidates(mirror: Path, asset: Asset) -> list[Path]:
    """Files in the mirror that claim to be ``asset``: by its manifest first, then by file name."""
    found: list[Path] = []
    manifest = mirror / "MANIFEST.json"
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise BenchError(f"{manifest}: not valid JSON ({error}); fix or remove it") from error
        for entry in entries:
            if entry.get("upstream") == asset.url or entry.get("sha256") == asset.sha256:
                found.append(mirror / entry["file"])
    for root, _, files in os.walk(mirror):
        if asset.filename in files:
            found.append(Path(root) / asset.filename)
    return [p for i, p in enumerate(found) if p.is_file() and p not in found[:i]]


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _download(asset: Asset) -> Path:
    import pooch

    target = asset.cache_path
    target.parent.mkdir(parents=True, exist_ok=True)
    downloaded = pooch.retrieve(
        asset.url,
        known_hash=f"sha256:{asset.sha256}",
        fname=asset.filename,
        path=target.parent,
        progressbar=True,
        downloader=pooch.HTTPDownloader(progressbar=True, timeout=60),
    )
    return Path(downloaded)


def _read_archive_member(archive: Path, member: str) -> bytes:
    """The file whose path ends with ``member`` inside a wheel/zip or an sdist tarball."""
    if archive.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(archive) as bundle:
            names = [n for n in bundle.namelist() if n == member or n.endswith(f"/{member}")]
            if names:
                return bundle.read(names[0])
    else:
        with tarfile.open(archive) as bundle:
            for info in bundle.getmembers():
                if info.isfile() and (info.name == member or info.name.endswith(f"/{member}")):
                    return bundle.extractfile(info).read()
    raise BenchError(f"{archive.name} holds no {member}")


def _from_pypi(asset: Asset) -> Path:
    requirement, _, member = asset.pypi_file.partition(":")
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "--quiet", "-d", folder, requirement]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise BenchError(f"pip download {requirement} failed: {done.stderr.strip().splitlines()[-1:]}")
        data = _read_archive_member(next(Path(folder).iterdir()), member)
        staged = Path(folder) / "member"
        staged.write_bytes(data)
        if not _matches(staged, asset):
            raise AssetHashMismatch(f"{member} in {requirement} does not have sha256 {asset.sha256}")
        _copy_atomically(staged, asset.cache_path)
    return asset.cache_path


def where_to_put(asset: Asset) -> str:
    return (
        f"download {asset.url} (sha256 {asset.sha256}) and put it at {asset.cache_path} "
        f"or in the folder named by BENCH_ASSET_MIRROR"
    )


def locate(name: str) -> str:
    """Where the asset would come from now: 'cache', 'mirror' or 'missing' (no download, no copy)."""
    asset = get(name)
    if asset.cache_path.is_file() and _matches(asset.cache_path, asset):
        return "cache"
    packaged = _package_candidate(asset)
    if packaged and _matches(packaged, asset):
        return "package"
    for mirror in home.asset_mirrors():
        if mirror.is_dir() and any(_matches(p, asset) for p in _mirror_candidates(mirror, asset)):
            return "mirror"
    return "missing"


def fetch(name: str) -> Path:
    """A verified local path for asset ``name`` (see the module docstring for the lookup order)."""
    asset = get(name)
    cached = asset.cache_path
    if cached.is_file() and _matches(cached, asset):
        return cached
    candidates = [p for p in [_package_candidate(asset)] if p]
    for mirror in home.asset_mirrors():
        if mirror.is_dir():
            candidates += _mirror_candidates(mirror, asset)
    rejected: list[Path] = []
    for candidate in candidates:
        if _matches(candidate, asset):
            _copy_atomically(candidate, cached)
            _matches(cached, asset)
            return cached
        rejected.append(candidate)
    if rejected and home.offline():
        raise AssetHashMismatch(
            f"asset {name!r}: {rejected[0]} does not have sha256 {asset.sha256}; "
            f"replace it ({where_to_put(asset)})"
        )
    if home.offline():
        raise AssetUnavailable(f"asset {name!r} is not available offline (BENCH_OFFLINE is set): {where_to_put(asset)}")
    pypi_error = ""
    if asset.pypi_file:
        try:
            path = _from_pypi(asset)
            _matches(path, asset)
            return path
        except (BenchError, OSError, subprocess.SubprocessError) as error:
            pypi_error = f"; from PyPI ({asset.pypi_file}): {error}"
    try:
        path = _download(asset)
    except Exception as error:  # network, HTTP or hash failure: all mean "not available here"
        reason = type(error).__name__  # the library's own text repeats the URL at length
        mismatch = f"; {rejected[0]} has the wrong sha256" if rejected else ""
        raise AssetUnavailable(
            f"asset {name!r} could not be downloaded ({reason}){pypi_error}{mismatch}: {where_to_put(asset)}"
        ) from error
    _matches(path, asset)
    return path


def verify() -> dict[str, str]:
    """Re-hash every cached asset: name -> 'ok', 'missing' or 'corrupt' (a corrupt file is removed)."""
    report: dict[str, str] = {}
    for name, asset in catalog().items():
        path = asset.cache_path
        if not path.is_file():
            report[name] = "missing"
            continue
        _verified.pop(path, None)
        if _matches(path, asset):
            report[name] = "ok"
        else:
            path.unlink()
            report[name] = "corrupt"
    return report
