"""The leaderboard in a real browser (Debian chromium via playwright): opened from file://, no console errors, no
network, sortable columns, a screenshot kept for a person to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import _unavailable

from bench.reports import leaderboard, paper
from bench.store import ResultsStore

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]



@pytest.fixture(autouse=True)
def _chromium() -> None:
    """Debian's chromium; .ci/run installs it, so in CI its absence is a failure, elsewhere a skip."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} not found: `apt-get install chromium` to run the browser test")


def _record(store: ResultsStore, method: str, psnr: float, lmd: float) -> None:
    frames = np.arange(60)
    run = {"run_id": method, "method": method, "subject": "cnn", "audio": "self", "track": "head", "seed": 0,
           "config": {}, "config_hash": "c0", "n_frames": 60, "provenance": {"git": {"commit": "abc123", "dirty": False}}}
    results = [
        {"variant": variant, "metric": variant.split("@")[0], "value": float(per_frame.mean()), "higher_is_better": higher,
         "kind": "full-reference", "extras": {}, "provenance": {}, "per_frame": per_frame}
        for variant, higher, per_frame in (
            (paper.PSNR, True, psnr + np.sin(frames / 5)), (paper.LMD, False, lmd + 0.2 * np.cos(frames / 7)),
        )
    ]
    store.record(run, results)


def test_leaderboard_in_chromium(tmp_path):
    from playwright import sync_api
    store = ResultsStore(tmp_path / "results.sqlite")
    for method, psnr, lmd in (("still-frame", 20.0, 4.0), ("video", 24.0, 3.0), ("synctalk", 30.0, 3.5)):
        _record(store, method, psnr, lmd)
    index = leaderboard.build(store, tmp_path / "site")

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors, requests = [], []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(index.as_uri())
        table = page.locator("table", has=page.locator("caption", has_text="PSNR"))

        def methods() -> list[str]:
            return table.locator("tbody.ranked th[scope=row]").all_inner_texts()

        assert methods() == ["synctalk", "video", "still-frame"]  # built best first
        table.get_by_role("button", name="PSNR ↑").click()
        assert methods() == ["still-frame", "video", "synctalk"]  # ascending
        assert table.locator("th[aria-sort=ascending]").count() == 1
        table.get_by_role("button", name="PSNR ↑").click()
        assert methods() == ["synctalk", "video", "still-frame"]  # descending
        page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)

        page.goto((tmp_path / "site" / "subjects" / "cnn.html").as_uri())
        page.locator("tbody.ranked a[href*='methods/synctalk.html#r-']").first.click()
        assert page.url.startswith((tmp_path / "site" / "methods" / "synctalk.html").as_uri() + "#r-")
        page.screenshot(path=str(tmp_path / "method.png"), full_page=True)
        browser.close()

    assert errors == []
    assert [url for url in requests if not url.startswith("file://")] == []
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000
