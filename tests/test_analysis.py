"""The analysis stage on hand-built traces whose answers are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lstmviz_cli.analysis.analyze import analyze_trace
from lstmviz_cli.analysis.findings import diagnose
from lstmviz_cli.analysis.memory import memory_horizon
from lstmviz_cli.analysis.prediction import predict
from lstmviz_cli.analysis.records import FigureRef, SaliencyResult
from lstmviz_cli.analysis.saturation import gate_saturation
from lstmviz_cli.analysis.serialize import analysis_json
from lstmviz_cli.analysis.stats import gate_statistics
from lstmviz_cli.analysis.textfeatures import text_features
from lstmviz_cli.analysis.thresholds import Thresholds, saturation_thresholds
from lstmviz_cli.analysis.trajectories import pca_2d, state_trajectories
from lstmviz_cli.analysis.units import rank_units
from lstmviz_cli.errors import InputError
from lstmviz_cli.loading.records import ModelInfo
from tests.analysis_helpers import lstm_layer, make_trace

QUOTED = 'He said "no way" and left (fast). She said "yes [really]" twice.\n"Go," he said.'


def _info(**kwargs: object) -> ModelInfo:
    base = {"name": "m.pt", "path": "m.pt", "format": "state_dict", "size_bytes": 1, "n_params": 1, "device": "cpu"}
    return ModelInfo(**{**base, **kwargs})


def _quote_trace(noise: float = 0.05, units: int = 6, tracker: int = 3):
    """c and h are noise except unit `tracker` of c, which follows the inside-quotes feature."""
    rng = np.random.default_rng(1)
    steps = len(QUOTED)
    inside = text_features(list(QUOTED))["inside_quotes"]
    c = rng.normal(0, 0.5, size=(steps, units))
    c[:, tracker] = 0.8 * inside - 0.4 + rng.normal(0, noise, size=steps)
    h = rng.normal(0, 0.5, size=(steps, units))
    return make_trace(lstm_layer({"c": c, "h": h}))


# -- gate statistics and saturation ----------------------------------------------------------------


def test_gate_fixed_at_095_is_right_saturated_and_at_005_left() -> None:
    f = np.full((20, 4), 0.95)
    o = np.full((20, 4), 0.05)
    trace = make_trace(lstm_layer({"f": f, "o": o}))
    by_series = {s.series: s for s in gate_saturation(trace)}
    np.testing.assert_array_equal(by_series["f"].frac_high, [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(by_series["f"].frac_low, [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(by_series["o"].frac_low, [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(by_series["o"].frac_high, [0.0, 0.0, 0.0, 0.0])
    assert set(by_series) == {"i", "f", "o"}  # g, c, h are not sigmoid gates


def test_saturation_thresholds_are_options() -> None:
    f = np.full((10, 2), 0.85)
    trace = make_trace(lstm_layer({"f": f}))
    default = {s.series: s for s in gate_saturation(trace)}["f"]
    assert default.frac_high.tolist() == [0.0, 0.0]
    relaxed = {s.series: s for s in gate_saturation(trace, Thresholds(saturation_high=0.8))}["f"]
    assert relaxed.frac_high.tolist() == [1.0, 1.0]


def test_saturation_per_unit_fractions_are_exact() -> None:
    f = np.array([[0.05, 0.5], [0.95, 0.5], [0.95, 0.99], [0.5, 0.99]])
    trace = make_trace(lstm_layer({"f": f}))
    sat = {s.series: s for s in gate_saturation(trace)}["f"]
    np.testing.assert_allclose(sat.frac_low, [0.25, 0.0])
    np.testing.assert_allclose(sat.frac_high, [0.5, 0.5])


def test_gate_statistics_values_and_padding_ignored() -> None:
    f = np.array([[[0.2, 0.4], [0.6, 0.8], [np.nan, np.nan]]])
    c = np.array([[[1.0, -1.0], [3.0, 1.0], [np.nan, np.nan]]])
    trace = make_trace(lstm_layer({"f": f, "c": c}))
    stats = {s.series: s for s in gate_statistics(trace)}
    assert stats["f"].mean == pytest.approx(0.5)
    assert stats["f"].std == pytest.approx(np.std([0.2, 0.4, 0.6, 0.8]), rel=1e-6)
    assert stats["f"].frac_low == 0.0 and stats["f"].frac_high == 0.0
    assert stats["c"].frac_low is None and stats["c"].frac_high is None
    assert stats["c"].time_std == pytest.approx(1.0)  # each unit moves by 2: std 1
    assert stats["i"].time_std is None


# -- prediction ------------------------------------------------------------------------------------


def test_prediction_char_lm_top5_next_characters_after_last_step() -> None:
    logits = np.zeros((1, 3, 6))
    logits[0, 2] = [0.0, 3.0, 1.0, 2.0, -1.0, 0.5]
    logits[0, 0] = [9.0, 0, 0, 0, 0, 0]  # an earlier step must not matter
    trace = make_trace(lstm_layer({"h": np.zeros((3, 2))}), output=logits.astype(np.float32))
    pred = predict(trace.output, _info(task="char-lm", vocab=("a", "b", " ", "\n", "e", "f")))
    assert pred is not None and pred.kind == "topk" and pred.step == 2
    assert [label for label, _ in pred.items] == ["b", "\u21b5", "\u2423", "f", "a"]
    probs = np.exp(logits[0, 2]) / np.exp(logits[0, 2]).sum()
    assert pred.items[0][1] == pytest.approx(probs[1])


def test_prediction_classification_uses_output_labels_and_accepts_log_probs() -> None:
    probs = np.array([0.1, 0.6, 0.3])
    out = np.log(probs)[None]
    pred = predict(out, _info(task="classification", output_labels=("neg", "pos", "neutral")))
    assert pred is not None
    assert pred.items == [("pos", pytest.approx(0.6)), ("neutral", pytest.approx(0.3)), ("neg", pytest.approx(0.1))]
    assert pred.step is None


def test_prediction_regression_returns_values() -> None:
    pred = predict(np.array([[0.25]]), _info(task="regression"))
    assert pred is not None and pred.kind == "values" and pred.items == [("y0", 0.25)]
    # Without a task, labels or vocabulary, one output is a value and 19 are output values, not classes.
    assert predict(np.array([[1.5]]), None).kind == "values"
    assert predict(np.zeros((1, 19)), None).kind == "values"
    assert predict(np.zeros((1, 19)), _info(task="classification")).kind == "topk"
    assert predict(None, None) is None


# -- interpretable units ---------------------------------------------------------------------------


def test_unit_built_to_track_quotes_ranks_first() -> None:
    trace = _quote_trace()
    features = text_features(list(QUOTED))
    ranked = rank_units(trace, features)
    best = ranked[0]
    assert (best.feature, best.key, best.unit) == ("inside_quotes", "lstm/l0/fwd/c", 3)
    assert best.r > 0.95
    quotes = [u for u in ranked if u.feature == "inside_quotes"]
    assert len(quotes) == 5 and quotes[0].unit == 3
    assert all(abs(a.r) >= abs(b.r) for a, b in zip(ranked, ranked[1:], strict=False))


def test_anticorrelated_unit_counts_by_absolute_r() -> None:
    trace = _quote_trace()
    trace.layers[0].series["c"][0, :, 3] *= -1
    best = rank_units(trace, text_features(list(QUOTED)))[0]
    assert best.unit == 3 and best.r < -0.95


def test_constant_feature_and_dead_unit_are_skipped() -> None:
    trace = _quote_trace()
    trace.layers[0].series["c"][0, :, 0] = 0.3  # a dead unit has no correlation
    features = {"constant": np.ones(len(QUOTED)), "quotes": text_features(list(QUOTED))["inside_quotes"]}
    ranked = rank_units(trace, features)
    assert {u.feature for u in ranked} == {"quotes"}
    assert all(not (u.key.endswith("/c") and u.unit == 0) for u in ranked)


def test_analyze_trace_ranks_user_labels_with_builtin_features() -> None:
    trace = _quote_trace()
    rng = np.random.default_rng(5)
    label = trace.layers[0].series["h"][0, :, 1].astype(np.float64) * 2 + rng.normal(0, 0.01, len(QUOTED))
    analysis = analyze_trace(trace, tokens=list(QUOTED), labels={"label:mine": label})
    mine = [u for u in analysis.units if u.feature == "label:mine"]
    assert (mine[0].key, mine[0].unit) == ("lstm/l0/fwd/h", 1) and mine[0].r > 0.99
    assert analysis.feature_definitions["label:mine"] == "user label from --labels"


# -- memory horizon --------------------------------------------------------------------------------


def test_memory_horizon_counts_steps_back_to_90_percent() -> None:
    assert memory_horizon(np.array([0, 0, 0, 1.0, 9.0]), 4) == 1
    assert memory_horizon(np.array([10.0, 0, 0, 0, 1.0]), 4) == 5
    assert memory_horizon(np.array([1.0, 1, 1, 1, 1, 1, 1, 1, 1, 1]), 9) == 9
    # Steps after the chosen one do not count.
    assert memory_horizon(np.array([0, 5.0, 5.0, 100.0]), 2) == 2
    assert memory_horizon(np.zeros(4), 3) == 0


# -- trajectories ----------------------------------------------------------------------------------


def test_pca_of_known_ellipse() -> None:
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    rng = np.random.default_rng(3)
    basis, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    u1, u2 = basis[:, 0], basis[:, 1]
    states = 3 * np.cos(t)[:, None] * u1 + 1 * np.sin(t)[:, None] * u2 + 7.0  # offset removed by PCA
    coords, explained = pca_2d(states)
    assert explained == pytest.approx((0.9, 0.1), abs=1e-9)
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(3 * np.cos(t)), atol=1e-9)
    np.testing.assert_allclose(np.abs(coords[:, 1]), np.abs(np.sin(t)), atol=1e-9)
    again, _ = pca_2d(states)
    np.testing.assert_array_equal(coords, again)  # deterministic signs


def test_trajectory_jumpiness_smooth_c_vs_jumpy_h() -> None:
    steps = 50
    t = np.linspace(0, 1, steps)[:, None]
    c = np.hstack([t, t**2, np.sin(3 * t)])
    h = np.random.default_rng(0).normal(size=(steps, 3))
    trajs = {tr.series: tr for tr in state_trajectories(make_trace(lstm_layer({"c": c, "h": h})))}
    assert trajs["c"].jumpiness < 0.15  # ~ path length / steps / spread
    assert trajs["h"].jumpiness > 0.8
    assert trajs["c"].coords.shape == (steps, 2)


# -- diagnostics -----------------------------------------------------------------------------------


def _codes(findings: list) -> dict[str, object]:
    return {f.code: f for f in findings}


def test_healthy_trace_has_no_findings() -> None:
    trace = make_trace(lstm_layer({"h": np.random.default_rng(2).uniform(-0.5, 0.5, size=(40, 8))}))
    saliency = SaliencyResult(step=39, target="y", values=np.linspace(0.5, 1.0, 40))
    assert diagnose(trace, saliency=saliency) == []


def test_dead_units_fire_and_name_the_units() -> None:
    h = np.random.default_rng(2).uniform(-0.5, 0.5, size=(30, 8))
    h[:, [2, 5]] = 0.004
    found = _codes(diagnose(make_trace(lstm_layer({"h": h}))))
    dead = found["dead_units"]
    assert dead.units == [2, 5] and dead.value == pytest.approx(0.25) and dead.severity == "warning"
    assert dead.prefix == "lstm/l0/fwd" and dead.figure == FigureRef("activity", "lstm/l0/fwd")
    assert "2 of 8 units" in dead.message


def test_saturated_gate_fires() -> None:
    o = np.random.default_rng(0).uniform(0.3, 0.7, size=(30, 4))
    o[:, :3] = 0.99
    found = _codes(diagnose(make_trace(lstm_layer({"o": o}))))
    sat = found["saturated_gate"]
    assert sat.units == [0, 1, 2] and sat.severity == "warning" and sat.value == pytest.approx(0.75)
    assert sat.figure == FigureRef("saturation", "lstm/l0/fwd")


def test_forget_gates_pinned_near_zero_and_near_one() -> None:
    low = _codes(diagnose(make_trace(lstm_layer({"f": np.full((30, 4), 0.02)}))))
    assert low["forget_pinned_low"].units == [0, 1, 2, 3] and low["forget_pinned_low"].severity == "warning"
    assert "forget_pinned_high" not in low
    high = _codes(diagnose(make_trace(lstm_layer({"f": np.full((30, 4), 0.995)}))))
    assert high["forget_pinned_high"].units == [0, 1, 2, 3]
    assert "forget_pinned_low" not in high and "saturated_gate" not in high


def test_exploding_cell_state_fires() -> None:
    c = np.random.default_rng(0).uniform(-1, 1, size=(30, 3))
    c[:, 1] = np.linspace(0, 60, 30)
    exploding = _codes(diagnose(make_trace(lstm_layer({"c": c}))))["exploding_cell"]
    assert exploding.units == [1] and exploding.value == pytest.approx(60.0) and exploding.threshold == 50.0
    assert "still growing" in exploding.message and exploding.severity == "warning"


def test_large_but_bounded_cell_state_is_only_info() -> None:
    c = np.random.default_rng(0).uniform(-1, 1, size=(40, 3))
    c[:, 2] = np.tile(np.linspace(0, 55, 10), 4)  # a counter that resets: large, not growing
    found = _codes(diagnose(make_trace(lstm_layer({"c": c}))))["exploding_cell"]
    assert found.severity == "info" and found.units == [2] and "bounded" in found.message


def test_vanishing_gradient_fires_on_exponential_decay_only() -> None:
    trace = make_trace(lstm_layer({"h": np.random.default_rng(2).uniform(-0.5, 0.5, size=(40, 8))}))
    decaying = SaliencyResult(step=39, target="y", values=0.5 ** np.arange(40)[::-1], horizon=4)
    found = _codes(diagnose(trace, saliency=decaying))
    assert found["vanishing_gradient"].value < 1e-3 and found["vanishing_gradient"].figure == FigureRef("saliency")


# -- the stage, JSON, options ----------------------------------------------------------------------


def test_to_json_is_json_safe_and_rounded() -> None:
    """(Byte-identical across interpreters: tests/test_determinism.py.)"""
    trace = _quote_trace()
    trace.output = np.random.default_rng(0).normal(size=(1, len(QUOTED), 4)).astype(np.float32)
    saliency = SaliencyResult(step=len(QUOTED) - 1, target="y", values=np.r_[np.nan, np.ones(len(QUOTED) - 1)])
    analysis = analyze_trace(trace, tokens=list(QUOTED), saliency=saliency)
    first = analysis_json(analysis)
    json.dumps(first, allow_nan=False)  # raises on NaN/inf
    assert first["saliency"]["values"][0] is None and first["saliency"]["horizon"] == math.ceil(0.9 * (len(QUOTED) - 1))
    stat = analysis.gate_stats[0]
    assert first["gate_stats"][0]["mean"] == float(f"{stat.mean:.6g}") != stat.mean  # 6 significant digits
    assert first["units"]["ranked"][0] == {"feature": "inside_quotes", "key": "lstm/l0/fwd/c", "unit": 3,
                                           "r": first["units"]["ranked"][0]["r"], "p": None, "control_r": None,
                                           "significant": None}
    assert first["saturation"][0]["series"] == "i" and len(first["saturation"][0]["frac_low"]) == 6
    assert set(first) == {
        "thresholds", "prediction", "gate_stats", "saturation", "units", "saliency",
        "memory_probe", "trajectories", "findings", "notes", "unjudged", "model",
        # explanations with evidence (issue 18)
        "attributions", "explain_notes", "context_ablation", "timescales", "ablations", "excerpts", "corpus",
    }


def test_saturation_thresholds_validate() -> None:
    assert saturation_thresholds(0.2, 0.7).saturation_low == 0.2
    with pytest.raises(InputError, match="0 < low < high < 1"):
        saturation_thresholds(0.9, 0.1)


def test_figures_bounded_for_long_sequences() -> None:
    from lstmviz_cli.render.figures_analysis import plot_saliency, plot_trajectories
    from lstmviz_cli.render.mpl import to_svg

    rng = np.random.default_rng(0)
    sizes = []
    for steps in (500, 20000):
        sal = SaliencyResult(step=steps - 1, target="y", values=rng.random(steps), horizon=10)
        coords = rng.normal(size=(steps, 2))
        traj = state_trajectories(make_trace(lstm_layer({"c": coords, "h": coords[:, ::-1]})))
        sizes.append(len(to_svg(plot_saliency(sal, None))) + len(to_svg(plot_trajectories(traj, None, "t"))))
    assert sizes[1] < 1.5 * sizes[0]


def test_chunked_reductions_match_whole_array_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long traces are reduced in float64 chunks; the answers are those of one float64 pass."""
    from lstmviz_cli.analysis import rows as chunked
    from lstmviz_cli.analysis.trajectories import pca_2d

    monkeypatch.setattr(chunked, "CHUNK_ROWS", 7)  # many chunks, the last one short
    rows = np.random.default_rng(5).standard_normal((100, 6)).astype(np.float32) * 3 + 1
    exact = rows.astype(np.float64)
    mean, std = chunked.mean_std(rows)
    assert mean == pytest.approx(exact.mean(), rel=1e-12) and std == pytest.approx(exact.std(), rel=1e-12)
    means, stds = chunked.mean_std(rows, axis=0)
    np.testing.assert_allclose(means, exact.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stds, exact.std(axis=0), rtol=1e-12)
    coords, explained = pca_2d(rows)
    centred = exact - exact.mean(axis=0)
    _, var, vt = np.linalg.svd(centred, full_matrices=False)
    signs = np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    np.testing.assert_allclose(coords, centred @ (vt[:2] * signs[:, None]).T, atol=1e-9)
    assert explained == pytest.approx(tuple(var[:2] ** 2 / (var**2).sum()), rel=1e-9)
    # A view, not a float64 copy, when nothing is padded; padding rows dropped when there is some.
    series = rows[None]
    assert np.shares_memory(chunked.valid_rows(series), rows)
    padded = np.concatenate([series, np.full((1, 3, 6), np.nan, dtype=np.float32)], axis=1)
    assert chunked.first_sequence(padded).shape == (100, 6)


