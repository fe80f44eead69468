"""The run pipeline on a synthetic subject: stage caching, result caching, resume after kill -9 and Ctrl-C,
concurrent writers, OOD audio, imported renders and bad input."""

import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import bench_command, make_video, run_bench

from bench import home, pipeline, registry, stages
from bench.contracts import BenchError, RunSpec, Track
from bench.store import ResultsStore


def _results(store_path):
    rows = ResultsStore(store_path).query()
    return {(r["method"], r["variant"]): r["value"] for r in rows}


def _assert_video_matches(result, spec):
    """The render's mp4 holds the scored frames (within H.264 error) and the driving audio (within AAC error)."""
    from bench import media
    from bench.datasets.prepare import driving_audio

    assert result.video is not None and result.video.name == "video.mp4"
    frames = np.stack(list(media.iter_video(result.video)))
    rendered = media.open_frames(result.video.parent / "frames")
    assert frames.shape == rendered.shape
    assert 10 * np.log10(255**2 / np.mean((frames.astype(float) - rendered) ** 2)) > 25  # noisy frames, yuv420p
    expected = driving_audio(pipeline.prepare_subject(spec.subject), spec.audio).samples()
    muxed = media.decode_audio(result.video)
    assert abs(len(muxed) - len(expected)) < 2048  # AAC pads to whole 1024-sample frames
    n = min(len(muxed), len(expected))
    assert np.corrcoef(muxed[:n], expected[:n])[0, 1] > 0.9


def _train_log(tmp_path, monkeypatch):
    log = tmp_path / "train.log"
    monkeypatch.setenv("BENCH_TEST_LOG", str(log))
    return log


def test_run_records_results_and_reuses_every_stage(plugin, tmp_path, monkeypatch):
    log = _train_log(tmp_path, monkeypatch)
    spec = RunSpec(method="echo", subject="tiny", metrics=("psnr", "mean_abs@test"))
    first = pipeline.run(spec, progress=False)
    assert first.n_frames == 5
    assert {o.spec.variant: o.cached for o in first.outcomes} == {"psnr@frame-mean": False, "mean_abs@test": False}
    psnr = next(o.value for o in first.outcomes if o.spec.variant == "psnr@frame-mean")
    assert 25 < psnr.aggregate < 40 and psnr.per_frame.shape == (5,)  # GT plus noise of sigma 8
    _assert_video_matches(first, spec)

    second = pipeline.run(spec, progress=False)
    assert second.run_id == first.run_id and all(o.cached for o in second.outcomes)
    assert log.read_text().count("train") == 1
    np.testing.assert_array_equal(
        next(o.value for o in second.outcomes if o.spec.variant == "psnr@frame-mean").per_frame, psnr.per_frame
    )

    store = ResultsStore(home.results_store_path())
    assert len(store.query(method="echo")) == 2
    run = store.query(method="echo")[0]
    provenance = run["provenance"]
    assert provenance["bench_version"] and "numpy" in provenance["packages"] and provenance["machine"]["cpus"]
    assert set(provenance["stages"]) == {"prepare", "train", "render"}
    assert run["result_provenance"]["evaluate_stage"]
    assert run["config"] == {"noise": 8} and len(run["config_hash"]) == 12


def test_changed_config_seed_or_metric_variant_make_new_results(plugin, tmp_path, monkeypatch):
    log = _train_log(tmp_path, monkeypatch)
    base = pipeline.run(RunSpec(method="echo", subject="tiny", metrics=("psnr",)), progress=False)
    other_seed = pipeline.run(RunSpec(method="echo", subject="tiny", metrics=("psnr",), seed=1), progress=False)
    other_config = pipeline.run(
        RunSpec(method="echo", subject="tiny", metrics=("psnr",), config={"noise": 2}), progress=False
    )
    assert len({base.run_id, other_seed.run_id, other_config.run_id}) == 3
    assert log.read_text().count("train") == 3
    more = pipeline.run(RunSpec(method="echo", subject="tiny", metrics=("psnr", "ms_ssim@rgb")), progress=False)
    assert more.run_id == base.run_id
    assert {o.spec.variant: o.cached for o in more.outcomes} == {"psnr@frame-mean": True, "ms_ssim@rgb": False}
    assert len(ResultsStore(home.results_store_path()).query()) == 4
    with_options = pipeline.run(
        RunSpec(method="echo", subject="tiny", metrics=("psnr",), metric_options={"x": 1}), progress=False
    )
    assert with_options.run_id != base.run_id and not with_options.outcomes[0].cached
    assert log.read_text().count("train") == 3  # same renders, new scores
    option_file = tmp_path / "pred.csv"
    option_file.write_text("a")
    by_file = RunSpec(method="echo", subject="tiny", metrics=("psnr",), metric_options={"csv": str(option_file)})
    first_id = pipeline.run(by_file, progress=False).run_id
    option_file.write_text("b")  # same path, new content: new scores
    assert pipeline.run(by_file, progress=False).run_id != first_id


