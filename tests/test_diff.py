"""`lstmviz diff`: architecture mismatch messages, per-gate weight changes, unit ranking, the page."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, make_run, numpy_trace
from conftest_papers import sample, write_scaled

from lstmviz_cli.analysis.diff import (
    architecture_difference,
    compare_units,
    compare_weights,
    diff_traces,
    require_same_architecture,
)
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.serialize import diff_json
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.cli import main
from lstmviz_cli.errors import InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.diff import build_diff_page
from lstmviz_cli.render.html import render_html

VIEW = AnalysisOptions()


def render_diff(result: object) -> str:
    return render_html(build_diff_page(result, Thresholds()))


def _diff(before, after):  # noqa: ANN001, ANN202
    a, b = make_run(before), make_run(after)
    return diff_traces(before, after, analyze_run(a, VIEW), analyze_run(b, VIEW),
                       before_name="a.pt", after_name="b.pt", sample="12 steps")


def test_architecture_mismatch_names_the_difference() -> None:
    base = numpy_trace("LSTM", hidden_size=6)
    assert architecture_difference(base, numpy_trace("LSTM", hidden_size=6, seed=3)) is None
    assert architecture_difference(base, numpy_trace("LSTM", hidden_size=8)) == (
        "lstm: hidden_size is 6 in BEFORE but 8 in AFTER"
    )
    assert architecture_difference(base, numpy_trace("GRU", hidden_size=6, module="gru")) == (
        "recurrent module 'lstm' is only in BEFORE"
    )
    assert "num_layers is 1 in BEFORE but 2 in AFTER" in architecture_difference(
        base, numpy_trace("LSTM", hidden_size=6, num_layers=2)
    )
    with pytest.raises(InputError) as caught:
        require_same_architecture(base, numpy_trace("LSTM", hidden_size=6, proj_size=2))
    assert caught.value.message == "cannot diff different architectures: lstm: proj_size is 0 in BEFORE but 2 in AFTER"


def test_a_model_against_itself_shows_no_change() -> None:
    trace = numpy_trace("LSTM", hidden_size=6, num_layers=2, bidirectional=True)
    result = _diff(trace, copy.deepcopy(trace))
    assert result.unchanged
    assert result.max_weight_change == 0.0 and result.max_activation_change == 0.0
    assert all(w.rel_change == 0.0 and w.hist_before == w.hist_after for w in result.weights)
    assert all(g.delta_mean == 0.0 and g.delta_saturated in (0.0, None) for g in result.gate_stats)
    assert all(u.activation_change == 0.0 and u.weight_change == 0.0 for u in result.units)
    assert len(result.weights) == 4 * 4  # 2 layers x 2 directions x gates i, f, g, o
    page = render_diff(result)
    assert "No change: every weight and every recorded activation is identical." in page
    assert diff_json(result)["unchanged"] is True


def test_scaled_weights_give_the_exact_relative_change() -> None:
    before = numpy_trace("LSTM", hidden_size=5)
    after = copy.deepcopy(before)
    for key in ("weight_ih", "weight_hh"):
        after.layers[0].weights[key] = after.layers[0].weights[key] * 2
    changes = {c.gate: c for c in compare_weights(before.layers[0], after.layers[0])}
    assert list(changes) == ["i", "f", "g", "o"]
    w = before.layers[0].weights
    rows = slice(5, 10)  # the forget gate's rows
    weights = np.concatenate([w["weight_ih"][rows].ravel(), w["weight_hh"][rows].ravel()]).astype(np.float64)
    everything = np.concatenate([weights, w["bias_ih"][rows], w["bias_hh"][rows]]).astype(np.float64)
    assert changes["f"].rel_change == pytest.approx(np.linalg.norm(weights) / np.linalg.norm(everything), rel=1e-6)
    assert changes["f"].after_std > changes["f"].before_std
    assert sum(changes["f"].hist_before) == sum(changes["f"].hist_after) == everything.size


def test_the_unit_that_moved_is_ranked_first() -> None:
    before = numpy_trace("LSTM", hidden_size=6, steps=15)
    after = copy.deepcopy(before)
    after.layers[0].series["h"][:, :, 4] += 0.5
    after.layers[0].series["c"][:, :, 1] += 0.01
    units = compare_units(before.layers[0], after.layers[0])
    assert [u.unit for u in units[:2]] == [4, 1]
    assert units[0].series_change["h"] == pytest.approx(0.5, rel=1e-5)
    assert units[0].activation_change == pytest.approx(0.5 / 6, rel=1e-4)  # mean over the six series
    assert units[-1].activation_change == 0.0


def test_gate_statistics_come_from_both_analyses() -> None:
    before = numpy_trace("LSTM", hidden_size=6)
    after = copy.deepcopy(before)
    after.layers[0].series["f"][:] = 0.95
    result = _diff(before, after)
    forget = next(g for g in result.gate_stats if g.series == "f")
    stats_before = next(s for s in analyze_run(make_run(before), VIEW).gate_stats if s.series == "f")
    assert forget.before_mean == stats_before.mean
    assert forget.after_mean == pytest.approx(0.95) and forget.after_high == 1.0
    assert forget.delta_saturated == pytest.approx(1.0 - stats_before.frac_low - stats_before.frac_high)
    assert not result.unchanged


def test_page_escapes_names() -> None:
    """(The diff page is byte-identical across interpreters: tests/test_determinism.py.)"""
    trace = numpy_trace("LSTM", hidden_size=4, module=HOSTILE)
    result = _diff(trace, copy.deepcopy(trace))
    page = render_diff(result)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    # Only the page's own two script elements (the data island and the hashed script), nothing from outside:
    assert len(re.findall(r"<script\b", page)) == 2
    assert not re.search(r'(?:src|href)="(?!#)', page)


# -- end to end --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_sample_model_against_itself_and_a_changed_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    model = sample("digitsum.pt")
    assert main(["diff", str(model), str(model), "-o", "self.html", "--json", "self.json"]) == 0
    assert "no change" in capsys.readouterr().out
    document = json.loads((tmp_path / "self.json").read_text())
    assert document["unchanged"] is True and document["max_weight_change"] == 0.0
    assert "No change" in (tmp_path / "self.html").read_text()

    scaled = write_scaled(model, tmp_path / "scaled.pt", scale=1.5)
    digits = ["--input", str(sample("digitsum.npy"))]
    assert main(["diff", str(model), str(scaled), *digits, "-o", "scaled.html", "--json", "scaled.json"]) == 0
    document = json.loads((tmp_path / "scaled.json").read_text())
    assert document["unchanged"] is False
    assert all(0.3 < w["rel_change"] < 0.5 for w in document["weights"])  # weights x1.5, biases kept
    assert document["units"][0]["activation_change"] > 0


@pytest.mark.slow
def test_cli_mismatched_architectures_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lstm, gru = sample("digitsum.pt"), sample("gru_digitsum.safetensors")
    assert main(["diff", str(lstm), str(gru), "-o", str(tmp_path / "d.html")]) == 2
    err = capsys.readouterr().err
    assert err == "lstmviz: error: cannot diff different architectures: recurrent module 'lstm' is only in BEFORE\n"
    assert not (tmp_path / "d.html").exists()
