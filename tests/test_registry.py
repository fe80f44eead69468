"""Registries: built-ins, lazy loading (no torch for listing), entry-point plug-ins, metric selection."""

import subprocess
import sys

import pytest
from conftest import run_bench

from bench import registry
from bench.contracts import BenchError, Method, MethodSpec, Metric


def test_builtins_are_registered():
    assert {"ground-truth", "still-frame", "video"} <= set(registry.methods.all())
    assert {"psnr@frame-mean", "ms_ssim@rgb"} <= set(registry.metrics.all())
    assert {"cnn", "hdtf_WDA_KatieHill_000", "May", "Obama", "Macron", "Lieu", "Shaheen"} <= set(registry.subjects.all())
    assert {"zozo", "MacronSpeech", "eng", "synctalk_test", "hdtf_RD_Radio31_000"} <= set(registry.audio.all())


def test_every_builtin_implementation_loads_and_has_the_right_base():
    for spec in registry.methods.all().values():
        assert issubclass(registry.load_object(spec.impl), Method), spec.id
    for spec in registry.metrics.all().values():
        assert issubclass(registry.load_object(spec.impl), Metric), spec.variant


def _modules_loaded_by(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, timeout=60)
    return set(out.stdout.split())


def test_help_imports_nothing_heavy():
    loaded = _modules_loaded_by("from bench import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & {"torch", "piq", "av", "numpy", "pandas", "scipy"}


def test_listing_does_not_import_torch_or_decoders():
    loaded = _modules_loaded_by("from bench import cli\nfor what in ('methods', 'metrics', 'subjects', 'audio'):\n    cli.main(['list', what])")
    assert not loaded & {"torch", "piq", "av", "pandas", "scipy"}


def test_unknown_ids_give_suggestions():
    with pytest.raises(BenchError, match="did you mean still-frame"):
        registry.methods.get("still-frme")
    assert registry.subjects.get("CNN").id == "cnn"  # case-insensitive


def test_select_metrics_by_family_variant_and_all():
    assert [s.variant for s in registry.select_metrics(["psnr"])] == ["psnr@frame-mean"]
    assert [s.variant for s in registry.select_metrics(["ms_ssim@rgb"])] == ["ms_ssim@rgb"]
    assert len(registry.select_metrics(None)) == len(registry.metrics.all())
    assert {s.id for s in registry.select_metrics(["lse"])} == {"lse_c", "lse_d"}
    with pytest.raises(BenchError, match="unknown metric"):
        registry.select_metrics(["nope"])


def test_entry_point_plugin_registers_method_metric_and_subject(plugin):
    assert registry.methods.get("echo").impl == "bench_testplugin.adapter:Echo"
    assert "mean_abs@test" in registry.metrics.all()
    assert registry.subjects.get("tiny").video_path
    listing = run_bench("list", "methods").stdout
    assert "echo" in listing and "ground-truth" in listing
    assert "mean_abs@test" in run_bench("list", "metrics").stdout


def test_duplicate_ids_are_an_error(plugin, monkeypatch):
    import bench_testplugin.spec as plugin_spec

    clash = MethodSpec(id="still-frame", impl="x:y", description="clash")
    monkeypatch.setattr(plugin_spec, "METHOD", clash)
    registry.methods.reset()
    with pytest.raises(BenchError, match="registered twice"):
        registry.methods.all()
