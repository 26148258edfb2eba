"""The evidence a report gathers (issue 18): decompositions on the page, memory three ways, units with
p-values, controls and causal checks, corpus mode, hypothesis search.

Independent answers: the shipped sample models' known behaviour (the digit-sum answer lives in the first
two digits; the char model's quote unit), the in-memory analysis of the same sequences as one batch
(corpus pooling), `text_features` character by character (the vectorised features), and hand-built
traces whose units are on exactly where the test puts them (hypothesis search in a browser).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import TEXT, make_run, numpy_trace

from lstmviz_cli.analysis.analyze import analyze_trace
from lstmviz_cli.analysis.checks import evaluate
from lstmviz_cli.analysis.checksettings import CheckConfig
from lstmviz_cli.analysis.evidence import UnitAblation, UnitSpec
from lstmviz_cli.analysis.findings import diagnose
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.pooled import CorpusReducer
from lstmviz_cli.analysis.saturation import gate_saturation
from lstmviz_cli.analysis.serialize import analysis_json
from lstmviz_cli.analysis.stats import gate_statistics
from lstmviz_cli.analysis.textbatch import batch_text_features
from lstmviz_cli.analysis.textfeatures import text_features
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.analysis.units import rank_units
from lstmviz_cli.page.build import report_page
from lstmviz_cli.page.outline import outline
from lstmviz_cli.page.sections.hypothesis import quantise
from lstmviz_cli.page.sections.units import verdict
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.tracing.records import Trace

torch = pytest.importorskip("torch")
from lstmviz_cli.commands.options import LoadOptions  # noqa: E402
from lstmviz_cli.commands.pipeline import load_and_trace  # noqa: E402
from lstmviz_cli.errors import ConservationError, InputError  # noqa: E402
from lstmviz_cli.explain import contextual  # noqa: E402
from lstmviz_cli.explain.orchestrate import analyze_run  # noqa: E402
from lstmviz_cli.loading.checkpoint import load_checkpoint  # noqa: E402
from lstmviz_cli.loading.corpus import open_corpus  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def _cut(trace: Trace, first: int, stop: int) -> Trace:
    return Trace(layers=[dataclasses.replace(layer, series={k: v[first:stop] for k, v in layer.series.items()})
                         for layer in trace.layers], modules=trace.modules)


# -- 1. which inputs the prediction came from ---------------------------------------------------------


@pytest.fixture(scope="module")
def digitsum():
    run = load_and_trace(LoadOptions(checkpoint=SAMPLES / "digitsum.pt"))
    return run, analyze_run(run, AnalysisOptions())


def test_digitsum_report_puts_the_two_digits_on_top_in_both_decompositions_and_they_add_up(digitsum) -> None:
    run, analysis = digitsum
    assert run.sample.values.tolist() == [[6, 7, 0, 0, 1, 0, 0, 0, 0, 0]]
    assert [a.method for a in analysis.attributions] == ["lrp", "cd"]  # CD runs by default on 10 steps
    for a in analysis.attributions:
        assert a.target_label == "'13'" and a.step == 9
        assert sorted(a.top_steps(2)) == [0, 1]
        assert a.conservation_error < 1e-4
        assert float(a.values.sum()) + a.rest == pytest.approx(a.output, rel=1e-4)
    doc = analysis_json(analysis)
    entry = doc["attributions"][1]
    assert {"method", "target", "step", "values", "rest", "conservation_error"} <= set(entry)
    assert entry["method"] == "cd" and len(entry["values"]) == 10
    assert sum(entry["values"]) + entry["rest"] == pytest.approx(entry["output"], rel=1e-4)


def test_the_page_shows_both_decompositions_beside_saliency_and_a_refusal(digitsum, monkeypatch) -> None:
    run, analysis = digitsum
    page = report_page(run, analysis, ViewOptions())
    section = next(s for s in outline(page)["sections"] if s["id"] == "attribution")
    figure = next(b for b in section["blocks"] if "figure" in b)
    assert figure["data"] == "AttributionData"
    table = next(b for b in section["blocks"] if "table" in b)
    assert [row[0] for row in table["rows"]] == ["layer-wise relevance (LRP)", "contextual decomposition"]
    assert all(row[-1] == "shown" for row in table["rows"])
    terms = next(b for b in section["blocks"] if "definitions" in b)["definitions"]
    assert [t[0] for t in terms][:3] == ["gradient saliency", "contextual decomposition", "layer-wise relevance (LRP)"]
    assert "y here is the log-probability of the predicted '13' at step 9)" in terms[0][1]  # what saliency read
    reading = next(b for b in section["blocks"] if b.get("paragraph") == "reading")["text"]
    assert "'13' at step 9, whose logit (raw score) is y = 11.6" in reading
    regression = dataclasses.replace(analysis, prediction=dataclasses.replace(analysis.prediction, kind="values"))
    section = next(s for s in outline(report_page(run, regression, ViewOptions()))["sections"] if s["id"] == "attribution")
    assert "whose value is y = " in next(b for b in section["blocks"] if b.get("paragraph") == "reading")["text"]

    def refuse(*args, **kwargs):
        raise ConservationError("contextual decomposition: the parts add up to the output 9 only to 2.0e-03 relative "
                                "(tolerance 1e-04); the decomposition is not shown")

    monkeypatch.setattr("lstmviz_cli.explain.gather.contextual_decomposition", refuse)
    refused = analyze_run(run, AnalysisOptions())
    assert [a.method for a in refused.attributions] == ["lrp"]
    page = report_page(run, refused, ViewOptions())
    rows = next(b for b in next(s for s in outline(page)["sections"] if s["id"] == "attribution")["blocks"]
                if "table" in b)["rows"]
    assert rows[1][0] == "contextual decomposition" and rows[1][-1].startswith("refused: ")
    assert analysis_json(refused)["explain_notes"][0]["status"] == "refused"


def test_contextual_decomposition_is_skipped_on_long_inputs_unless_asked(digitsum, monkeypatch) -> None:
    run, _ = digitsum
    monkeypatch.setattr("lstmviz_cli.explain.gather.CD_AUTO_WORK", 10.0)
    auto = analyze_run(run, AnalysisOptions())
    assert [a.method for a in auto.attributions] == ["lrp"]
    note = next(n for n in auto.explain_notes if n.method == "cd")
    assert note.status == "skipped" and "--attribution cd,lrp" in note.reason
    asked = analyze_run(run, AnalysisOptions(attribution="cd"))
    assert [a.method for a in asked.attributions] == ["cd"]
    monkeypatch.setattr(contextual, "CD_BUDGET", 100)  # the hard memory budget still refuses, loudly
    with pytest.raises(Exception, match="needs about"):
        analyze_run(run, AnalysisOptions(attribution="cd"))
    with pytest.raises(InputError, match="--attribution"):
        analyze_run(run, AnalysisOptions(attribution="shap"))


# -- 2. memory three ways -------------------------------------------------------------------------------


def test_memory_is_measured_three_ways_and_the_check_uses_the_ablation(digitsum) -> None:
    run, analysis = digitsum
    ablation = analysis.context_ablation
    assert ablation is not None and ablation.horizon == 10  # the sum needs the first digit
    assert [t.prefix for t in analysis.timescales] == ["lstm/l0/fwd"] and analysis.timescales[0].counts.sum() == 64
    page = report_page(run, analysis, ViewOptions())
    memory = next(s for s in outline(page)["sections"] if s["id"] == "memory-over-time")
    assert memory["blocks"][0]["text"].startswith("Verdict (by context ablation")
    kinds = [b["data"] for b in memory["blocks"] if "figure" in b]
    assert kinds[:3] == ["ContextAblationData", "TimescalesData", "SaliencyData"]
    three = next(b for b in memory["blocks"] if b.get("table") == "Memory measured three ways")
    assert [row[0] for row in three["rows"]][:2] == ["context ablation", "gradient saliency"]
    short = dataclasses.replace(ablation, horizon=3)
    case = evaluate(run.trace, dataclasses.replace(analysis, context_ablation=short),
                    CheckConfig(min_memory_horizon=5), model="m").cases[-1]
    assert case.check == "memory_horizon" and case.value == 3.0 and not case.passed
    # The table names the measure: a baseline's memory horizon is the saliency's, a different number.
    assert case.name == "memory horizon (context ablation)"
    assert case.message.startswith("context ablation:") and case.figure is not None
    assert case.figure.kind == "context-ablation" and page.anchor(case.figure) is not None
    saliency_only = evaluate(run.trace, dataclasses.replace(analysis, context_ablation=None),
                             CheckConfig(min_memory_horizon=5), model="m").cases[-1]
    assert saliency_only.message.startswith("gradient saliency") and saliency_only.name == "memory horizon (saliency)"


def test_context_ablation_runs_within_its_step_budget_and_is_skipped_with_a_note_beyond() -> None:
    from torch import nn

    from lstmviz_cli.explain import gather

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.fc = nn.LSTM(1, 2, batch_first=True), nn.Linear(2, 1)

        def forward(self, x):
            return self.fc(self.rnn(x)[0][:, -1])

    longest = gather.CONTEXT_STEP_BUDGET // gather.MIN_CONTEXT_POINTS  # 12,500 steps: 16 lengths fit
    for steps, runs in ((longest, True), (longest + 1, False)):
        ctx = gather.ModelContext(model=Tiny(), values=np.zeros((1, steps, 1), np.float32), batch_first=True,
                                  step=None, task="regression", output_labels=(), has_prediction=True)
        notes: list = []
        result = gather._context(ctx, notes)
        if runs:
            assert result is not None and not notes and len(result.kept) <= gather.MIN_CONTEXT_POINTS
        else:
            assert result is None and [(n.method, n.status) for n in notes] == [("context", "skipped")]
            assert f"{steps:,} steps" in notes[0].reason


# -- 3 and 6. units with evidence, causal checks ---------------------------------------------------------


@pytest.fixture(scope="module")
def charlm(tmp_path_factory):
    """The char model's report analysis with a random label column added (--labels)."""
    run = load_and_trace(LoadOptions(checkpoint=SAMPLES / "charlm.pt"))
    labels = tmp_path_factory.mktemp("labels") / "labels.csv"
    random = np.random.default_rng(0).integers(0, 2, run.sample.steps)
    labels.write_text("random\n" + "".join(f"{v}\n" for v in random))
    return run, analyze_run(run, AnalysisOptions(labels=labels, ablate=("lstm/l0/fwd:49=0.9",)))


