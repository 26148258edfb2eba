"""Outputs never lose or corrupt the user's files: ownership marker, atomic rename, clean failure."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from lstmviz_cli import output
from lstmviz_cli.errors import OutputError
from lstmviz_cli.output import GENERATOR_MARKER, is_lstmviz_output, write_atomic


def _html(body: str) -> str:
    return f'<html><head><meta name="generator" content="{GENERATOR_MARKER} 0.1"></head>{body}</html>'


def test_write_then_overwrite_own_file(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_atomic(target, _html("one"))
    assert is_lstmviz_output(target)
    write_atomic(target, _html("two"))
    assert "two" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_refuses_to_overwrite_foreign_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.html"
    target.write_text("my precious notes")
    with pytest.raises(OutputError, match="not written by lstmviz.*--force"):
        write_atomic(target, _html("x"))
    assert target.read_text() == "my precious notes"
    write_atomic(target, _html("x"), force=True)
    assert "x" in target.read_text()


def test_npz_written_by_lstmviz_is_recognised(tmp_path: Path) -> None:
    target = tmp_path / "trace.npz"
    with open(target, "wb") as handle:
        np.savez_compressed(handle, __summary__=np.array("{}"), x=np.zeros(3))
    assert is_lstmviz_output(target)
    other = tmp_path / "other.npz"
    with open(other, "wb") as handle:
        np.savez_compressed(handle, x=np.zeros(3))
    assert not is_lstmviz_output(other)


def test_directory_and_missing_parent_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        write_atomic(tmp_path, "x")
    with pytest.raises(OutputError, match="does not exist"):
        write_atomic(tmp_path / "nope" / "r.html", "x")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        write_atomic(tmp_path / "file.txt" / "r.html", "x")


def test_full_disk_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    write_atomic(target, _html("old"))

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.os, "fsync", no_space)
    with pytest.raises(OutputError, match="no space left"):
        write_atomic(target, _html("new"))
    assert "old" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_interrupt_during_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "trace.npz"
    write_atomic(target, _html("old"))

    def interrupted(tmp: Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, interrupted)
    assert "old" in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.npz"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_atomic(locked / "r.html", "x")
    finally:
        locked.chmod(0o700)


# -- the one JSON writer --------------------------------------------------------------------------------
def test_json_text_is_one_deterministic_encoding() -> None:
    document = {"b": [1.5, float("nan"), {"z": float("inf"), "a": (float("-inf"), 2)}], "a": None, "c": "é"}
    text = output.json_text(document)
    assert text == (
        '{\n  "generator": "lstmviz-generated",\n  "a": null,\n  "b": [\n    1.5,\n    null,\n    {\n      "a": [\n'
        '        null,\n        2\n      ],\n      "z": null\n    }\n  ],\n  "c": "\\u00e9"\n}\n'
    )
    # Rounding is the schema's, through one function: 6 significant digits, null for what is no number.
    assert output.json_number(0.123456789) == 0.123457 and output.json_number(123456789.0) == 123457000.0
    assert output.json_number(float("nan")) is None and output.json_number(None) is None
    assert output.json_text({"x": 0.1 + 0.2}) == '{\n  "generator": "lstmviz-generated",\n  "x": 0.30000000000000004\n}\n'


def test_every_json_file_is_written_by_write_json() -> None:
    """`json.dump(s)` appears only in output.json_text: report, trace, check, diff and the figures manifest
    cannot drift apart (one used to write NaN, another omitted allow_nan). The npz's embedded summary
    string is the tracer's (`Trace.save_npz`), not a JSON file."""
    import ast

    package = Path(output.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("dump", "dumps") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "json"):
                found.append(str(path.relative_to(package)))
    assert sorted(found) == ["output.py", "tracing/records.py"]


SAMPLE_MODEL = Path(__file__).resolve().parents[1] / "sample_models" / "digitsum.pt"


@pytest.mark.parametrize("args, message", [
    (["check", "M", "--json", "out.json", "--junit", "./out.json"], "--json and --junit both name 'out.json'"),
    (["check", "M", "--markdown", "s.md", "--report", "s.md"], "--markdown and --report both name 's.md'"),
    (["check", "M", "--baseline", "base.json", "--json", "base.json"],
     "--json names 'base.json', the baseline this run reads; write it to another file"),
    (["check", "M", "M", "--baseline", "base.json", "--junit", "base.json"], "--junit names 'base.json', the baseline"),
    (["report", "M", "-o", "r.json", "--json", "r.json"], "-o and --json both name 'r.json'"),
    (["trace", "M", "-o", "t.npz", "--json", "t.npz"], "-o and --json both name 't.npz'"),
    (["diff", "M", "M", "-o", "d.html", "--json", "d.html"], "-o and --json both name 'd.html'"),
])
def test_two_outputs_or_an_output_over_the_baseline_are_refused_before_anything_runs(
        args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from lstmviz_cli.cli import main

    monkeypatch.chdir(tmp_path)
    baseline = tmp_path / "base.json"
    baseline.write_text('{"generator": "lstmviz-generated", "schema": 2}')  # an earlier check's file
    assert main([str(SAMPLE_MODEL) if word == "M" else word for word in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"lstmviz: error: {message}" or err.startswith(f"lstmviz: error: {message}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.json"]
    assert baseline.read_text() == '{"generator": "lstmviz-generated", "schema": 2}'


def test_a_large_json_output_is_recognised_as_lstmviz_s_own(tmp_path: Path) -> None:
    """A report's JSON holds megabytes under keys that sort before "generator" (ablations, attributions):
    the marker must still be within the bytes the ownership check reads, so a second run may replace it."""
    import json

    target = tmp_path / "summary.json"
    document = {"ablations": [{"step_loss_change": [0.123456] * 20_000}], "zeta": 1}
    output.write_json(target, document, force=False)
    assert is_lstmviz_output(target)
    output.write_json(target, document, force=False)  # refused before: 'not written by lstmviz'
    assert json.loads(target.read_text()) == {"generator": GENERATOR_MARKER, **document}
    assert output.json_text({}) == '{\n  "generator": "lstmviz-generated"\n}\n'
