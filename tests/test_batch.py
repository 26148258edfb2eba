"""Batch runs: checkpoint patterns, the process pool, failures that do not stop the rest, index.html."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from batch_jobs import load_one, square_or_fail
from conftest import HOSTILE, make_run, numpy_trace
from conftest_papers import sample

from lstmviz_cli.cli import main
from lstmviz_cli.commands import many, pipeline
from lstmviz_cli.errors import EXIT_SOME_FAILED, InputError
from lstmviz_cli.page.index import ReportSummary, build_index_page
from lstmviz_cli.render.html import render_html


def test_expand_checkpoints_globs_order_and_duplicates(tmp_path: Path) -> None:
    for name in ("b.pt", "a.pt", "c.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    found = many.expand_checkpoints([str(tmp_path / "*.pt"), str(tmp_path / "a.pt"), str(tmp_path / "c.safetensors")])
    assert [p.name for p in found] == ["a.pt", "b.pt", "c.safetensors"]
    assert many.expand_checkpoints([str(tmp_path / "missing.pt")]) == [tmp_path / "missing.pt"]  # the loader says why
    with pytest.raises(InputError, match=r"no checkpoint matches '.*\*\.ckpt'"):
        many.expand_checkpoints([str(tmp_path / "*.ckpt")])


def test_unique_stems() -> None:
    paths = [Path("a/model.pt"), Path("b/model.pt"), Path("c/other model.safetensors")]
    assert many.unique_stems(paths) == ["model", "model-2", "other-model"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_many_keeps_order_and_reports_failures(jobs: int) -> None:
    paths = [Path(f"{n}.pt") for n in ("3", "bad", "5", "bug", "7")]
    results = many.run_many(square_or_fail, paths, [(2,)] * len(paths), jobs=jobs, show_progress=False)
    assert [r.checkpoint for r in results] == paths
    assert [r.value for r in results] == [18, None, 50, None, 98]
    assert results[1].error == "'bad.pt' is broken"
    assert results[3].error == "internal error: ZeroDivisionError: division by zero"
    with pytest.raises(InputError, match="--jobs 0 must be at least 1"):
        many.run_many(square_or_fail, paths, [(2,)] * len(paths), jobs=0)


def test_index_links_each_report_with_a_summary_row_and_escapes_names() -> None:
    rows = [
        ReportSummary(name="charlm.pt", file="charlm.html", format="dict-checkpoint", n_params=131124,
                      layers=["lstm/l0/fwd", "lstm/l1/fwd"], verify_error=7.6e-6, findings={"info": 5, "warning": 1}),
        ReportSummary(name=HOSTILE + ".pt", file=None, error="cannot read <b>it</b>"),
    ]
    page = render_html(build_index_page(rows, title="epochs"))
    assert '<a href="charlm.html">charlm.pt</a>' in page
    assert "131,124" in page and "7.6e-06" in page and "1 warning" in page
    assert "1 failed" in page and "failed: cannot read &lt;b&gt;it&lt;/b&gt;" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page
    assert not re.search(r'(?:src|href)="(?:https?:|//|file:)', page)
    assert 'name="generator" content="lstmviz-generated lstmviz ' in page


def test_batch_report_goes_on_after_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runs = {
        "one.pt": make_run(numpy_trace("LSTM", hidden_size=4, steps=8), name="one.pt"),
        "two.pt": make_run(numpy_trace("GRU", hidden_size=4, steps=8, module="gru"), name="two.pt"),
        "index.pt": make_run(numpy_trace("LSTM", hidden_size=3, steps=5), name="index.pt"),
    }

    def load(options, **_kwargs):  # noqa: ANN001, ANN003, ANN202
        name = Path(options.checkpoint).name
        if name not in runs:
            raise InputError(f"{name!r} holds no recurrent layer")
        return runs[name]

    monkeypatch.setattr(pipeline, "load_and_trace", load)
    for name in ("one.pt", "two.pt", "zero.pt", "index.pt"):
        (tmp_path / name).write_bytes(b"x")
    out = tmp_path / "reports"
    assert main(["report", str(tmp_path / "*.pt"), "--out-dir", str(out)]) == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    assert "wrote 3 reports" in captured.out
    assert captured.err.splitlines() == ["lstmviz: error: 'zero.pt' holds no recurrent layer"]  # named once
    assert sorted(p.name for p in out.iterdir()) == ["index-report.html", "index.html", "one.html", "two.html"]
    index = (out / "index.html").read_text()
    assert index.index("one.pt") < index.index("two.pt") < index.index("zero.pt")
    assert '<a href="one.html">' in index and '<a href="two.html">' in index
    assert "lstm/l0/fwd" in index and "gru/l0/fwd" in index
    assert "two.pt" in (out / "two.html").read_text() and "gru/l0/fwd" in (out / "two.html").read_text()


def test_one_checkpoint_with_out_dir_is_no_batch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Its failure exits with its own code and one line, as `lstmviz report one.pt` would; no index is written."""
    def load(options, **_kwargs):  # noqa: ANN001, ANN003, ANN202
        raise InputError(f"{Path(options.checkpoint).name!r} holds no recurrent layer")

    monkeypatch.setattr(pipeline, "load_and_trace", load)
    (tmp_path / "zero.pt").write_bytes(b"x")
    out = tmp_path / "reports"
    assert main(["report", str(tmp_path / "zero.pt"), "--out-dir", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["lstmviz: error: 'zero.pt' holds no recurrent layer"] and captured.out == ""
    assert not (out / "index.html").exists()
    with pytest.raises(InputError, match="'zero.pt' holds no recurrent layer"):  # run_many does not swallow it
        many.run_many(load_one, [tmp_path / "zero.pt"], [()], show_progress=False)


def test_a_failure_line_names_its_checkpoint_once() -> None:
    assert many.naming("a.pt", "'a.pt' holds a dict") == "'a.pt' holds a dict"
    assert many.naming("a.pt", "'ckpts/a.pt' is not a checkpoint") == "'ckpts/a.pt' is not a checkpoint"
    assert many.naming("a.pt", "sample.npy: 3 features") == "a.pt: sample.npy: 3 features"
    assert many.naming("a.pt", "'data.pt' is an input") == "a.pt: 'data.pt' is an input"  # another file
    assert many.naming("it's.pt", "\"it's.pt\" is broken") == "\"it's.pt\" is broken"


def test_batch_form_needs_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "a.pt", "b.pt"]) == 2
    assert "several checkpoints need --out-dir DIR" in capsys.readouterr().err


def test_batch_refuses_foreign_files_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def load(options, **_kwargs):  # noqa: ANN001, ANN003, ANN202
        raise AssertionError("must not trace before checking the outputs")

    monkeypatch.setattr(pipeline, "load_and_trace", load)
    (tmp_path / "one.pt").write_bytes(b"x")
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("<p>my own page</p>")
    assert main(["report", str(tmp_path / "one.pt"), "--out-dir", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "index.html").read_text() == "<p>my own page</p>"


@pytest.mark.slow
def test_batch_report_on_sample_models_in_two_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = [sample("digitsum.pt"), sample("gru_digitsum.safetensors")]
    out = tmp_path / "reports"
    assert main(["report", *map(str, models), "--out-dir", str(out), "--jobs", "2"]) == 0
    assert "wrote 2 reports" in capsys.readouterr().out
    index = (out / "index.html").read_text()
    for page in ("digitsum.html", "gru-digitsum.html"):
        assert f'<a href="{page}">' in index
        assert "lstmviz-generated" in (out / page).read_text()[:4000]
    assert "state_dict" in index and "safetensors" in index and "failed:" not in index