def test_charlm_quote_unit_is_ranked_with_p_and_control_and_the_random_label_is_not(charlm) -> None:
    run, analysis = charlm
    tests = analysis.unit_tests
    assert tests is not None and analysis.units == list(tests.ranked)
    quote = next(u for u in analysis.units if u.feature == "inside_quotes")
    assert (quote.key, quote.unit) == ("lstm/l0/fwd/h", 49) and quote.r == pytest.approx(-0.751, abs=0.005)
    assert quote.p is not None and quote.p < 0.01 and quote.significant
    assert quote.control_r is not None and abs(quote.r) - quote.control_r > 0.3
    assert all(u.p is not None and u.p <= tests.alpha and u.control_r is not None for u in analysis.units)
    assert [abs(u.r) for u in analysis.units] == sorted((abs(u.r) for u in analysis.units), reverse=True)
    random = next(u for u in tests.not_significant if u.feature == "label:random")
    assert random.p is not None and random.p > 0.05
    assert not any(u.feature == "label:random" for u in analysis.units)
    ranked = analysis_json(analysis)["units"]["ranked"]
    assert {"p", "control_r"} <= set(ranked[0]) and ranked[0]["p"] < 0.01


def test_clamping_the_quote_unit_raises_the_loss_inside_quotes_more_than_outside(charlm) -> None:
    run, analysis = charlm
    first, contrast = analysis.ablations[:2]  # the top unit: the default (clamp), then zero for comparison
    assert [str(u) for u in first.units] == ["lstm/l0/fwd:49=0.320342"] and first.feature == "inside_quotes"
    assert first.how.startswith("clamped to +0.32, its mean where inside quotes is absent")
    assert first.present_change > first.absent_change > 0 and first.present_change > 2 * first.absent_change
    assert verdict(first) == "used: the loss rises most where inside quotes is present"
    assert contrast.how == "set to 0" and contrast.absent_change > contrast.present_change  # why zero misleads
    defaults = analysis.ablations[:-1]  # the last one is --ablate's
    assert 1 + len({(a.units[0].prefix, a.units[0].unit) for a in defaults}) == len(defaults) == 4
    page = report_page(run, analysis, ViewOptions())
    units = next(s for s in outline(page)["sections"] if s["id"] == "interpretable-units")
    checks = next(b for b in units["blocks"] if b.get("table", "").startswith("Causal checks"))
    assert checks["rows"][0][-1].startswith("used:") and checks["rows"][1][:3] == ["lstm/l0/fwd", "49", "set to 0"]
    note = next(b for b in units["blocks"] if b.get("paragraph") == "note" and "Clamping is the default" in b["text"])
    assert "set to 0: next-token loss" in note["text"]