@pytest.mark.parametrize("window_start", [0, 150])
def test_saliency_figure_marks_the_step_and_zooms_on_a_window(window_start: int) -> None:
    from lstmviz_cli.analysis.records import SaliencyResult
    from lstmviz_cli.render.figures_analysis import plot_saliency

    values = np.linspace(0.1, 1.0, 200)
    values[:window_start] = np.nan
    sal = SaliencyResult(step=199, target="predicted value at step 199", values=values, horizon=20,
                         window_start=window_start)
    fig = plot_saliency(sal, None)
    top, bottom = fig.axes[:2]
    for ax in (top, bottom):  # the dotted line at the explained step, on both panels
        assert any(list(line.get_xdata()) == [199, 199] for line in ax.get_lines())
    texts = " ".join(t.get_text() for t in top.texts)
    if window_start:
        low, high = top.get_xlim()
        assert 130 < low < 149.5 and 199.5 <= high < 202  # the window, plus a sliver before it
        assert "steps < 150:\nnot differentiated" in texts
    else:
        assert top.get_xlim()[0] < 0 and "not differentiated" not in texts


def test_select_layers_keeps_the_chosen_layers_numbers_and_the_whole_models() -> None:
    from conftest import numpy_trace

    from lstmviz_cli.analysis.select import select_layers

    trace = numpy_trace("LSTM", steps=3, hidden_size=4, num_layers=2)  # 3 steps: too short to judge
    saliency = SaliencyResult(step=2, target="y", values=np.array([0.1, 0.5, 1.0]),
                              gate_norms={"lstm/l0/fwd": {"f": 1.0}, "lstm/l1/fwd": {"f": 2.0}})
    full = analyze_trace(trace, saliency=saliency)
    assert set(full.unjudged) == {"lstm/l0/fwd", "lstm/l1/fwd"} and len(full.notes) == 2
    chosen = select_layers(full, ["lstm/l1/fwd"])
    assert {s.prefix for s in chosen.gate_stats} == {"lstm/l1/fwd"}
    assert [s for s in full.gate_stats if s.prefix == "lstm/l1/fwd"] == chosen.gate_stats  # not recomputed
    assert {t.prefix for t in chosen.trajectories} == {"lstm/l1/fwd"}
    assert chosen.unjudged == {"lstm/l1/fwd": 3} and len(chosen.notes) == 1 and "lstm/l1/fwd" in chosen.notes[0]
    assert chosen.saliency is not None and chosen.saliency.gate_norms == {"lstm/l1/fwd": {"f": 2.0}}
    assert chosen.saliency.values is full.saliency.values and chosen.prediction == full.prediction
    assert full.saliency.gate_norms.keys() == {"lstm/l0/fwd", "lstm/l1/fwd"}  # the input is not modified