def test_results_are_never_overwritten(plugin, tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    run = {"run_id": "r1", "method": "m", "subject": "s", "audio": "self", "track": "head", "seed": 0,
           "config": {}, "config_hash": "h", "n_frames": 2, "provenance": {}}
    result = {"variant": "v@1", "metric": "v", "value": 1.0, "higher_is_better": True, "kind": "no-reference",
              "extras": {}, "provenance": {}, "per_frame": [1.0, 1.0]}
    assert store.record(run, [result]) == ["v@1"]
    assert store.record(run, [{**result, "value": 2.0}]) == []
    assert store.result("r1", "v@1")["value"] == 1.0


def test_ood_audio_skips_full_reference_metrics(plugin, mirror):
    result = pipeline.run(RunSpec(method="echo", subject="tiny", audio="zozo", metrics=("psnr", "mean_abs")), progress=False)
    by_variant = {o.spec.variant: o for o in result.outcomes}
    assert "ground-truth" in by_variant["psnr@frame-mean"].unavailable
    assert by_variant["mean_abs@test"].value is not None
    assert result.n_frames == 272  # zozo.wav: 174,088 samples at 16 kHz, 640 per frame
    _assert_video_matches(result, result.spec)


def test_capabilities_are_enforced(plugin, mirror, tmp_path, monkeypatch):
    with pytest.raises(BenchError, match="cannot be driven by OOD audio"):
        pipeline.run(RunSpec(method="ground-truth", subject="tiny", audio="zozo"), progress=False)
    log = tmp_path / "train.log"
    monkeypatch.setenv("BENCH_TEST_LOG", str(log))
    with pytest.raises(BenchError, match="unknown audio 'zozzo'"):
        pipeline.run(RunSpec(method="echo", subject="tiny", audio="zozzo"), progress=False)
    assert not log.exists()  # refused before any training
    with pytest.raises(BenchError, match="no portrait track"):
        pipeline.run(RunSpec(method="echo", subject="tiny", track=Track.PORTRAIT), progress=False)


def test_imported_video_is_scored_and_keyed_by_its_content(plugin, tmp_path, tiny_video):
    renders = make_video(tmp_path / "renders.mp4", n_frames=7)  # longer than the 5 test frames
    spec = RunSpec(method="video", subject="tiny", config={"renders": str(renders)}, metrics=("psnr",))
    result = pipeline.run(spec, progress=False)
    assert result.n_frames == 5
    stored = ResultsStore(home.results_store_path()).result(result.run_id, "psnr@frame-mean")
    assert stored["extras"]["alignment"] == {
        "pred_frames": 7, "gt_frames": 5, "scored_frames": 5, "rule": "truncated to the shorter sequence"
    }
    make_video(renders, n_frames=9)  # same path, new content: a new run
    assert pipeline.run(spec, progress=False).run_id != result.run_id


def test_missing_renders_and_unknown_subject_are_clear_errors(plugin, tmp_path):
    with pytest.raises(BenchError, match="no such file"):
        pipeline.run(RunSpec(method="video", subject="tiny", config={"renders": str(tmp_path / "x.mp4")}))
    with pytest.raises(BenchError, match="needs the rendered frames"):
        pipeline.run(RunSpec(method="video", subject="tiny"), progress=False)
    with pytest.raises(BenchError, match="has no video at .*May.mp4"):
        pipeline.run(RunSpec(method="still-frame", subject="May"), progress=False)


def _wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def _render_in_progress():
    render_dir = home.stages_dir() / "render"
    return render_dir.is_dir() and any(p.name.endswith(".partial") for p in render_dir.iterdir())


@pytest.mark.parametrize("interrupt", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_from_the_last_finished_stage(plugin, tmp_path, monkeypatch, interrupt):
    log = _train_log(tmp_path, monkeypatch)
    args = ("run", "--method", "echo", "--subject", "tiny", "--metrics", "psnr,mean_abs", "--no-progress")
    process = subprocess.Popen(
        bench_command(*args), env={**os.environ, "BENCH_TEST_RENDER_DELAY": "0.5"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for(_render_in_progress)
    process.send_signal(interrupt)
    _, stderr = process.communicate(timeout=60)
    if interrupt == signal.SIGINT:
        assert process.returncode == 130 and "resume" in stderr
        assert not _render_in_progress()  # cleaned up on Ctrl-C
    else:
        assert process.returncode == -signal.SIGKILL
    assert not any((home.stages_dir() / "render").glob("*/stage.json"))
    assert not ResultsStore(home.results_store_path()).query()

    run_bench(*args)  # resumes: the finished train stage is reused, a kill -9 leftover is cleaned
    assert log.read_text().count("train") == 1
    assert not _render_in_progress()
    resumed = _results(home.results_store_path())

    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "clean_home"))
    run_bench(*args)
    assert _results(home.results_store_path()) == resumed


def _record_many(store_path, worker, count):
    store = ResultsStore(store_path)
    for i in range(count):
        run = {"run_id": f"w{worker}-{i}", "method": f"m{worker}", "subject": "s", "audio": "self", "track": "head",
               "seed": 0, "config": {}, "config_hash": "h", "n_frames": 50, "provenance": {}}
        store.record(run, [{"variant": "v@1", "metric": "v", "value": float(i), "higher_is_better": True,
                            "kind": "no-reference", "extras": {}, "provenance": {}, "per_frame": np.arange(50.0)}])


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"  # not created beforehand: the workers race to create it
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_record_many, args=(path, w, 40)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    rows = ResultsStore(path).query()
    assert len(rows) == 120
    assert all(len(ResultsStore(path).frame_values(r["run_id"], "v@1")) == 50 for r in rows[:5])


def test_two_concurrent_bench_runs_on_one_store(plugin, tmp_path):
    store = tmp_path / "store.sqlite"
    runs = [
        subprocess.Popen(
            bench_command("run", "--method", method, "--subject", "tiny", "--metrics", "psnr", "--no-progress",
                          "--store", str(store)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for method in ("echo", "still-frame")
    ]
    for process in runs:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    assert set(_results(store)) == {("echo", "psnr@frame-mean"), ("still-frame", "psnr@frame-mean")}
    assert len(list((home.stages_dir() / "prepare").glob("*/stage.json"))) == 1


def test_stage_cache_reuses_and_never_exposes_partial_output(tmp_path):
    calls = []

    def produce(out):
        calls.append(out)
        (out / "data.txt").write_text("done")
        return {"n": 1}

    folder, reused = stages.ensure("demo", {"a": 1}, produce)
    assert not reused and (folder / "data.txt").read_text() == "done"
    assert stages.ensure("demo", {"a": 1}, produce) == (folder, True)
    assert len(calls) == 1 and stages.record("demo", folder.name)["outputs"] == {"n": 1}

    def fail(out):
        (out / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        stages.ensure("demo", {"a": 2}, fail)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_results_cli_formats(plugin):
    run_bench("run", "--method", "echo", "--subject", "tiny", "--metrics", "psnr,ms_ssim@rgb", "--no-progress")
    table = run_bench("results", "--subject", "tiny").stdout
    assert "psnr@frame-mean ↑" in table and "echo" in table
    csv_lines = run_bench("results", "--format", "csv").stdout.splitlines()
    assert csv_lines[0].startswith("subject,method,audio,track") and len(csv_lines) == 3
    rows = json.loads(run_bench("results", "--format", "json").stdout)
    assert {r["variant"] for r in rows} == {"psnr@frame-mean", "ms_ssim@rgb"}
    assert all(r["run_provenance"]["packages"]["numpy"] for r in rows)


def test_ground_truth_reference_row_for_no_reference_metrics(plugin, mirror, monkeypatch):
    result = pipeline.run(RunSpec(method="echo", subject="tiny", audio="zozo", metrics=("mean_abs",)), progress=False)
    assert result.reference is not None and result.reference.spec.method == "ground-truth"
    reference = result.reference.outcomes[0]
    assert reference.spec.variant == "mean_abs@test" and reference.value.per_frame.shape == (5,)
    rows = {(r["method"], r["audio"]) for r in ResultsStore(home.results_store_path()).query(subject="tiny")}
    assert rows == {("echo", "zozo"), ("ground-truth", "self")}
    full_reference_only = pipeline.run(RunSpec(method="echo", subject="tiny", metrics=("psnr",)), progress=False)
    assert full_reference_only.reference is None

    # a full-reference metric that scores the ground truth itself (FID's self-split) gets the reference row too
    specs = registry.metrics.all()
    monkeypatch.setitem(specs, "psnr@frame-mean", dataclasses.replace(specs["psnr@frame-mean"], ground_truth_row=True))
    with_row = pipeline.run(RunSpec(method="echo", subject="tiny", metrics=("psnr",), seed=1), progress=False)
    assert with_row.reference is not None and with_row.reference.outcomes[0].spec.variant == "psnr@frame-mean"