def test_a_default_check_that_cannot_be_built_loses_that_unit_only(charlm, monkeypatch) -> None:
    from lstmviz_cli.errors import ExplainError
    from lstmviz_cli.explain import gather

    run, analysis = charlm
    real = gather.feature_clamp

    def no_absent_step(trace, spec, values, *, present=False):
        if spec.unit == 49:
            raise ExplainError("no step has the feature absent")
        return real(trace, spec, values, present=present)

    monkeypatch.setattr(gather, "feature_clamp", no_absent_step)
    context = gather.ModelContext(model=run.loaded.model, values=run.sample.values, batch_first=True, step=None,
                                  task="char-lm", output_labels=(), has_prediction=True)
    notes: list = []
    checks = gather._ablations(run, analysis, AnalysisOptions(), context, notes)
    assert [n.reason for n in notes] == ["unit 49 of lstm/l0/fwd not ablated: no step has the feature absent"]
    before = {(str(a.units[0]), a.how): a.target_after for a in analysis.ablations[2:-1]}  # the other top units
    assert len(checks) == len(before) == 2
    assert {(str(a.units[0]), a.how): a.target_after for a in checks} == pytest.approx(before, abs=1e-6)


def test_a_unit_that_changes_nothing_is_reported_as_such() -> None:
    still = UnitAblation(units=(UnitSpec("lstm/l0/fwd", 3, 0.1),), step=9, target=1, target_label="'a'",
                         quantity="log-probability", target_before=-1.0, target_after=-1.0, loss_kind="next-token",
                         loss_before=0.5, loss_after=0.5, feature="inside_quotes", present_change=0.0,
                         absent_change=0.0)
    assert not still.changed and verdict(still).startswith("changes nothing")
    moved = dataclasses.replace(still, loss_after=0.6, present_change=0.05, absent_change=0.2)
    assert verdict(moved) == "changes the output, but not most where inside quotes is present"


