"""Shared fixtures: small Traces computed with real LSTM/GRU equations in NumPy (no torch, no tracer).

Stable names other test modules may import or request: `numpy_trace`, `make_run`, and the fixtures
`lstm_trace`, `gru_trace`, `bilstm_trace`, `lstm_run`, `gru_run`, `bilstm_run`, `hostile_run`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.loading.records import LoadedModel, ModelInfo, RecurrentConfig, SampleInput
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.tracing.records import LayerTrace, Run, Trace, TraceMeta

HOSTILE = '<script>alert(1)</script></script></svg>"\'&\u202eevil\u202c\U0001f600\x07'


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _run_direction(
    cfg: RecurrentConfig, w: dict[str, np.ndarray], x: np.ndarray, reverse: bool
) -> dict[str, np.ndarray]:
    """PyTorch's equations for one layer and direction over x (batch, time, in); series in input order."""
    batch, steps, _ = x.shape
    hidden = cfg.hidden_size
    h = np.zeros((batch, cfg.output_size))
    c = np.zeros((batch, hidden))
    names = ("i", "f", "g", "o", "c", "h") if cfg.family == "lstm" else ("r", "z", "n", "h")
    out = {name: np.zeros((batch, steps, cfg.output_size if name == "h" else hidden)) for name in names}
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        gi = x[:, t] @ w["weight_ih"].T + w["bias_ih"]
        gh = h @ w["weight_hh"].T + w["bias_hh"]
        if cfg.family == "lstm":
            a = gi + gh
            i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
            i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
            c = f * c + i * g
            h = o * np.tanh(c)
            if cfg.proj_size:
                h = h @ w["weight_hr"].T
            values = {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}
        else:
            r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
            z = _sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
            n = np.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
            h = (1 - z) * n + z * h
            values = {"r": r, "z": z, "n": n, "h": h}
        for name in names:
            out[name][:, t] = values[name]
    return {name: array.astype(np.float32) for name, array in out.items()}


def numpy_trace(
    kind: str = "LSTM",
    *,
    input_size: int = 3,
    hidden_size: int = 6,
    num_layers: int = 1,
    bidirectional: bool = False,
    proj_size: int = 0,
    steps: int = 12,
    batch: int = 1,
    module: str = "lstm",
    seed: int = 0,
    inputs: np.ndarray | None = None,
) -> Trace:
    """A Trace of an nn.LSTM/nn.GRU-shaped module with random weights, computed exactly in NumPy."""
    rng = np.random.default_rng(seed)
    cfg = RecurrentConfig(
        kind=kind, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers,
        bidirectional=bidirectional, proj_size=proj_size, batch_first=True,
    )
    gates = 4 if cfg.family == "lstm" else 3
    x = inputs if inputs is not None else rng.normal(size=(batch, steps, input_size))
    layers: list[LayerTrace] = []
    for k in range(num_layers):
        layer_in = x.shape[2]
        outputs = []
        for direction in ("fwd", "bwd") if bidirectional else ("fwd",):
            scale = 1.0 / np.sqrt(hidden_size)
            w = {
                "weight_ih": rng.uniform(-2, 2, size=(gates * hidden_size, layer_in)) * scale,
                "weight_hh": rng.uniform(-2, 2, size=(gates * hidden_size, cfg.output_size)) * scale,
                "bias_ih": rng.uniform(-1, 1, size=gates * hidden_size) * scale,
                "bias_hh": rng.uniform(-1, 1, size=gates * hidden_size) * scale,
            }
            if proj_size:
                w["weight_hr"] = rng.uniform(-1, 1, size=(proj_size, hidden_size)) * scale
            series = _run_direction(cfg, w, x, reverse=direction == "bwd")
            layers.append(
                LayerTrace(
                    module=module, layer=k, direction=direction, config=cfg, series=series,
                    weights={name: value.astype(np.float32) for name, value in w.items()},
                )
            )
            outputs.append(series["h"].astype(np.float64))
        x = np.concatenate(outputs, axis=2)
    steps_total = x.shape[1]
    path = [
        {"name": module, "type": kind, "in": [[batch, steps_total, input_size]], "out": [list(x.shape)]},
        {"name": "fc", "type": "Linear", "in": [list(x.shape)], "out": [[batch, steps_total, 5]]},
    ]
    output = rng.normal(size=(batch, steps_total, 5)).astype(np.float32)
    return Trace(layers=layers, modules={module: cfg}, verify_error=3.1e-7, output=output, meta=TraceMeta(path=path))


