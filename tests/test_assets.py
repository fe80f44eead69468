"""Asset registry: cache hit, mirror hit, wrong sha256 rejected, clear message when missing, real download."""

import hashlib
import http.server
import json
import threading
from functools import partial

import pytest
from conftest import run_bench

from bench import assets
from bench.assets import Asset, AssetHashMismatch, AssetUnavailable

PAYLOAD = b"talking-head weights\n" * 100


def _asset(url="https://example.org/files/weights.pth", payload=PAYLOAD) -> Asset:
    return Asset(
        name="test_weights", url=url, sha256=hashlib.sha256(payload).hexdigest(), size=len(payload),
        license="test", kind="weights",
    )


@pytest.fixture
def fake_catalog(monkeypatch):
    def install(asset: Asset):
        monkeypatch.setattr(assets, "catalog", lambda: {asset.name: asset})
        assets._verified.clear()
        return asset

    return install


def test_cache_hit_needs_no_mirror(fake_catalog, monkeypatch):
    asset = fake_catalog(_asset())
    asset.cache_path.parent.mkdir(parents=True)
    asset.cache_path.write_bytes(PAYLOAD)
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    assert assets.locate(asset.name) == "cache"
    assert assets.fetch(asset.name) == asset.cache_path


def test_mirror_hit_by_file_name_is_verified_and_cached(fake_catalog, monkeypatch, tmp_path):
    asset = fake_catalog(_asset())
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "weights.pth").write_bytes(PAYLOAD)
    monkeypatch.setenv("BENCH_ASSET_MIRROR", str(mirror))
    assert assets.locate(asset.name) == "mirror"
    path = assets.fetch(asset.name)
    assert path == asset.cache_path and path.read_bytes() == PAYLOAD
    assert assets.locate(asset.name) == "cache"


def test_mirror_hit_by_manifest_url(fake_catalog, monkeypatch, tmp_path):
    asset = fake_catalog(_asset())
    mirror = tmp_path / "mirror"
    (mirror / "elsewhere").mkdir(parents=True)
    (mirror / "elsewhere" / "renamed.bin").write_bytes(PAYLOAD)
    (mirror / "MANIFEST.json").write_text(json.dumps([{"file": "elsewhere/renamed.bin", "upstream": asset.url}]))
    monkeypatch.setenv("BENCH_ASSET_MIRROR", str(mirror))
    assert assets.fetch(asset.name).read_bytes() == PAYLOAD


def test_wrong_sha256_in_mirror_is_rejected(fake_catalog, monkeypatch, tmp_path):
    asset = fake_catalog(_asset())
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "weights.pth").write_bytes(PAYLOAD[:-1] + b"!")
    monkeypatch.setenv("BENCH_ASSET_MIRROR", str(mirror))
    with pytest.raises(AssetHashMismatch, match="does not have sha256"):
        assets.fetch(asset.name)
    assert not asset.cache_path.exists()


def test_corrupt_cache_file_is_not_used(fake_catalog, monkeypatch):
    asset = fake_catalog(_asset())
    asset.cache_path.parent.mkdir(parents=True)
    asset.cache_path.write_bytes(b"truncated")
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    assert assets.locate(asset.name) == "missing"
    assert assets.verify() == {asset.name: "corrupt"}
    assert not asset.cache_path.exists()


def test_missing_asset_message_names_asset_url_and_place(fake_catalog, monkeypatch):
    asset = fake_catalog(_asset())
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    with pytest.raises(AssetUnavailable) as error:
        assets.fetch(asset.name)
    message = str(error.value)
    assert "\n" not in message
    assert asset.name in message and asset.url in message and str(asset.cache_path) in message


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_with_sha256_check(fake_catalog, monkeypatch, http_root):
    root, base = http_root
    (root / "weights.pth").write_bytes(PAYLOAD)
    asset = fake_catalog(_asset(url=f"{base}/weights.pth"))
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE")
    assert assets.fetch(asset.name).read_bytes() == PAYLOAD


def test_download_with_wrong_content_is_rejected(fake_catalog, monkeypatch, http_root):
    root, base = http_root
    (root / "weights.pth").write_bytes(b"something else")
    asset = fake_catalog(_asset(url=f"{base}/weights.pth"))
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE")
    with pytest.raises(AssetUnavailable, match="could not be downloaded"):
        assets.fetch(asset.name)
    assert not asset.cache_path.exists()


def test_catalog_entries_are_complete():
    for name, asset in assets.catalog().items():
        assert asset.url.startswith("https://") and len(asset.sha256) == 64, name
        assert asset.size is None or asset.size > 0, name
        assert asset.license, name


def test_every_mirror_file_is_catalogued_and_found(mirror):
    by_url = {asset.url: name for name, asset in assets.catalog().items()}
    by_url.update({f"pypi:{asset.pypi_file}": name for name, asset in assets.catalog().items() if asset.pypi_file})
    for entry in json.loads((mirror / "MANIFEST.json").read_text()):
        name = by_url[entry["upstream"]]
        assert assets.get(name).sha256 == entry["sha256"] and assets.locate(name) == "mirror", name


def test_assets_cli(mirror):
    assert "mirror" in run_bench("assets", "list").stdout
    assert "zozo.wav" in run_bench("assets", "fetch", "zozo").stdout
    states = dict(line.split() for line in run_bench("assets", "verify").stdout.splitlines())
    assert states["zozo"] == "ok" and states["eng"] == "missing"
    failed = run_bench("assets", "fetch", "no_such_asset", check=False)
    assert failed.returncode == 2 and "unknown asset 'no_such_asset'" in failed.stderr


def test_file_shipped_by_an_installed_package_is_used(fake_catalog, plugin, monkeypatch):
    shipped = plugin / "bench_testplugin" / "spec.py"
    payload = shipped.read_bytes()
    asset = fake_catalog(
        Asset(name="test_weights", url="https://example.org/spec.py", sha256=hashlib.sha256(payload).hexdigest(),
              size=len(payload), license="test", kind="weights", package_file="bench-testplugin:bench_testplugin/spec.py")
    )
    monkeypatch.delenv("BENCH_ASSET_MIRROR", raising=False)
    assert assets.locate(asset.name) == "package"
    assert assets.fetch(asset.name).read_bytes() == payload