def test_nothing_significant_leaves_units_unranked_and_says_so() -> None:
    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=4, seed=11)
    run = make_run(trace, name="tiny.pt", text=TEXT)
    analysis = analyze_run(run, AnalysisOptions(labels=None, permutations=300))
    tests = analysis.unit_tests
    assert tests is not None
    if tests.ranked:  # a 24-step sample: whatever is ranked must hold up
        assert all(u.p <= tests.alpha for u in tests.ranked)
    empty = dataclasses.replace(analysis, units=[], unit_tests=dataclasses.replace(tests, ranked=()))
    text = outline(report_page(run, empty, ViewOptions()))
    units = next(s for s in text["sections"] if s["id"] == "interpretable-units")
    assert units["blocks"][0]["text"].startswith("No unit is significantly correlated with any feature")
    assert "not_significant" in analysis_json(empty)["units"] and analysis_json(empty)["units"]["ranked"] == []


def test_the_reading_says_when_a_unit_is_no_better_than_its_untrained_control_or_nothing_could_be_significant() -> None:
    """A significant r that an untrained model reaches too is said to be no evidence of training (the char
    sample's whitespace unit: r = -0.68 against 0.66 untrained); too few permutations are not 'chance'."""
    from lstmviz_cli.analysis.evidence import UnitCorrelation, UnitTests
    from lstmviz_cli.page.sections.units import reading

    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=4, seed=11)
    run = make_run(trace, name="tiny.pt", text=TEXT)
    analysis = analyze_run(run, AnalysisOptions(permutations=0, ablate_top=0))
    rows = (UnitCorrelation("inside_quotes", "lstm/l0/fwd/h", 1, -0.75, 0.0035, True, 0.35),
            UnitCorrelation("whitespace", "lstm/l0/fwd/h", 2, -0.68, 0.0035, True, 0.66))
    tests = UnitTests(ranked=rows, not_significant=(), permutations=2000, alpha=0.05, pairs_tested=16,
                      block_lengths={"inside_quotes": 3, "whitespace": 1})
    text = reading(dataclasses.replace(analysis, units=list(rows), unit_tests=tests))
    assert "reaches |r| = 0.35 for this feature)" in text  # well above its control: nothing added
    assert ("(r = -0.68, p = 0.0035; an untrained model reaches 0.66, about as much: no more than the architecture "
            "gives untrained)") in text
    few = dataclasses.replace(tests, ranked=(), not_significant=rows, permutations=10)
    text = reading(dataclasses.replace(analysis, units=[], unit_tests=few))
    assert text.startswith("No unit can be significant with 10 permutations") and "chance" not in text


