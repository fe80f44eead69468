"""Repository conventions: CI runs the README's test command, and the package maps the top-level folders."""

import re
import subprocess
import sys
import zipfile

from conftest import REPO


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```\n(.+?)\n```", setup)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2 and "bench demo" in commands[0] and "pytest" in commands[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci_lines


def test_wheel_maps_top_level_folders_into_bench(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("bench-*.whl"))).namelist()
    top_level = {name.split("/")[0] for name in names if not name.startswith("bench-")}
    assert top_level == {"bench"}
    for expected in ("bench/methods/reference/spec.py", "bench/metrics/psnr.py", "bench/datasets/catalog.py",
                     "bench/reports/results.py", "bench/asset_catalog/media.toml"):
        assert expected in names
