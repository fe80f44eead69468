"""The preparation orchestrator: order, reuse, options, force, failures (with small fake steps)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from bench.contracts import BenchError
from bench.datasets.preprocess.core import Step, SubjectSource, closure, parse_step_options, run_steps

CALLS: list[str] = []


def _write(ctx) -> dict:
    CALLS.append(ctx.step.name)
    if ctx.options.get("fail"):
        raise BenchError(f"step {ctx.step.name} failed on purpose")
    upstream = {name: (ctx.folder(name) / "value.txt").read_text() for name in ctx.step.depends}
    value = f"{ctx.step.name}({ctx.options.get('level', 0)};{','.join(sorted(upstream.values()))})"
    (ctx.out / "value.txt").write_text(value)
    return {"value": value}


@pytest.fixture
def fake_steps(monkeypatch):
    module = types.ModuleType("fake_prep_steps")
    module.write = _write
    monkeypatch.setitem(sys.modules, "fake_prep_steps", module)
    CALLS.clear()

    def step(name: str, *depends: str) -> Step:
        return Step(name, "1", depends, "fake_prep_steps:write", name, {"level": 0, "fail": False})

    return {s.name: s for s in (step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"))}


SOURCE = SubjectSource("subject", video=None, sha256="f" * 64)  # type: ignore[arg-type]


def test_closure_orders_dependencies_first_and_rejects_unknown_steps(fake_steps):
    assert closure(fake_steps, ["d"]) == ["a", "b", "c", "d"]
    assert closure(fake_steps, ["c"]) == ["a", "c"]
    with pytest.raises(BenchError, match="unknown preparation step 'x'"):
        closure(fake_steps, ["x"])


def test_finished_steps_are_reused_and_options_redo_only_dependants(fake_steps):
    first = run_steps(SOURCE, fake_steps, ["d"], progress=False)
    assert CALLS == ["a", "b", "c", "d"] and not any(o.reused for o in first.values())
    CALLS.clear()
    again = run_steps(SOURCE, fake_steps, ["d"], progress=False)
    assert CALLS == [] and all(o.reused for o in again.values())
    changed = run_steps(SOURCE, fake_steps, ["d"], options={"b": {"level": 2}}, progress=False)
    assert CALLS == ["b", "d"]
    assert changed["d"].summary["value"] == "d(0;b(2;a(0;)),c(0;a(0;)))"
    assert changed["a"].folder == first["a"].folder and changed["b"].folder != first["b"].folder


def test_force_redoes_the_step_and_its_dependants_in_place(fake_steps):
    first = run_steps(SOURCE, fake_steps, ["d"], progress=False)
    CALLS.clear()
    forced = run_steps(SOURCE, fake_steps, ["d"], force=["b"], progress=False)
    assert CALLS == ["b", "d"]
    assert forced["b"].folder == first["b"].folder and not forced["b"].reused
    CALLS.clear()
    run_steps(SOURCE, fake_steps, ["b"], force=["b"], progress=False)
    assert CALLS == ["b", "d"], "forcing b alone must also redo d, which reads it"


def test_a_failing_step_keeps_finished_steps_and_leaves_no_partial_folder(fake_steps, bench_home):
    with pytest.raises(BenchError, match="failed on purpose"):
        run_steps(SOURCE, fake_steps, ["d"], options={"c": {"fail": True}}, progress=False)
    assert CALLS == ["a", "b", "c"]
    assert not list(bench_home.glob("stages/prep-c/*")), "a failed step must leave nothing behind"
    CALLS.clear()
    run_steps(SOURCE, fake_steps, ["d"], progress=False)
    assert CALLS == ["c", "d"], "a and b were kept"


def test_unknown_options_and_bad_option_syntax_are_clear_errors(fake_steps):
    with pytest.raises(BenchError, match="step 'a' has no option 'colour'"):
        run_steps(SOURCE, fake_steps, ["a"], options={"a": {"colour": 1}}, progress=False)
    with pytest.raises(BenchError, match="unknown preparation step 'z'"):
        run_steps(SOURCE, fake_steps, ["a"], options={"z": {"level": 1}}, progress=False)
    assert parse_step_options(["a.level=3", "b.name=dlib"]) == {"a": {"level": 3}, "b": {"name": "dlib"}}
    with pytest.raises(BenchError, match="STEP.OPTION=VALUE"):
        parse_step_options(["level=3"])


def test_a_step_reading_an_undeclared_step_fails_loudly(fake_steps, monkeypatch):
    def sneaky(ctx):
        return {"peek": json.dumps(ctx.summary("c"))}

    sys.modules["fake_prep_steps"].sneaky = sneaky
    steps = {**fake_steps, "e": Step("e", "1", ("b",), "fake_prep_steps:sneaky", "e")}
    with pytest.raises(KeyError, match="does not declare it"):
        run_steps(SOURCE, steps, ["e"], progress=False)


def test_every_real_step_is_light_to_list_and_declares_known_dependencies():
    import subprocess

    code = (
        "import sys; from bench.datasets.preprocess import steps; s = steps(); "
        "print(sorted(m for m in ('torch', 'cv2', 'mediapipe', 'dlib', 'scipy') if m in sys.modules)); "
        "print(all(d in s for step in s.values() for d in step.depends))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]", f"listing the steps imported heavy modules: {out[0]}"
    assert out[1] == "True"


def test_the_prepared_record_drops_results_made_from_a_step_that_changed(fake_steps, bench_home, monkeypatch):
    from bench.datasets.preprocess import prepared

    monkeypatch.setattr(prepared.preprocess, "steps", lambda: fake_steps)
    monkeypatch.setattr(prepared, "resolve_source", lambda target, name=None: SOURCE)
    first = prepared.prepare("subject", progress=False)
    assert set(first.folders) == {"a", "b", "c", "d"}
    redone = prepared.prepare("subject", steps=["b"], options={"b": {"level": 2}}, progress=False)
    record = prepared.open_prepared("subject")
    # a and c are still valid; d was made from the old b, so the record must not pair it with the new one
    assert set(redone.folders) == set(record.folders) == {"a", "b", "c"}
    assert record.folders["c"] == first.folders["c"] and record.folders["b"] != first.folders["b"]


def test_an_option_naming_a_file_counts_by_the_files_content(fake_steps, tmp_path):
    table = tmp_path / "au.csv"
    table.write_text("first")
    first = run_steps(SOURCE, fake_steps, ["b"], options={"b": {"level": str(table)}}, progress=False)
    CALLS.clear()
    run_steps(SOURCE, fake_steps, ["b"], options={"b": {"level": str(table)}}, progress=False)
    assert CALLS == []
    table.write_text("second")  # same path, new content: b is redone, a is not
    again = run_steps(SOURCE, fake_steps, ["b"], options={"b": {"level": str(table)}}, progress=False)
    assert CALLS == ["b"] and again["b"].folder != first["b"].folder