def test_ablate_option_checks_the_named_unit_and_refuses_a_bad_one(charlm) -> None:
    from lstmviz_cli.errors import ExplainError
    from lstmviz_cli.explain.gather import ModelContext, _ablations

    run, analysis = charlm
    named = analysis.ablations[-1]  # --ablate lstm/l0/fwd:49=0.9, after the default checks
    assert named.how == "set to +0.9 (--ablate)" and str(named.units[0]) == "lstm/l0/fwd:49=0.9"
    assert named.feature == "inside_quotes" and named.changed
    context = ModelContext(model=run.loaded.model, values=run.sample.values, batch_first=True, step=None,
                           task="char-lm", output_labels=(), has_prediction=True)
    with pytest.raises(ExplainError, match="units 0..95"):
        _ablations(run, analysis, AnalysisOptions(ablate=("lstm/l0/fwd:400",), ablate_top=0), context, [])


# -- 4. corpus mode ----------------------------------------------------------------------------------------


def test_batch_text_features_equal_the_character_walk() -> None:
    vocab = list('ab "()[]{}\n.!?AZ09x')
    ids = np.random.default_rng(1).integers(0, len(vocab), size=(12, 61))
    got = batch_text_features(ids, vocab)
    for row in range(len(ids)):
        want = text_features([vocab[i] for i in ids[row]])
        for name, values in want.items():
            np.testing.assert_array_equal(got[name][row], values, err_msg=name)
    words = ["the", '"hi', 'x"', "(a", "b)"]  # multi-character tokens: the walk itself
    ids = np.array([[0, 1, 2, 3, 4]])
    assert batch_text_features(ids, words)["inside_quotes"].tolist() == [[0, 1, 0, 0, 0]]


