"""Reports: paper-style tables (snapshots), bootstrap intervals (known answers), regress/export, plots, leaderboard."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import media, stages
from bench.cli_reports import add_report_commands
from bench.contracts import BenchError
from bench.reports import leaderboard, paper, regress, stats, tables
from bench.store import ResultsStore

PSNR, LPIPS, LMD, NIQE = paper.PSNR, paper.LPIPS, paper.LMD, paper.NIQE
DIRECTION = {PSNR: True, LPIPS: False, LMD: False, NIQE: False, paper.LSE_D: False, paper.LSE_C: True}


def record(store: ResultsStore, method: str, per_frame: dict[str, np.ndarray], *, subject: str = "cnn", audio: str = "self",
           track: str = "head", config: dict | None = None, seed: int = 0, provenance: dict | None = None) -> str:
    """One run with the given per-frame values (aggregate = their NaN-skipping mean, as bench's frame metrics do)."""
    config = config or {}
    run_id = f"{method}-{subject}-{audio}-{track}-{seed}-{json.dumps(config, sort_keys=True)}"
    run = {"run_id": run_id, "method": method, "subject": subject, "audio": audio, "track": track, "seed": seed,
           "config": config, "config_hash": f"c{len(json.dumps(config))}", "n_frames": len(next(iter(per_frame.values()))),
           "provenance": provenance or {"git": {"commit": "abc123", "dirty": False}, "packages": {"numpy": np.__version__}}}
    results = []
    for variant, values in per_frame.items():
        values = np.asarray(values, dtype=float)
        finite = values[~np.isnan(values)]
        results.append({
            "variant": variant, "metric": variant.split("@")[0], "value": float(finite.mean()),
            "higher_is_better": DIRECTION[variant], "kind": "full-reference", "extras": {},
            "provenance": {"assets": {"weights": "0" * 64}, "git": {"commit": "abc123", "dirty": False}}, "per_frame": values,
        })
    store.record(run, results)
    return run_id


def ramp(mean: float, n: int = 60, spread: float = 0.5) -> np.ndarray:
    """Deterministic per-frame values with the given mean (a centred zig-zag)."""
    return mean + spread * np.where(np.arange(n) % 2 == 0, 1.0, -1.0) * (np.arange(n) % 5) / 4


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    """cnn, head track: ground truth, still-frame, video, and an ablation of video; one portrait run."""
    store = ResultsStore(tmp_path / "results.sqlite")
    record(store, "ground-truth", {PSNR: np.full(60, np.inf), LPIPS: np.zeros(60), LMD: np.zeros(60)})
    record(store, "still-frame", {PSNR: ramp(20.0), LPIPS: ramp(0.30, spread=0.02), LMD: ramp(4.0)})
    record(store, "video", {PSNR: ramp(20.05), LPIPS: ramp(0.20, spread=0.02), LMD: ramp(3.0)})
    record(store, "video", {PSNR: ramp(25.0), LPIPS: ramp(0.10, spread=0.02), LMD: ramp(3.5)}, config={"ablate": "mask"})
    record(store, "video", {PSNR: ramp(40.0)}, track="portrait")
    return store


NO_CI = tables.Uncertainty(enabled=False)


# ---------------------------------------------------------------------------------------------------
# Tables


TABLE4_MARKDOWN = """\
### Table 4: ablation on cnn, head track, self-driven (test split)

| source | method | PSNR ↑ | LPIPS ↓ | LMD ↓ |
|---|---|---:|---:|---:|
| measured | still-frame | 20.0000 | 0.3000 | 4.0000 |
| measured | video (ablate='mask') | **25.0000** | **0.1000** | <ins>3.5000</ins> |
| measured | video (ablate unset) | <ins>20.0500</ins> | <ins>0.2000</ins> | **3.0000** |
| ground truth | ground-truth | inf | 0.0000 | 0.0000 |
| paper | *full SyncTalk* | 37.3110 | 0.0121 | 2.8032 |
| paper | *audio-visual encoder replaced by HuBERT* | 33.5160 | 0.0276 | 3.3961 |
| paper | *facial animation capturer replaced by ER-NeRF's (AU45 blink)* | 30.2730 | 0.0415 | 3.0516 |
| paper | *without facial-aware masked attention* | 36.5360 | 0.0165 | 2.9139 |
| paper | *without head-sync stabilizer* | 28.9840 | 0.0634 | 3.5373 |
| paper | *without portrait-sync generator* | 32.2390 | 0.0395 | 2.8154 |

- columns: PSNR = psnr@frame-mean, LPIPS = lpips@alex-v0.1, LMD = lmd@fan-mouth20-centred-px
- ± is half the 95 % circular block-bootstrap interval over frames (blocks of 25 frames, fewer for short series); †: not significantly different from the column's best (paired block bootstrap, 95 %).
- paper rows: SyncTalk (Peng et al., CVPR 2024), subject May only; never ranked.
"""

TABLE4_LATEX = r"""\begin{table}[t]
\centering
\caption{Table 4: ablation on cnn, head track, self-driven (test split)}
\small
\begin{tabular}{llrrr}
\toprule
Source & Method & PSNR $\uparrow$ & LPIPS $\downarrow$ & LMD $\downarrow$ \\
\midrule
measured & still-frame & 20.0000 & 0.3000 & 4.0000 \\
measured & video (ablate='mask') & \textbf{25.0000} & \textbf{0.1000} & \underline{3.5000} \\
measured & video (ablate unset) & \underline{20.0500} & \underline{0.2000} & \textbf{3.0000} \\
\midrule
ground truth & ground-truth & inf & 0.0000 & 0.0000 \\
\midrule
paper & \textit{full SyncTalk} & 37.3110 & 0.0121 & 2.8032 \\
paper & \textit{audio-visual encoder replaced by HuBERT} & 33.5160 & 0.0276 & 3.3961 \\
paper & \textit{facial animation capturer replaced by ER-NeRF's (AU45 blink)} & 30.2730 & 0.0415 & 3.0516 \\
paper & \textit{without facial-aware masked attention} & 36.5360 & 0.0165 & 2.9139 \\
paper & \textit{without head-sync stabilizer} & 28.9840 & 0.0634 & 3.5373 \\
paper & \textit{without portrait-sync generator} & 32.2390 & 0.0395 & 2.8154 \\
\bottomrule
\end{tabular}
\par\footnotesize columns: PSNR = psnr@frame-mean, LPIPS = lpips@alex-v0.1, LMD = lmd@fan-mouth20-centred-px
\par\footnotesize $\pm$ is half the 95 \% circular block-bootstrap interval over frames (blocks of 25 frames, fewer for short series); $^\dagger$: not significantly different from the column's best (paired block bootstrap, 95 \%).
\par\footnotesize paper rows: SyncTalk (Peng et al., CVPR 2024), subject May only; never ranked.
\end{table}
"""


def test_table4_markdown_and_latex_snapshots(store):
    built = tables.table4(store, ["cnn"], "head", NO_CI)
    assert tables.as_markdown(built) == TABLE4_MARKDOWN
    assert tables.as_latex(built) == TABLE4_LATEX


TABLE1_MEASURED = """\
| source | method | PSNR ↑ | LPIPS ↓ | MS-SSIM ↑ | FID ↓ | NIQE ↓ | BRISQUE ↓ | LMD ↓ | AUE ↓ | LSE-C ↑ |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| measured | still-frame | <ins>20.0000 ± 0.1250 †</ins> | – | – | – | – | – | – | – | – |
| measured | video | **20.0500 ± 0.1250** | – | – | – | – | – | – | – | – |
| ground truth | ground-truth | inf | – | – | – | – | – | – | – | – |
| paper | *Wav2Lip* | 33.4385 | 0.0697 | 0.9781 | 16.0228 | 14.5367 | 44.2659 | 4.9630 | 2.9029 | 9.2387 |"""


def test_table1_intervals_paired_marks_and_reference_rows(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 0.25, 60)
    record(store, "ground-truth", {PSNR: np.full(60, np.inf)})
    record(store, "still-frame", {PSNR: 20.0 + noise - noise.mean()})
    record(store, "video", {PSNR: 20.05 + noise - noise.mean()})
    cells = {row.label: row.cells[PSNR] for row in tables.table1(store, ["cnn"], "head")[0].rows}
    # video's PSNR is still-frame's + 0.05 on every frame: a constant paired difference is significant, so no †.
    assert (cells["video"].rank, cells["still-frame"].rank) == (1, 2) and not cells["still-frame"].not_significant
    assert cells["video"].interval.low < 20.05 < cells["video"].interval.high

    # a difference that noise can explain: not significant, so the second value is marked †
    store2 = ResultsStore(tmp_path / "r2.sqlite")
    record(store2, "ground-truth", {PSNR: np.full(60, np.inf)})
    record(store2, "still-frame", {PSNR: 20.05 + rng.normal(0, 1.0, 60)})
    record(store2, "video", {PSNR: 20.0 + rng.normal(0, 1.0, 60)})
    rows = tables.table1(store2, ["cnn"], "head")[0].rows
    cells = {row.label: row.cells[PSNR] for row in rows}
    ranked = sorted(["still-frame", "video"], key=lambda m: cells[m].rank)
    assert cells[ranked[0]].rank == 1 and not cells[ranked[0]].not_significant
    assert cells[ranked[1]].rank == 2 and cells[ranked[1]].not_significant
    assert cells["ground-truth"].rank is None and cells["ground-truth"].interval is None  # inf: reference, no CI
    assert [r.source for r in rows].count("paper") == len(paper.rows("table1"))


def test_table1_snapshot_with_intervals(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    record(store, "ground-truth", {PSNR: np.full(60, np.inf)})
    record(store, "still-frame", {PSNR: ramp(20.0, spread=2.0)})
    record(store, "video", {PSNR: np.roll(ramp(20.05, spread=2.0), 3)})  # same frames, shifted: not significant
    markdown = tables.as_markdown(tables.table1(store, ["cnn"], "head"))
    assert TABLE1_MEASURED in markdown


def test_tracks_never_mixed_and_averages_need_every_subject(store):
    head = tables.table1(store, ["cnn"], "head", NO_CI)[0]
    portrait = tables.table1(store, ["cnn"], "portrait", NO_CI)[0]
    assert sorted(r.cells[PSNR].value for r in head.rows if r.source == "measured") == pytest.approx([20.0, 20.05, 25.0])
    measured = [r for r in portrait.rows if r.source == "measured"]
    assert [(r.label, r.cells[PSNR].value, r.cells[PSNR].rank) for r in measured] == [("video", 40.0, None)]

    record(store, "still-frame", {PSNR: ramp(22.0)}, subject="obama")
    built = tables.table1(store, None, "head", NO_CI)
    assert [t.title for t in built][-1].startswith("Table 1: average over cnn, obama")
    average = {r.label: r for r in built[-1].rows}
    assert average["still-frame"].cells[PSNR].value == pytest.approx(21.0)
    assert average["still-frame"].cells[LPIPS].value is None  # LPIPS only on cnn
    assert "still-frame: LPIPS, LMD missing on obama; not averaged" in built[-1].notes
    assert sum(note.endswith("no results on obama; not averaged") for note in built[-1].notes) == 3  # 2 video configs, GT


def test_table2_columns_per_audio_and_paper_reference(store):
    record(store, "still-frame", {paper.LSE_D: ramp(9.0), paper.LSE_C: ramp(2.0)}, audio="zozo")
    record(store, "video", {paper.LSE_D: ramp(8.0), paper.LSE_C: ramp(3.0)}, audio="zozo")
    record(store, "ground-truth", {paper.LSE_D: ramp(7.0), paper.LSE_C: ramp(6.0)})
    measured, reference = tables.table2(store, ["cnn"], "head", NO_CI)
    assert [c.key for c in measured.columns] == [f"self/{paper.LSE_D}", f"self/{paper.LSE_C}", f"zozo/{paper.LSE_D}", f"zozo/{paper.LSE_C}"]
    video = next(r for r in measured.rows if r.label == "video")
    assert video.cells[f"zozo/{paper.LSE_D}"].rank == 1 and video.cells[f"zozo/{paper.LSE_C}"].rank == 1
    assert [r.label for r in reference.rows][-1] == "SyncTalk" and reference.rows[-1].cells[f"A/{paper.LSE_D}"].value == 7.7211
    csv_text = tables.as_csv([measured])
    assert csv_text.splitlines()[0].split(",")[:5] == ["table", "source", "row", "column", "variant"]


def test_html_table_is_real_markup(store):
    page = leaderboard.tables_page(tables.table1(store, ["cnn"], "head", NO_CI))
    assert "<table" in page and '<th scope="col"' in page and '<th scope="row">' in page
    assert "<strong>25.0000</strong>" in page and "<u>20.0500</u>" in page


def test_unknown_subject_is_a_user_error(store):
    with pytest.raises(BenchError, match="no results for subject nobody"):
        tables.table1(store, ["nobody"])


# ---------------------------------------------------------------------------------------------------
# Bootstrap


def test_block_sums_match_direct_resampling():
    """The block-sum shortcut equals gathering the resampled frames one by one with the same draws."""
    values = np.random.default_rng(0).normal(size=53)
    block = 7
    fast = stats.circular_block_means(values, block, 50, np.random.default_rng(9))
    draws = np.random.default_rng(9).integers(0, values.size, size=(50, -(-values.size // block)))
    direct = [
        values[(np.add.outer(starts, np.arange(block)).ravel() % values.size)[: values.size]].mean() for starts in draws
    ]
    np.testing.assert_allclose(fast, direct, rtol=1e-12)


def test_interval_covers_true_mean_at_nominal_rate():
    """i.i.d. normal frames: the 95 % interval covers the true mean in about 95 % of 200 draws."""
    rng = np.random.default_rng(2024)
    covered = sum(
        (interval := stats.mean_interval(rng.normal(3.0, 2.0, 1000), seed=draw)).low <= 3.0 <= interval.high
        for draw in range(200)
    )
    assert interval.block == 25 and interval.frames == 1000
    assert 0.90 <= covered / 200 <= 0.99  # binomial sd at 0.95 over 200 draws is 0.015


def test_blocks_matter_for_correlated_frames():
    """AR(1) frames (phi 0.8): frame-wise resampling (blocks of 1) undercovers badly (about 50 %); blocks of 25 do
    not (about 90 %)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(7)
    series = lfilter([1.0], [1.0, -0.8], rng.normal(size=(100, 800)), axis=1)[:, 200:]
    block_hits = frame_hits = 0
    for draw, values in enumerate(series):
        for block, counter in ((25, "block"), (1, "frame")):
            means = stats.circular_block_means(values, block, 500, np.random.default_rng(draw))
            low, high = np.quantile(means, [0.025, 0.975])
            hit = low <= 0.0 <= high
            block_hits += hit and counter == "block"
            frame_hits += hit and counter == "frame"
    assert block_hits / 100 >= 0.80
    assert frame_hits / 100 <= 0.65


def test_paired_test_detects_shift_and_rarely_flags_noise():
    rng = np.random.default_rng(11)
    base = rng.normal(30, 2, 300)
    shifted = stats.paired_test(base + 0.05 + rng.normal(0, 0.01, 300), base)
    assert shifted.significant and shifted.p_value < 0.01 and shifted.difference.mean == pytest.approx(0.05, abs=0.01)
    false_positives = sum(stats.paired_test(rng.normal(0, 1, 300), rng.normal(0, 1, 300), resamples=1000, seed=i).significant for i in range(200))
    assert false_positives / 200 <= 0.12


def test_bootstrap_is_deterministic_and_skips_what_it_cannot_describe():
    values = np.random.default_rng(1).normal(size=120)
    assert stats.mean_interval(values, seed=5) == stats.mean_interval(values, seed=5)
    assert stats.mean_interval(values, seed=5) != stats.mean_interval(values, seed=6)
    assert stats.mean_interval(np.array([1.0, np.inf, 2.0])) is None
    with_nan = stats.mean_interval(np.array([1.0, np.nan, 3.0, 2.0, 2.0]))
    assert with_nan.frames == 4 and with_nan.mean == 2.0
    assert stats.block_length(1000) == 25 and stats.block_length(162) == 16 and stats.block_length(5) == 1
    assert stats.paired_test(np.arange(10.0), np.arange(8.0)).difference.frames == 8


# ---------------------------------------------------------------------------------------------------
# CLI: export and regress


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    add_report_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_regress_fails_on_regression_and_passes_on_improvement_or_tolerance(tmp_path, capsys):
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    record(store, "still-frame", {PSNR: ramp(20.0), LMD: ramp(4.0)})
    record(store, "ground-truth", {PSNR: np.full(60, np.inf)})
    baseline = tmp_path / "baseline.json"
    assert cli("export", "--store", str(path), "--out", str(baseline)) == 0
    document = json.loads(baseline.read_text())
    assert document["format"] == "bench-results" and len(document["results"]) == 3
    assert {r["value"] for r in document["results"] if r["method"] == "ground-truth"} == {"inf"}
    assert cli("regress", "--store", str(path), "--baseline", str(baseline)) == 0

    def with_value(variant: str, value: float) -> Path:
        edited = json.loads(baseline.read_text())
        for entry in edited["results"]:
            if entry["variant"] == variant and entry["method"] == "still-frame":
                entry["value"] = value
        out = tmp_path / f"edited-{variant}-{value}.json"
        out.write_text(json.dumps(edited))
        return out

    capsys.readouterr()
    # baseline PSNR 21 > current 20: current is worse (higher is better) -> regression
    assert cli("regress", "--store", str(path), "--baseline", str(with_value(PSNR, 21.0))) == 1
    report = capsys.readouterr().out
    assert report.startswith("## bench regress: FAIL") and "### Regressions (1)" in report and "-1.0000" in report
    # baseline LMD 3 < current 4: worse (lower is better) -> regression; baseline LMD 5: current better -> improvement
    assert cli("regress", "--store", str(path), "--baseline", str(with_value(LMD, 3.0))) == 1
    assert cli("regress", "--store", str(path), "--baseline", str(with_value(LMD, 5.0))) == 0
    assert "### Improvements (1)" in capsys.readouterr().out
    # within a tolerance from the TOML file: passes
    tolerances = tmp_path / "tol.toml"
    tolerances.write_text('default = { abs = 0.0 }\n[metrics]\npsnr = { abs = 1.5 }\n[variants]\n"lmd@fan-mouth20-centred-px" = { rel = 0.5 }\n')
    assert cli("regress", "--store", str(path), "--baseline", str(with_value(PSNR, 21.0)), "--tolerances", str(tolerances)) == 0
    assert cli("regress", "--store", str(path), "--baseline", str(with_value(LMD, 3.0)), "--tolerances", str(tolerances)) == 0
    capsys.readouterr()

    # new and missing results are listed; missing fails only on request
    edited = json.loads(baseline.read_text())
    edited["results"].append({**edited["results"][0], "method": "retired", "run_id": "x"})
    edited["results"] = [r for r in edited["results"] if not (r["method"] == "ground-truth")]
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(edited))
    report_file = tmp_path / "summary.md"
    assert cli("regress", "--store", str(path), "--baseline", str(changed), "--report", str(report_file)) == 0
    summary = report_file.read_text()
    assert "### Missing (in the baseline, not in the store) (1)" in summary and "retired" in summary
    assert "### New (in the store, not in the baseline) (1)" in summary
    assert cli("regress", "--store", str(path), "--baseline", str(changed), "--fail-on-missing") == 1


def test_regress_rules_for_unavailable_and_infinite_values():
    tolerance = regress.Tolerance(abs=0.1, rel=0.0)
    assert regress._classify(5.0, None, True, tolerance)[0] == regress.REGRESSION
    assert regress._classify(None, 5.0, True, tolerance)[0] == regress.IMPROVEMENT
    assert regress._classify(float("inf"), float("inf"), True, tolerance)[0] == regress.WITHIN
    assert regress._classify(float("inf"), 50.0, True, regress.Tolerance(abs=0.1, rel=0.5))[0] == regress.REGRESSION
    assert regress._classify(10.0, 10.05, False, tolerance)[0] == regress.WITHIN


def test_regress_user_errors(tmp_path, store):
    with pytest.raises(BenchError, match="baseline not found"):
        cli("regress", "--store", str(store.path), "--baseline", str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(BenchError, match="not a bench baseline"):
        cli("regress", "--store", str(store.path), "--baseline", str(bad))
    tolerances = tmp_path / "tol.toml"
    tolerances.write_text("[metrics]\npsnr = { absolute = 1 }\n")
    with pytest.raises(BenchError, match="metrics.psnr"):
        regress.Tolerances.load(tolerances)


def test_table_command_writes_each_format(store, tmp_path, capsys):
    for fmt in ("md", "latex", "csv", "html"):
        assert cli("table", "--store", str(store.path), "--subject", "cnn", "--format", fmt, "--layout", "table4", "--no-ci") == 0
    out = capsys.readouterr().out
    assert "### Table 4" in out and r"\begin{tabular}" in out and "table,source,row" in out and "<table" in out
    with pytest.raises(BenchError, match="no results store"):
        cli("table", "--store", str(tmp_path / "missing.sqlite"))


def test_report_commands_parse_without_heavy_imports():
    code = (
        "import argparse, sys; from bench.cli_reports import add_report_commands; p = argparse.ArgumentParser(); "
        "add_report_commands(p.add_subparsers()); "
        "heavy = [m for m in ('numpy', 'jinja2', 'matplotlib', 'torch', 'PIL') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------------
# Plots and leaderboard


def test_plot_writes_png_and_reproducible_svg(store, tmp_path, capsys):
    out = tmp_path / "plots"
    assert cli("plot", "--store", str(store.path), "--subject", "cnn", "--metric", "lmd", "--out", str(out)) == 0
    names = sorted(p.name for p in out.iterdir())
    stem = "cnn-head-self-lmd_fan-mouth20-centred-px"
    assert names == [f"{stem}-distribution.png", f"{stem}-distribution.svg", f"{stem}-frames.png", f"{stem}-frames.svg"]
    assert (out / f"{stem}-frames.png").read_bytes().startswith(b"\x89PNG")
    first = (out / f"{stem}-frames.svg").read_text()
    assert "ground-truth" in first and "video" in first
    cli("plot", "--store", str(store.path), "--subject", "cnn", "--metric", "lmd", "--out", str(out))
    assert (out / f"{stem}-frames.svg").read_text() == first
    with pytest.raises(BenchError, match="no per-frame values"):
        cli("plot", "--store", str(store.path), "--subject", "cnn", "--metric", "fid", "--out", str(out))


def add_render(method: str, frames: np.ndarray) -> dict:
    """A finished render stage holding ``frames``; returns run provenance pointing at it."""
    def produce(out: Path) -> None:
        media.write_frames(out / "frames", frames)

    folder, _ = stages.ensure("render", {"method": method}, produce)
    return {"stages": {"render": {"key": folder.name}}, "git": {"commit": "abc123", "dirty": False}}


def test_leaderboard_site(tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    gt_frames = np.zeros((60, 48, 64, 3), np.uint8)
    gt_frames[..., 0] = 200
    record(store, "ground-truth", {PSNR: np.full(60, np.inf), LMD: np.zeros(60)}, provenance=add_render("ground-truth", gt_frames))
    record(store, "still-frame", {PSNR: ramp(20.0), LMD: ramp(4.0)}, provenance=add_render("still-frame", gt_frames // 2))
    record(store, "video", {PSNR: ramp(22.0), LMD: ramp(3.0)})  # no frames on this machine
    record(store, "video", {PSNR: ramp(40.0)}, track="portrait")
    index = leaderboard.build(store, tmp_path / "site")
    page = index.read_text()
    # one ranking per subject/track/audio/family; tracks in separate sections
    assert page.count("<table") == 3
    assert "cnn</a>, head track, audio self" in page and "cnn</a>, portrait track, audio self" in page
    head = page[page.index("head track"):page.index("portrait track")]
    assert head.index(">video</a>") < head.index(">still-frame</a>") < head.index(">ground-truth</a>")
    # every linked number has a provenance entry on its method page
    site = tmp_path / "site"
    import re

    for href in set(re.findall(r'href="(methods/[^"#]+)#([^"]+)"', page)):
        method_page = (site / href[0]).read_text()
        assert f'id="{href[1]}"' in method_page
    method_page = (site / "methods" / "still-frame.html").read_text()
    assert "abc123" in method_page and "0" * 64 in method_page and "psnr@frame-mean" in method_page
    subject_page = (site / "subjects" / "cnn.html").read_text()
    assert "Table 1: cnn, head track" in subject_page and "Table 1: cnn, portrait track" in subject_page
    thumbnails = sorted(p.name for p in (site / "frames").iterdir())
    assert len(thumbnails) == 6 and all("video" not in name for name in thumbnails)  # GT and still-frame, 3 frames each
    assert 'alt="still-frame, test-split frame 0"' in subject_page
    assert len(list((site / "plots").glob("*.png"))) == 3  # psnr and lmd on head, psnr on portrait