def make_run(
    trace: Trace,
    *,
    name: str = "tiny.pt",
    text: str | None = None,
    labels: list[str] | None = None,
    vocab: tuple[str, ...] | None = None,
    task: str | None = None,
    kind: str | None = None,
) -> Run:
    """A pipeline Run around `trace`: a ModelInfo, a SampleInput (text or float features), no torch model."""
    steps = trace.layers[0].steps
    n_params = sum(int(a.size) for layer in trace.layers for a in layer.weights.values())
    info = ModelInfo(
        name=name, path=f"/models/{name}", format="state_dict", size_bytes=4 * n_params + 1234,
        n_params=n_params, device="cpu", task=task, vocab=vocab,
    )
    first = next(iter(trace.modules.values()))
    if text is not None or kind == "tokens":
        ids = np.zeros((1, steps), dtype=np.int64)
        sample = SampleInput(
            values=ids, kind="tokens", labels=labels if labels is not None else (list(text) if text else None),
            description=f"sample text: {steps} characters", text=text,
        )
    else:
        sample = SampleInput(
            values=np.zeros((1, steps, first.input_size), dtype=np.float32), kind="features",
            labels=labels, description=f"sample sequence: {steps} steps × {first.input_size} features",
        )
    return Run(loaded=LoadedModel(model=None, info=info, meta={}), sample=sample, trace=trace)


TEXT = 'He said "hi (there)".\nOk'


@pytest.fixture(autouse=True)
def _no_ci_job_summary(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run `lstmviz check` in-process: on GitHub Actions it would append to this suite's own job summary."""
    for name in ("GITHUB_STEP_SUMMARY", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def lstm_trace() -> Trace:
    return numpy_trace("LSTM", steps=len(TEXT), hidden_size=6)


@pytest.fixture
def gru_trace() -> Trace:
    return numpy_trace("GRU", steps=9, hidden_size=5, module="gru")


@pytest.fixture
def bilstm_trace() -> Trace:
    return numpy_trace("LSTM", steps=10, hidden_size=6, num_layers=2, bidirectional=True, proj_size=3)


@pytest.fixture
def lstm_run(lstm_trace: Trace) -> Run:
    vocab = tuple(sorted(set(TEXT))) + ("a", "b", "c")
    return make_run(lstm_trace, name="charlm.pt", text=TEXT, vocab=vocab[:5], task="char-lm")


@pytest.fixture
def gru_run(gru_trace: Trace) -> Run:
    return make_run(gru_trace, name="gru.safetensors", labels=[str(d) for d in range(9)], kind="tokens")


@pytest.fixture
def bilstm_run(bilstm_trace: Trace) -> Run:
    return make_run(bilstm_trace, name="sine.pt")


@pytest.fixture
def hostile_run() -> Run:
    """Every user-controlled string holds markup, quotes, RTL override, emoji and a control character."""
    tokens = [HOSTILE, "</script>", "<b>x</b>", "a", '"', "\u05e9\u05dc\u05d5\u05dd", "\x00", "$x$", "\\l"]
    trace = numpy_trace("LSTM", steps=len(tokens), hidden_size=4, module=HOSTILE)
    trace.meta.path[1]["name"] = "</svg><script>alert(2)</script>"
    run = make_run(trace, name=HOSTILE + ".pt", labels=tokens, kind="tokens", vocab=tuple(tokens))
    run.sample.description = HOSTILE
    return run


def stand_in_analysis(trace: Trace) -> Any:
    """The analysis contract (gate_stats, prediction) from the real analysis module when present."""
    from lstmviz_cli.analysis.analyze import analyze_trace

    return analyze_trace(trace)


def split_options(**kwargs: object) -> tuple[ViewOptions, AnalysisOptions]:
    """The CLI's report flags split as the CLI splits them: what the page shows, what the analysis does."""
    analysis_fields = {f.name for f in dataclasses.fields(AnalysisOptions)}
    view = ViewOptions(**{k: v for k, v in kwargs.items() if k not in analysis_fields})  # type: ignore[arg-type]
    analysis = AnalysisOptions(**{k: v for k, v in kwargs.items() if k in analysis_fields})  # type: ignore[arg-type]
    return view, analysis