def test_pooled_statistics_equal_the_in_memory_analysis_of_the_same_sequences() -> None:
    full = numpy_trace("LSTM", steps=30, batch=7, num_layers=2, hidden_size=5, seed=3)
    full.layers[0].series["f"][:, :, 1] = 0.995  # a pinned forget unit: a finding to compare
    th = Thresholds()
    feature = np.random.default_rng(0).normal(size=(7, 30))
    reducer = CorpusReducer(full.layers, th, features=["x"], window_steps=40)
    for first, stop in ((0, 2), (2, 3), (3, 7)):  # batches of different sizes, in order
        reducer.add(_cut(full, first, stop), ids=np.zeros((stop - first, 30), dtype=np.int64),
                    features={"x": feature[first:stop]})
    pooled = reducer.result(lambda i: "a")
    for got, want in zip(pooled.gate_stats, gate_statistics(full, th), strict=True):
        assert (got.prefix, got.series) == (want.prefix, want.series)
        np.testing.assert_allclose([got.mean, got.std], [want.mean, want.std], rtol=1e-5)
        assert got.frac_low == want.frac_low and got.frac_high == want.frac_high
        if want.time_std is not None:
            assert got.time_std == pytest.approx(want.time_std, rel=1e-5)
    for got, want in zip(pooled.saturation, gate_saturation(full, th), strict=True):
        np.testing.assert_array_equal(got.frac_low, want.frac_low)
    assert [f.message for f in diagnose(full, saturation=pooled.saturation, thresholds=th, pooled=pooled.layers)] \
        == [f.message for f in diagnose(full, thresholds=th)] != []
    # Pearson r over every step of every sequence: the in-memory ranking of the sequences laid end to end.
    flat = Trace(layers=[dataclasses.replace(layer, series={k: v.reshape(1, -1, v.shape[2])
                                                             for k, v in layer.series.items()})
                         for layer in full.layers], modules=full.modules)
    want = rank_units(flat, {"x": feature.reshape(-1)})
    assert [(u.key, u.unit) for u in pooled.units] == [(u.key, u.unit) for u in want]
    np.testing.assert_allclose([u.r for u in pooled.units], [u.r for u in want], rtol=1e-5)
    assert pooled.window[0][1].shape == (40, 5) and pooled.sequences == 7 and pooled.steps == 210


def test_the_reducer_keeps_a_fixed_size_whatever_the_number_of_batches() -> None:
    trace = numpy_trace("LSTM", steps=20, batch=3, hidden_size=4, seed=2)
    reducer = CorpusReducer(trace.layers, Thresholds(), features=["x"], window_steps=25)

    def size() -> int:
        total = 0
        for value in vars(reducer).values():
            total += sum(getattr(a, "nbytes", 0) for a in (value.values() if isinstance(value, dict) else [value]))
        state = reducer.result(lambda i: "a")
        return total + sum(a.nbytes for _, a in state.window) + sum(
            len(e.highest) + len(e.lowest) for e in state.excerpts)

    sizes = []
    for batch in range(40):
        reducer.add(trace, ids=np.zeros((3, 20), dtype=np.int64), features={"x": np.ones((3, 20)) * batch},
                    inputs=np.zeros((3, 20), dtype=np.int64))
        if batch in (4, 39):
            sizes.append(size())
    assert sizes[0] == sizes[1] and len(reducer.window_inputs) == 2


def test_corpus_reading_lines_paragraphs_folders_and_arrays(tmp_path: Path) -> None:
    loaded = load_checkpoint(SAMPLES / "charlm.pt")
    lines = tmp_path / "lines.txt"
    lines.write_text("Anna said.\n\nBen ran.\n")  # a blank line between lines: paragraphs
    assert open_corpus(loaded, lines).split == "paragraphs"
    lines.write_text("Anna said.\nBen ran.\n   \n")
    corpus = open_corpus(loaded, lines)
    assert (corpus.split, corpus.count) == ("lines", 2)
    assert [s.text for s in corpus] == ["Anna said.", "Ben ran."]
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text("Ben.\n")
    (folder / "a.txt").write_text("Anna\nsaid.\n")
    (folder / "notes.md").write_text("ignored")
    (folder / "c.txt").write_text("  \n")  # empty: no sequence, counted
    corpus = open_corpus(loaded, folder)
    assert [s.where for s in corpus] == ["file a.txt", "file b.txt"] and corpus.ignored == 1
    assert corpus.description.endswith("2 .txt files; 1 other file ignored; 1 empty .txt file skipped")
    np.save(tmp_path / "batch.npy", np.array([[1, 2, 3], [4, 5, 6]]))
    assert [s.values.tolist() for s in open_corpus(loaded, tmp_path / "batch.npy")] == [[1, 2, 3], [4, 5, 6]]
    np.savez(tmp_path / "padded.npz", input=np.array([[1, 2, 3], [4, 5, 0]]), lengths=np.array([3, 2]))
    assert [len(s.values) for s in open_corpus(loaded, tmp_path / "padded.npz")] == [3, 2]
    lines.write_text("Anna said.\nBen ran \u00e9.\n")
    with pytest.raises(InputError, match=r"line 2.*outside the model's vocabulary"):
        list(open_corpus(loaded, lines))
    (tmp_path / "batch.csv").write_text("1,2\n")
    with pytest.raises(InputError, match="corpus mode reads"):
        open_corpus(loaded, tmp_path / "batch.csv")


