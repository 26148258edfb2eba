"""Gradient saliency and the memory-length probe on tiny torch models with known answers."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from lstmviz_cli.analysis.memory import memory_horizon  # noqa: E402
from lstmviz_cli.analysis.options import AnalysisOptions  # noqa: E402
from lstmviz_cli.analysis.serialize import analysis_json  # noqa: E402
from lstmviz_cli.explain.orchestrate import analyze_run  # noqa: E402
from lstmviz_cli.explain.probe import memory_probe  # noqa: E402
from lstmviz_cli.explain.saliency import compute_saliency  # noqa: E402
from lstmviz_cli.loading.records import LoadedModel, ModelInfo, SampleInput  # noqa: E402
from lstmviz_cli.tracing.records import Run  # noqa: E402


class FirstStepOnly(nn.Module):
    """Token model whose output reads only step 0 (through an LSTM over that one step)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(5, 4)
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.fc = nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(x)
        out, _ = self.lstm(emb[:, :1] + 0 * emb.sum(dim=1, keepdim=True))
        return self.fc(out[:, -1])


class Features(nn.Module):
    """Feature model: LSTM over every step, head on the last step."""

    def __init__(self, forget_bias: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.lstm = nn.LSTM(2, 4, batch_first=True)
        with torch.no_grad():
            self.lstm.weight_hh_l0.zero_()
            self.lstm.bias_hh_l0.zero_()
            self.lstm.bias_ih_l0[4:8] = forget_bias
        self.fc = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


def test_saliency_of_a_model_where_only_step_0_matters_peaks_at_step_0() -> None:
    model = FirstStepOnly().eval()
    tokens = np.array([[1, 2, 3, 4, 0, 1, 2]])
    result = compute_saliency(model, tokens, kind="topk", output_labels=list("abcde"))
    assert result.values.shape == (7,)
    assert result.values[0] > 0
    np.testing.assert_array_equal(result.values[1:], np.zeros(6))
    assert result.step == 6 and "log-probability of the predicted" in result.target
    assert memory_horizon(result.values, result.step) == 7  # all the way back
    assert set(result.param_norms) >= {"embedding.weight", "lstm.weight_ih_l0", "fc.weight"}
    assert all(value >= 0 for value in result.param_norms.values())
    # Per gate: one step from a zero state, so the forget gate (f * c_prev, c_prev = 0) gets no gradient.
    gates = result.gate_norms["lstm/l0/fwd"]
    assert list(gates) == ["i", "f", "g", "o"] and gates["f"] == 0.0 and gates["i"] > 0 and gates["o"] > 0
    whole = sum(result.param_norms[f"lstm.{p}_l0"] ** 2 for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    assert sum(v**2 for v in gates.values()) == pytest.approx(whole, rel=1e-6)
    # The model is left as it was: eval mode, no .grad, and the hook removed.
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert not model.embedding._forward_hooks


def test_saliency_features_with_forgetful_lstm_sees_only_the_last_step() -> None:
    model = Features(forget_bias=-30.0).eval()  # f ~ 0: c_t depends on x_t alone
    x = np.random.default_rng(0).normal(size=(1, 6, 2)).astype(np.float32)
    result = compute_saliency(model, x, kind="values")
    assert result.values[-1] > 0
    assert result.values[:-1].max() < 1e-8 * result.values[-1]
    assert memory_horizon(result.values, result.step) == 1
    assert result.target == "predicted value at step 5"


def test_saliency_reads_a_chosen_step_of_a_per_step_output() -> None:
    class PerStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.embedding = nn.Embedding(4, 3)
            self.lstm = nn.LSTM(3, 5, batch_first=True)
            self.fc = nn.Linear(5, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.lstm(self.embedding(x))[0])

    result = compute_saliency(PerStep().eval(), np.array([[0, 1, 2, 3, 0]]), step=2)
    assert result.step == 2
    np.testing.assert_array_equal(result.values[3:], [0.0, 0.0])  # causal: later steps cannot matter
    assert (result.values[:3] > 0).all()


class TokenStack(nn.Module):
    """Embedding, a 2-layer unidirectional LSTM and a GRU (time-major), a head on every step."""

    def __init__(self, bidirectional: bool = False) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embedding = nn.Embedding(7, 5)
        self.lstm = nn.LSTM(5, 6, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.gru = nn.GRU(6 * (2 if bidirectional else 1), 4)  # time-major on purpose
        self.fc = nn.Linear(4, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(x))
        out, _ = self.gru(out.transpose(0, 1))
        return self.fc(out.transpose(0, 1))


def test_a_saliency_window_is_exact_for_the_steps_it_covers() -> None:
    """Over budget, only the last steps are differentiated, with the same gradients as the full pass."""
    from lstmviz_cli.explain.saliency import saliency_bytes_per_step

    model = TokenStack().eval()
    tokens = np.random.default_rng(0).integers(0, 7, size=(1, 300))
    full = compute_saliency(model, tokens, step=250, output_labels=list("abcdefg"))
    per_step = saliency_bytes_per_step(model)
    windowed = compute_saliency(model, tokens, step=250, output_labels=list("abcdefg"), budget=100 * per_step)
    assert full.window_start == 0 and windowed.window_start == 250 - 100 + 1
    start = windowed.window_start
    assert np.isnan(windowed.values[:start]).all()
    np.testing.assert_allclose(windowed.values[start:], full.values[start:], rtol=1e-5, atol=1e-12)
    assert windowed.step == 250 and "gradients through steps 151–250 only" in windowed.target
    assert windowed.target.startswith(full.target)  # the same output is explained: the model ran unchanged
    # The recurrent modules got their own forward back.
    assert "forward" not in vars(model.lstm) and "forward" not in vars(model.gru)


def test_a_bidirectional_model_over_budget_says_why_it_has_no_saliency() -> None:
    model = TokenStack(bidirectional=True).eval()
    tokens = np.zeros((1, 300), dtype=np.int64)
    with pytest.raises(ValueError, match="bidirectional layer reads the future"):
        compute_saliency(model, tokens, budget=1000)
    assert compute_saliency(model, tokens[:, :5], budget=1 << 30).window_start == 0  # within budget: fine


def test_memory_probe_remembering_vs_forgetting_stack() -> None:
    x = np.random.default_rng(0).normal(size=(1, 10, 2)).astype(np.float32)
    forgetful = memory_probe(Features(forget_bias=-30.0).eval(), x, max_length=32)
    assert forgetful.lengths == [1, 2, 4, 8, 16, 32] and forgetful.prefix == "lstm/l0/fwd"
    assert forgetful.dependence[0] > 0.1
    assert max(forgetful.dependence[1:]) < 1e-6  # the key is gone after one step
    keeping = memory_probe(Features(forget_bias=30.0).eval(), x, max_length=32)
    assert min(keeping.dependence) > 0.02  # f ~ 1: the key stays in c


def _run(model: nn.Module, values: np.ndarray, kind: str) -> Run:
    from lstmviz_cli.tracing.sample import trace_sample

    info = ModelInfo(name="m.pt", path="m.pt", format="state_dict", size_bytes=1, n_params=1, device="cpu",
                     task="classification", output_labels=tuple("abcde"))
    loaded = LoadedModel(model=model, info=info, meta={})
    labels = [str(v) for v in values[0]] if kind == "tokens" else None
    sample = SampleInput(values=values, kind=kind, labels=labels, description="test")
    return Run(loaded=loaded, sample=sample, trace=trace_sample(loaded, sample))


def test_analyze_run_end_to_end_with_saliency_and_probe() -> None:
    run = _run(FirstStepOnly().eval(), np.array([[1, 2, 3, 4, 0, 1]]), "tokens")
    analysis = analyze_run(run, AnalysisOptions(memory_probe=True))
    assert analysis.saliency is not None and analysis.saliency.values.argmax() == 0
    assert analysis.saliency.horizon == 6
    assert analysis.memory_probe is not None
    # The LSTM runs over one step only: too few values to judge dead or saturated units.
    assert analysis.unjudged == {"lstm/l0/fwd": 1} and len(analysis.notes) == 2
    assert analysis.notes[0].startswith("lstm/l0/fwd ran 1 step on a 6-step input")
    assert "findings skipped" in analysis.notes[1]
    assert analysis.prediction is not None and analysis.prediction.kind == "topk"
    doc = analysis_json(analysis)
    assert doc["saliency"]["horizon"] == 6 and len(doc["saliency"]["values"]) == 6


def test_analyze_run_reads_the_prediction_once_and_changes_neither_the_run_nor_the_saliency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15: `predict` ran twice (to pick saliency's target, then in the analysis) and the analysis
    wrote the memory horizon into the saliency record it was given."""
    from dataclasses import replace

    from lstmviz_cli.analysis import analyze, prediction
    from lstmviz_cli.analysis.analyze import analyze_trace
    from lstmviz_cli.explain import orchestrate

    calls = []

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return prediction.predict(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(orchestrate, "predict", counted)
    assert not hasattr(analyze, "predict")  # the pure stage takes the prediction; it never reads one
    run = _run(FirstStepOnly().eval(), np.array([[1, 2, 3, 4, 0, 1]]), "tokens")
    meta = copy.deepcopy(run.trace.meta)
    analysis = analyze_run(run, AnalysisOptions())
    assert len(calls) == 1 and analysis.prediction is not None and analysis.prediction.kind == "topk"
    assert run.trace.meta == meta
    given = replace(analysis.saliency, horizon=0)
    again = analyze_trace(run.trace, saliency=given, prediction=analysis.prediction)
    assert given.horizon == 0 and again.saliency is not given and again.saliency.horizon == 6
    assert again.prediction is analysis.prediction
    with pytest.raises(AttributeError):  # frozen: nothing downstream can rewrite it either
        given.horizon = 3  # type: ignore[misc]


def test_analyze_run_bad_saliency_step_is_an_input_error() -> None:
    from lstmviz_cli.errors import InputError

    run = _run(FirstStepOnly().eval(), np.array([[1, 2, 3]]), "tokens")
    with pytest.raises(InputError, match="--saliency-step 7 is outside"):
        analyze_run(run, AnalysisOptions(saliency_step=7))


def test_analyze_run_notes_a_model_that_cannot_be_differentiated() -> None:
    class NoEmbedding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(1, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x.float().unsqueeze(-1))[0]

    run = _run(NoEmbedding().eval(), np.array([[1, 2, 3]]), "tokens")
    analysis = analyze_run(run, AnalysisOptions())
    assert analysis.saliency is None
    assert analysis.notes and analysis.notes[0].startswith("gradient saliency skipped: ValueError: token inputs")


def test_saliency_and_probe_on_cuda_match_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = Features(forget_bias=1.0).eval()
    x = np.random.default_rng(0).normal(size=(1, 8, 2)).astype(np.float32)
    cpu = compute_saliency(model, x, kind="values")
    gpu = compute_saliency(model.to("cuda"), x, kind="values", device="cuda")
    np.testing.assert_allclose(gpu.values, cpu.values, rtol=1e-4, atol=1e-7)
    probe = memory_probe(model, x, max_length=16, device="cuda")
    assert probe.lengths == [1, 2, 4, 8, 16]


# -- the sample models: the numbers the README quotes --------------------------------------------

SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_models"


def _sample_analysis(name: str, **view: object):  # noqa: ANN202
    from lstmviz_cli.commands.options import LoadOptions
    from lstmviz_cli.commands.pipeline import load_and_trace

    path = SAMPLES / name
    if not path.is_file():
        pytest.skip(f"{name} is not trained yet")
    torch.set_num_threads(1)
    run = load_and_trace(LoadOptions(checkpoint=path))
    return analyze_run(run, AnalysisOptions(**view))


def test_charlm_has_a_quote_or_bracket_unit_found_by_itself() -> None:
    analysis = _sample_analysis("charlm.pt")
    structural = [u for u in analysis.units if u.feature in ("inside_quotes", "bracket_depth")]
    assert structural and abs(structural[0].r) >= 0.7, structural[:3]


def test_digitsum_saliency_first_two_digits_stand_out() -> None:
    analysis = _sample_analysis("digitsum.pt")
    sal = analysis.saliency
    assert sal is not None and sal.step == len(sal.values) - 1
    values = sal.values
    middle = values[2:-1]  # the distractor steps between the digits and the last input
    assert values[0] > 3 * middle.mean() and values[1] > 2 * middle.mean()
    assert min(values[0], values[1]) > middle.max()
    assert sal.horizon == len(values)  # the answer needs the very first steps


def test_cli_report_labels_and_json(tmp_path) -> None:  # noqa: ANN001
    """The report command's analysis options end to end: --labels, --saliency-step, --memory-probe, --json."""
    import json

    from typer.testing import CliRunner

    from lstmviz_cli.cli import app

    if not (SAMPLES / "digitsum.pt").is_file():
        pytest.skip("digitsum.pt is not trained yet")
    labels = tmp_path / "labels.csv"
    digits = [6, 7, 0, 0, 1, 0, 0, 0, 0, 0]
    labels.write_text("is_zero,position\n" + "".join(f"{int(d == 0)},{t}\n" for t, d in enumerate(digits)))
    out, summary = tmp_path / "r.html", tmp_path / "s.json"
    args = ["report", str(SAMPLES / "digitsum.pt"), "-o", str(out), "--json", str(summary),
            "--labels", str(labels), "--saliency-step", "5", "--memory-probe", "--saturation-high", "0.8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(summary.read_text())
    assert doc["generator"] == "lstmviz-generated"
    # Ten steps are too few for "is zero" to be significant: it is listed, not ranked (issue 18).
    tested = doc["units"]["ranked"] + doc["units"]["not_significant"]
    assert {u["feature"] for u in tested} == {"label:is_zero", "label:position"}
    assert all(u["p"] is not None for u in tested)
    # digitsum's head reads the last step only: the chosen step cannot apply, and a note says so.
    assert doc["saliency"]["step"] == 9 and len(doc["saliency"]["values"]) == 10
    assert doc["notes"] == [
        "--saliency-step 5 ignored: the model's output has no time axis, so the saliency is of its "
        "output after the last step (9)"
    ]
    assert doc["memory_probe"]["lengths"][0] == 1
    assert doc["thresholds"]["saturation_high"] == 0.8
    html = out.read_text()
    assert 'id="interpretable-units"' in html and "label:is zero" in html


def test_cli_report_bad_labels_is_a_one_line_error(tmp_path) -> None:  # noqa: ANN001
    from lstmviz_cli.cli import main

    if not (SAMPLES / "digitsum.pt").is_file():
        pytest.skip("digitsum.pt is not trained yet")
    labels = tmp_path / "labels.csv"
    labels.write_text("a\n1\n2\n")
    code = main(["report", str(SAMPLES / "digitsum.pt"), "-o", str(tmp_path / "r.html"), "--labels", str(labels)])
    assert code == 2
    assert not (tmp_path / "r.html").exists()


def test_cli_long_sequence_report_is_compact_and_windowed(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The T = 100,000 recipe at a size CI affords: float16 trace, saliency window, bounded page."""
    import json

    from lstmviz_cli.cli import main
    from lstmviz_cli.commands import pipeline
    from lstmviz_cli.explain import saliency

    torch.manual_seed(0)
    lstm = nn.LSTM(4, 32, batch_first=True)
    torch.save(lstm.state_dict(), tmp_path / "long.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((20_000, 4)).astype(np.float32))
    monkeypatch.setattr(pipeline, "REPORT_FLOAT16_ABOVE", 1 << 20)  # 20,000 x 6 x 32 x 4 B = 15 MB: over
    monkeypatch.setattr(saliency, "SALIENCY_BUDGET", 2000 * saliency.saliency_bytes_per_step(lstm))
    out, summary = tmp_path / "long.html", tmp_path / "long.json"
    assert main(["report", str(tmp_path / "long.pt"), "--input", str(tmp_path / "x.npy"), "-o", str(out),
                 "--json", str(summary)]) == 0
    data = json.loads(summary.read_text())
    sal = data["saliency"]
    assert sal["window_start"] == 20_000 - 2000 and sal["step"] == 19_999
    assert all(v is None for v in sal["values"][: sal["window_start"]])
    assert all(v is not None for v in sal["values"][sal["window_start"]:])
    assert any("kept as float16" in note for note in data["notes"])
    html = out.read_text()
    assert "not differentiated" in html and "Only steps 18000–19999 were differentiated" in html
    assert len(html.encode()) < 5_000_000 and "averaged over bins of 50 steps" in html