def test_corpus_report_pools_every_sequence_and_equals_the_batch_analysis(tmp_path: Path) -> None:
    text = (SAMPLES / "charlm.txt").read_text().replace("\n", " ")
    rows = [text[k * 40:(k + 1) * 40] for k in range(9)]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(rows) + "\n")
    run = load_and_trace(LoadOptions(checkpoint=SAMPLES / "charlm.pt", input=corpus), corpus=True)
    assert run.sample.text == rows[0] and "9 lines" in run.sample.description
    seen: list[tuple[int, int]] = []
    analysis = analyze_run(run, AnalysisOptions(corpus=corpus, ablate_top=0, permutations=200),
                           progress=lambda done, total: seen.append((done, total)))
    assert analysis.corpus is not None and (analysis.corpus.sequences, analysis.corpus.steps) == (9, 360)
    assert seen[-1] == (9, 9)
    # The same nine sequences as one in-memory batch, analysed the ordinary way.
    np.save(tmp_path / "batch.npy", np.stack([np.array([run.loaded.meta["vocab"].index(c) for c in r]) for r in rows]))
    batch = load_and_trace(LoadOptions(checkpoint=SAMPLES / "charlm.pt", input=tmp_path / "batch.npy"))
    reference = analyze_trace(batch.trace, thresholds=Thresholds())
    for got, want in zip(analysis.gate_stats, reference.gate_stats, strict=True):
        assert got.mean == pytest.approx(want.mean, rel=1e-5) and got.std == pytest.approx(want.std, rel=1e-5)
    assert [f.message for f in analysis.findings if f.prefix] == [f.message for f in reference.findings if f.prefix]
    ex = next(e for e in analysis.excerpts if (e.prefix, e.unit) == ("lstm/l0/fwd", 49))
    top = ex.lowest[0]  # the quote unit is most negative inside quotes
    assert rows[top.sequence][top.step] == top.token and "".join(top.before).endswith(rows[top.sequence][:top.step][-5:])
    page = report_page(run, analysis, ViewOptions())
    sections = {s["id"]: s for s in outline(page)["sections"]}
    excerpts = next(b for b in sections["unit-excerpts"]["blocks"] if "excerpts" in b)
    assert excerpts["count"] == 192 and "sequence" in excerpts["first"][0][4]
    assert analysis_json(analysis)["corpus"]["sequences"] == 9


# -- 5. hypothesis search ----------------------------------------------------------------------------------


def test_hypothesis_data_is_one_byte_per_value_within_the_budget(monkeypatch) -> None:
    values = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0, np.nan]])
    decoded = np.frombuffer(quantise(values), dtype=np.uint8) / 255 * 2 - 1
    np.testing.assert_allclose(decoded[:5], values[0, :5], atol=1 / 255)
    monkeypatch.setattr("lstmviz_cli.page.sections.hypothesis.MAX_SEARCH_BYTES", 600)
    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=50, seed=1)
    run = make_run(trace, name="long.pt", text=TEXT)
    page = report_page(run, analyze_trace(trace, tokens=list(TEXT)), ViewOptions())
    block = next(b for b in page.blocks() if type(b).__name__ == "HypothesisSearch")
    assert len(block.tokens) == 600 // 50 and len(block.units) == 50
    assert len(base64.b64decode(block.data)) == len(block.tokens) * len(block.units) <= 600
    section = next(s for s in outline(page)["sections"] if s["id"] == "hypothesis")
    assert any("searchable: the first 12 of 24 steps" in b.get("text", "") for b in section["blocks"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (make browser installs it)")
def test_selecting_a_span_lists_the_unit_that_marks_it_and_finds_the_other_place(tmp_path: Path) -> None:
    from lstmviz_cli.render.html import render_html

    text = 'He said "hi there" and "ok" then'
    trace = numpy_trace("LSTM", steps=len(text), hidden_size=4, seed=5)
    quoted = np.array([float(ch) for ch in "".join("1" if 8 <= t <= 17 or 23 <= t <= 26 else "0"
                                                   for t in range(len(text)))])
    h = trace.layers[0].series["h"]
    h[0, :, :] = 0.0
    h[0, :, 2] = -0.9 * quoted  # unit 2 is on (negative side) exactly inside quotes
    vocab = tuple(sorted(set(text)))
    run = make_run(trace, name="q.pt", text=text, vocab=vocab)
    run.sample.values = np.array([[vocab.index(ch) for ch in text]])
    analysis = analyze_run(run, AnalysisOptions(permutations=0))  # no model: the trace's own evidence
    assert analysis.excerpts and analysis.excerpts[2].lowest[0].token == '"'  # unit 2 is lowest at a quote step
    html = render_html(report_page(run, analysis, ViewOptions()), drawer=lambda spec: "<svg></svg>")
    page = tmp_path / "q.html"
    page.write_text(html, encoding="utf-8")
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                             page.as_uri() + "#select=8-17&threshold=0.5&top=1"],
                            capture_output=True, text=True, timeout=120, check=False)
    dom = result.stdout
    results = re.search(r'class="hypothesis-results"[^>]*>(.*?)</div>', dom, re.S).group(1)
    assert "1 unit is on inside steps 8–17 and off just outside" in results
    assert "the top unit is on at 1 other place" in results and "−lstm/l0/fwd:2" in results
    marked = [int(t) for t in re.findall(r'<span data-t="(\d+)" class="hyp-match">', dom)]
    assert marked == [23, 24, 25, 26]
    assert re.search(r'class="excerpts" id="[^"]+" data-ready="yes"', dom)  # the excerpt picker ran too
    # Nothing selected: the hint, without its "needs the page's script" caveat (the script ran).
    result = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120, check=False)
    hint = re.search(r'class="hypothesis-results"[^>]*>(.*?)</div>', result.stdout, re.S).group(1)
    assert "Select a span of the text above" in hint and "needs the page's script" not in hint


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (make browser installs it)")
def test_a_selection_dragged_from_outside_the_text_selects_the_steps_it_covers(tmp_path: Path) -> None:
    """A drag that starts above the text (in the controls) and ends inside it: the steps covered are searched
    (the page kept the previous selection's results: its anchor was outside the text)."""
    from cdp import Browser

    from lstmviz_cli.render.html import render_html

    text = 'He said "hi there" and "ok" then'
    trace = numpy_trace("LSTM", steps=len(text), hidden_size=4, seed=5)
    trace.layers[0].series["h"][0, :, :] = 0.0
    trace.layers[0].series["h"][0, :12, 1] = 0.9  # unit 1 is on over steps 0-11 only
    vocab = tuple(sorted(set(text)))
    run = make_run(trace, name="q.pt", text=text, vocab=vocab)
    run.sample.values = np.array([[vocab.index(ch) for ch in text]])
    analysis = analyze_run(run, AnalysisOptions(permutations=0))
    page = tmp_path / "q.html"
    page.write_text(render_html(report_page(run, analysis, ViewOptions()), drawer=lambda spec: "<svg></svg>"),
                    encoding="utf-8")
    assert CHROMIUM is not None
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open(page)
        result = browser.evaluate("""(() => {
          const root = document.querySelector('.hypothesis');
          const label = root.querySelector('.hypothesis-controls label').firstChild;  // a text node above the text
          const last = root.querySelector('span[data-t="11"]').firstChild;
          window.getSelection().setBaseAndExtent(label, 0, last, 1);
          document.body.dispatchEvent(new MouseEvent('mouseup', {bubbles: true}));
          return root.querySelector('.hypothesis-results').innerText;
        })()""")
    assert result.startswith("1 unit is on inside steps 0–11 and off just outside"), result
