"""The report page: validate the view options, build every section's figures and diagrams, fill one template.

The Jinja2 environment is `render.html.environment()` (autoescape, StrictUndefined): every string from the checkpoint or
the input is escaped by Jinja. Only SVG that matplotlib or Graphviz produced (both escape the text
they are given) and the report's own script are marked safe.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup

from lstmviz_cli import __version__
from lstmviz_cli.analysis.textfeatures import step_tokens
from lstmviz_cli.errors import InputError
from lstmviz_cli.loading.summary import loading_notes
from lstmviz_cli.output import GENERATOR_MARKER
from lstmviz_cli.render.diagrams import (
    CellValues,
    UnrolledRow,
    architecture_graph,
    cell_graph,
    read_path,
    to_svg,
    unrolled_graph,
)
from lstmviz_cli.render.figures import (
    HeatPanel,
    bin_time,
    order_units,
    plot_gate_heatmaps,
    plot_gate_stats,
    plot_weights,
    unit_variance,
)
from lstmviz_cli.render.highlight import (
    HighlightBlock,
    highlight_block,
    level_colours,
    top_variance_units,
    visible,
)
from lstmviz_cli.render.html import environment, templates_dir
from lstmviz_cli.render.jobs import FigureJob, job, resolve
from lstmviz_cli.render.palette import GATE_COLORS
from lstmviz_cli.tracing.provenance import Provenance, describe_run
from lstmviz_cli.tracing.records import GATE_SERIES, SERIES_NAMES, LayerTrace, Trace

DEFAULT_UNITS = 48  # heatmap rows per panel unless --units says otherwise
DEFAULT_DIAGRAM_STEPS = 20  # unrolled-diagram window unless --steps says otherwise
MAX_DIAGRAM_STEPS = 40  # wider windows become hairballs: the diagram shows this many at most
MAX_HIGHLIGHT_STEPS = 2000  # token highlighting shows at most this many characters
HIGHLIGHT_UNITS = 2  # top-variance units per layer shown as highlighted text
SORT_METHODS = ("none", "variance", "cluster")
# What shades the unrolled diagram, per family: the gate that decides how much state is kept.
SHADE_SERIES = {"lstm": "f", "gru": "z", "rnn": "h"}


# -- templates --------------------------------------------------------------------------------


# -- view options -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportView:
    """ViewOptions checked against the trace: what the report shows."""

    title: str
    layers: list[LayerTrace]
    units: int | list[int]  # top-N count, or explicit unit indices
    window: tuple[int, int]  # heatmap / highlight window (start, stop)
    diagram_window: tuple[int, int]
    at_step: int | None
    sort_units: str


def _valid_steps(trace: Trace) -> int:
    """Steps of batch element 0 that are not padding (from the packed lengths, never from NaN values)."""
    return int(trace.valid_steps()[0])


def _total_steps(trace: Trace) -> int:
    """Steps of the recorded time axis: the input's padded length (padding of batch element 0 included)."""
    return int(next(iter(trace.layers[0].series.values())).shape[1])


def steps_text(trace: Trace) -> str:
    """The summary's step count: `8 (sequence 0: 6 valid, then padding)` when element 0 is padded."""
    total, valid = _total_steps(trace), _valid_steps(trace)
    return str(total) if valid == total else f"{total} (sequence 0: {valid} valid, then padding)"


def parse_steps(text: str | None, total: int) -> tuple[int, int] | None:
    """`--steps START:STOP` (either side may be empty) checked against the sequence length."""
    if text is None or not text.strip():
        return None
    hint = f"expected START:STOP with 0 <= START < STOP <= {total}, e.g. 0:{min(total, 20)}"
    parts = text.strip().split(":")
    if len(parts) != 2:
        raise InputError(f"--steps {text!r}: {hint}")
    try:
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else total
    except ValueError:
        raise InputError(f"--steps {text!r}: {hint}") from None
    if not 0 <= start < stop <= total:
        raise InputError(f"--steps {text!r}: {hint}")
    return start, stop


def select_layers(text: str | None, trace: Trace) -> list[LayerTrace]:
    """`--layers lstm/l1,gru`: each selector names a module, a layer or a layer and direction."""
    if text is None or not text.strip():
        return list(trace.layers)
    choices = ", ".join(layer.prefix for layer in trace.layers)
    chosen: list[LayerTrace] = []
    for selector in (s.strip().strip("/") for s in text.split(",")):
        if not selector:
            continue
        matches = [
            layer for layer in trace.layers if layer.prefix == selector or layer.prefix.startswith(selector + "/")
        ]
        if not matches:
            raise InputError(f"--layers {selector!r} matches no recurrent layer; choose from: {choices}")
        chosen.extend(layer for layer in matches if layer not in chosen)
    if not chosen:
        raise InputError(f"--layers {text!r} names no layer; choose from: {choices}")
    return [layer for layer in trace.layers if layer in chosen]  # trace order, whatever the option order


def parse_units(text: str | None, layers: list[LayerTrace]) -> int | list[int]:
    """`--units 32` (top-N by the sort order), `--units all`, or `--units 0,5,9` (these units)."""
    widest = max(max(a.shape[2] for a in layer.series.values()) for layer in layers)
    if text is None or not text.strip():
        return min(DEFAULT_UNITS, widest)
    text = text.strip()
    if text.lower() == "all":
        return widest
    hint = "expected a count (e.g. 32), 'all', or unit indices (e.g. 0,5,9)"
    if "," not in text:
        try:
            count = int(text)
        except ValueError:
            raise InputError(f"--units {text!r}: {hint}") from None
        if count < 1:
            raise InputError(f"--units {text!r}: {hint}")
        return min(count, widest)
    try:
        units = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise InputError(f"--units {text!r}: {hint}") from None
    narrowest = min(layer.config.hidden_size for layer in layers)
    bad = [u for u in units if not 0 <= u < narrowest]
    if bad or not units:
        raise InputError(f"--units {text!r}: unit {bad[0] if bad else '?'} is out of range; the selected layers have units 0–{narrowest - 1}")
    return units


def resolve_view(view: Any, run: Any) -> ReportView:
    """Check every view option against the trace; a bad value raises InputError listing valid choices."""
    trace: Trace = run.trace
    if not trace.layers:
        raise InputError("the trace holds no recurrent layer to report on")
    # --steps may reach into the padding of sequence 0 (shown blank); by default only its valid steps.
    total = _valid_steps(trace)
    layers = select_layers(getattr(view, "layers", None), trace)
    sort = (getattr(view, "sort_units", None) or "variance").lower()
    if sort not in SORT_METHODS:
        raise InputError(f"--sort-units {sort!r}: choose one of {', '.join(SORT_METHODS)}")
    window = parse_steps(getattr(view, "steps", None), _total_steps(trace))
    at_step = getattr(view, "at_step", None)
    if at_step is not None and not 0 <= at_step < total:
        padding = " (later steps are padding)" if total < _total_steps(trace) else ""
        raise InputError(f"--at-step {at_step}: the sample has steps 0–{total - 1}{padding}")
    if window is None:
        heat_window = (0, total)
        diagram_window = (0, min(total, DEFAULT_DIAGRAM_STEPS))
    else:
        heat_window = window
        diagram_window = (window[0], min(window[1], window[0] + MAX_DIAGRAM_STEPS))
    title = getattr(view, "title", None) or f"lstmviz report: {run.loaded.info.name}"
    return ReportView(
        title=title, layers=layers, units=parse_units(getattr(view, "units", None), layers),
        window=heat_window, diagram_window=diagram_window, at_step=at_step, sort_units=sort,
    )


# -- helpers ----------------------------------------------------------------------------------


def anchor(*parts: str) -> str:
    """An HTML id from names that may hold any character (module names are user data)."""
    text = "-".join(parts)
    safe = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in text.lower())
    return "-".join(piece for piece in safe.split("-") if piece) or "x"


def _dot_svg(graph: Any, prefix: str) -> Markup:
    """A Graphviz diagram as inline SVG, its element ids prefixed so several diagrams share one page."""
    return Markup(to_svg(graph).replace(' id="', f' id="{prefix}-'))


def _tokens(run: Any, total: int) -> list[str] | None:
    """One display string per step of batch element 0, when the input is text or labelled tokens."""
    sample = run.sample
    return step_tokens(getattr(sample, "text", None), getattr(sample, "labels", None), total) or (
        step_tokens(None, getattr(sample, "labels", None), total)
    )


def _input_labels(run: Any, tokens: list[str] | None, steps: range) -> list[str]:
    if tokens is not None:
        return [tokens[t] for t in steps]
    values = np.asarray(run.sample.values)
    if values.ndim == 3:
        prefix = "x" if values.shape[2] == 1 else "x₀"
        # A module called more often than the input has steps (a loop run twice) has steps of its own.
        return [f"{prefix}={values[0, t, 0]:.2f}" if t < values.shape[1] else f"x_{t}" for t in steps]
    return [f"x_{t}" for t in steps]


def _output_labels(run: Any, steps: range) -> list[str]:
    """Per step: the most likely next token of a char LM (argmax of the output), else h_t.

    Only a real prediction is read: without a known head the output is hidden states.
    """
    output = run.trace.output
    vocab = run.loaded.info.vocab
    if output is not None and vocab is not None and describe_run(run).has_head:
        out = np.asarray(output)
        if out.ndim == 3 and out.shape[2] == len(vocab) and out.shape[1] >= steps.stop:
            return ["→ " + visible(vocab[int(np.argmax(out[0, t]))], 8) for t in steps]
    return ["h_t" for _ in steps]


def _sequence(layer: LayerTrace, name: str, window: tuple[int, int]) -> np.ndarray:
    """Batch element 0 of one series over the window: a view in the stored dtype (no whole-trace copy)."""
    return layer.series[name][0, window[0] : window[1]]


def _fmt_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(size)


# -- sections ---------------------------------------------------------------------------------


def loading_rows(info: Any) -> list[tuple[str, str]]:
    """Summary rows on where the weights were, how they were stored and what loading skipped."""
    rows = []
    if info.weights_key or info.key_prefix:
        where = f"{info.weights_key!r} of the checkpoint dict" if info.weights_key else "the state dict"
        if info.key_prefix:
            owner = "the LightningModule's attribute" if info.lightning else "an attribute"
            where += f", keys without {owner} prefix {info.key_prefix!r}"
        rows.append(("weights", ("PyTorch Lightning checkpoint: " if info.lightning else "") + where))
    if info.stored_dtype and info.stored_dtype != "float32":
        stored = f"{info.stored_dtype} weights"
        if info.run_dtype and info.run_dtype not in info.stored_dtype.split("/"):
            stored += f", run in {info.run_dtype} (upcast" + (" on CPU)" if info.device == "cpu" else ")")
        elif info.run_dtype:
            stored += f", run in {info.run_dtype}"
        rows.append(("stored precision", stored))
    if info.vocab_source and info.vocab:
        rows.append(("vocabulary", f"{len(info.vocab)} tokens from {info.vocab_source!r}"))
    if info.labels_source and info.output_labels:
        rows.append(("output labels", f"{len(info.output_labels)} labels from {info.labels_source!r}"))
    rows.extend(("loading note", note) for note in loading_notes(info))
    return rows


def summary_section(run: Any, analysis: Any, rv: ReportView, analysis_ctx: dict | None) -> dict[str, Any]:
    """Checkpoint facts, recurrent layer configurations, input, prediction, verification."""
    info = run.loaded.info
    trace: Trace = run.trace
    checkpoint = [
        ("file", info.name),
        ("format", info.format + (" (rebuilt from its weights)" if info.rebuilt else "")),
        ("size", _fmt_bytes(info.size_bytes)),
        ("parameters", f"{info.n_params:,}"),
        ("device", info.device),
    ]
    checkpoint.extend(loading_rows(info))
    if info.task:
        checkpoint.append(("task", info.task))
    if info.description:
        checkpoint.append(("description", info.description))
    modules = [
        {
            "name": name,
            "kind": cfg.kind,
            "input": cfg.input_size,
            "hidden": cfg.hidden_size,
            "proj": cfg.proj_size or "–",
            "layers": cfg.num_layers,
            "bidirectional": "yes" if cfg.bidirectional else "no",
            "batch_first": {True: "yes", False: "no"}.get(cfg.batch_first, "not known"),
        }
        for name, cfg in trace.modules.items()
    ]
    facts = getattr(analysis, "provenance", None) or describe_run(run)
    if analysis_ctx is not None and "prediction" in analysis_ctx:
        prediction_note = analysis_ctx["prediction"].get("note", "")
        prediction_rows = [(str(a), str(b)) for a, b in analysis_ctx["prediction"].get("rows", [])]
    else:
        pred = getattr(analysis, "prediction", None)
        prediction_note = getattr(pred, "note", "") if pred else ""
        prediction_rows = []
        if pred is not None:
            for label, value in pred.items:
                shown = f"{100 * value:.1f}%" if pred.kind == "topk" else f"{value:.4g}"
                prediction_rows.append((str(label), shown))
    pred = getattr(analysis, "prediction", None)
    return {
        "checkpoint": checkpoint,
        "unsafe": bool(info.unsafe),
        "modules": modules,
        "input": run.sample.description,
        "steps": steps_text(trace),
        "batch": int(np.asarray(run.sample.values).shape[0]),
        "prediction_note": prediction_note,
        "prediction": prediction_rows,
        "prediction_basis": getattr(pred, "basis", "") if pred is not None else "",
        "no_prediction": _no_prediction_reason(facts),
        "knowledge": knowledge_rows(facts),
        "recurrent_only": facts.recurrent_only,
        "embedding": getattr(run.loaded.model, "lstmviz_embedding", None),
        "front": ", ".join(facts.accounting.front) if facts.accounting else "",
        "verification": [(v.text(), _BADGES[v.status]) for v in facts.verification],
    }


_BADGES = {"ok": "ok", "bad": "bad", "not-checked": "warn"}


def _no_prediction_reason(facts: Provenance) -> str:
    """Why the page shows no prediction: said where the prediction would be."""
    if facts.recurrent_only:
        return ("No prediction: --recurrent-only traces the recurrent layers alone, without the model's head. "
                "Their output is hidden states, not classes or values.")
    if not facts.has_head:
        why = f" ({facts.head_note})" if facts.head_note else ""
        return ("No prediction: no output head was rebuilt" + why + ". The model's output here is the last "
                "recurrent layer's hidden states, which are not classes or values; pass --model-class to run "
                "your own model.")
    return "No prediction could be read from the model's output."


def knowledge_rows(facts: Provenance) -> list[dict[str, Any]]:
    """The summary's "What lstmviz knows" card: (label, text, optional list of details) rows."""
    rows: list[dict[str, Any]] = [{"key": "model", "text": facts.description, "details": []}]
    if facts.accounting is not None:
        acc = facts.accounting
        text = (f"all {acc.total} tensors placed" if not acc.unused
                else f"placed {acc.placed} of {acc.total}; not used ({len(acc.unused)}): {acc.unused_text()}")
        rows.append({"key": "tensors", "text": text, "details": list(acc.unused) if len(acc.unused) > 1 else []})
    if facts.source in ("rebuilt", "torchscript"):
        if facts.head is not None:
            text = facts.head.basis()
        else:
            text = "none rebuilt" + (f" ({facts.head_note})" if facts.head_note else "")
        rows.append({"key": "head", "text": text, "details": []})
    return rows


def architecture_section(run: Any) -> Markup:
    trace: Trace = run.trace
    path = read_path(trace.meta.path, trace.modules)
    return _dot_svg(architecture_graph(path, trace.modules), "arch")


def _cell_values(layer: LayerTrace, analysis: Any, rv: ReportView, tokens: list[str] | None) -> Any:
    if rv.at_step is not None:
        t = rv.at_step
        values = {name: float(np.nanmean(array[0, t])) for name, array in layer.series.items()}
        token = f" ({visible(tokens[t], 12)!r})" if tokens else ""
        return CellValues(values, f"step {t}{token}, mean over units")
    stats = {s.series: s.mean for s in getattr(analysis, "gate_stats", []) if s.prefix == layer.prefix}
    values = {
        name: float(stats[name]) if name in stats else float(np.nanmean(array[0]))
        for name, array in layer.series.items()
    }
    return CellValues(values, "mean over the sample (every step and unit)")


def cell_section(run: Any, analysis: Any, rv: ReportView, tokens: list[str] | None) -> list[dict[str, Any]]:
    """One cell diagram per selected layer and direction."""
    cells = []
    for k, layer in enumerate(rv.layers):
        values = _cell_values(layer, analysis, rv, tokens)
        graph = cell_graph(layer.config, values, name=f"cell{k}", input_size=layer.input_width)
        cells.append({"id": anchor("cell", layer.prefix), "title": layer.label, "svg": _dot_svg(graph, f"cell{k}")})
    return cells


def unrolled_diagram(run: Any, rv: ReportView, tokens: list[str] | None) -> tuple[Any, str]:
    """The unrolled-time Digraph and what shades its cells (shared with `lstmviz figures`)."""
    start, stop = rv.diagram_window
    steps = range(start, stop)
    rows = []
    groups: dict[tuple[str, int], int] = {}
    shade_names = set()
    for k, layer in enumerate(rv.layers):
        name = SHADE_SERIES.get(layer.family, "h")
        shade_names.add(name)
        values = _sequence(layer, name, (start, stop)).mean(axis=1)
        if name not in GATE_SERIES:
            values = 0.5 + 0.5 * np.tanh(values)
        group = groups.setdefault((layer.module, layer.layer), len(groups))
        rows.append(
            UnrolledRow(
                key=f"r{k}", group=group, label=layer.label, backward=layer.direction == "bwd",
                shade=[float(v) for v in values], carries_c=layer.family == "lstm",
            )
        )
    shade = " / ".join(f"{SERIES_NAMES[n]} ({n})" for n in sorted(shade_names))
    graph = unrolled_graph(
        rows, (start, stop), _total_steps(run.trace), _input_labels(run, tokens, steps),
        _output_labels(run, steps), shade,
    )
    return graph, shade


def unrolled_section(run: Any, rv: ReportView, tokens: list[str] | None) -> dict[str, Any]:
    graph, shade = unrolled_diagram(run, rv, tokens)
    start, stop = rv.diagram_window
    return {
        "svg": _dot_svg(graph, "unrolled"),
        "shade": shade,
        "window": (start, stop),
        "total": _total_steps(run.trace),
        "lstm": any(layer.family == "lstm" for layer in rv.layers),
        # Layers whose memory gate near 1 replaces the state (a GRU written h = (1 - z)·h + z·n).
        "replaces": [layer.label for layer in rv.layers if not layer.keeps_when_high],
        "backward": any(layer.direction == "bwd" for layer in rv.layers),
    }


def _row_order(layer: LayerTrace, rv: ReportView) -> tuple[list[int], str]:
    """Which hidden units each heatmap shows, in which order, and a sentence saying so."""
    key = "c" if "c" in layer.series else "h"
    values = _sequence(layer, key, rv.window)

    variance = unit_variance(values)  # one pass over a possibly long window, used twice below
    order = [int(u) for u in order_units(values, rv.sort_units, variance=variance)]
    total = values.shape[1]
    how = {"none": "in index order", "variance": f"by variance of {key} (highest first)",
           "cluster": f"clustered (units whose {key} moves together sit together)"}[rv.sort_units]
    if isinstance(rv.units, list):
        chosen = [u for u in order if u in rv.units]
        return chosen, f"units {', '.join(map(str, rv.units))} of {total}, {how}"
    if rv.units >= total:
        return order, f"all {total} units, {how}"
    by_var = [int(u) for u in np.argsort(-variance, kind="stable")[: rv.units]]
    chosen = [u for u in order if u in set(by_var)]
    return chosen, f"the {rv.units} of {total} units with the highest variance of {key}, {how}"


def layer_heatmap(
    run: Any, layer: LayerTrace, rv: ReportView, tokens: list[str] | None
) -> tuple[FigureJob, str, int, int | None]:
    """One layer's units × time heatmaps (shared with `lstmviz figures`).

    Returns the figure (as a job: the panels are prepared here, drawn later), the sentence saying
    which units are shown, the time-bin width and the column of `--at-step` (None when outside the
    window).
    """
    start, stop = rv.window
    rows, how = _row_order(layer, rv)
    panels = []
    width = 1
    source_names = (run.trace.meta.series_names or {}).get(layer.prefix, {})
    for name in layer.series:
        values = _sequence(layer, name, rv.window)
        if values.shape[1] == layer.config.hidden_size:
            units = rows
        else:  # a projected h has its own width: its own top units
            units = [int(u) for u in np.argsort(-unit_variance(values), kind="stable")[: len(rows)]]
        binned, width = bin_time(values[:, units])
        panels.append(HeatPanel(series=name, values=binned.T, units=units, source_name=source_names.get(name)))
    window_tokens = tokens[start:stop] if tokens is not None else None
    mark = None
    if rv.at_step is not None and start <= rv.at_step < stop:
        mark = (rv.at_step - start) // width
    return job(plot_gate_heatmaps, panels, start=start, width=width, tokens=window_tokens, mark=mark), how, width, mark


def heatmap_section(run: Any, rv: ReportView, tokens: list[str] | None) -> list[dict[str, Any]]:
    """Units × time heatmaps per selected layer and direction, time binned when long."""
    figures = []
    start, stop = rv.window
    for layer in rv.layers:
        figure, how, width, mark = layer_heatmap(run, layer, rv, tokens)
        caption = f"{how}; steps {start}–{stop - 1}"
        valid = _valid_steps(run.trace)
        if stop > valid:
            caption += f" (from step {max(valid, start)}: padding of sequence 0, left blank)"
        if mark is not None:
            caption += f"; dashed line: step {rv.at_step}, shown on the cell diagram"
        if width > 1:
            caption += f", averaged over bins of {width} steps (full data: lstmviz trace)"
        figures.append({"id": anchor("heatmap", layer.prefix), "title": layer.label, "caption": caption,
                        "svg": figure})
    return figures


def token_section(run: Any, analysis: Any, rv: ReportView, tokens: list[str] | None) -> dict[str, Any] | None:
    """Text coloured by single units: the top-variance units of each layer, and units the analysis ranks."""
    if tokens is None or run.sample.kind != "tokens":
        return None
    start, stop = rv.window
    stop = min(stop, start + MAX_HIGHLIGHT_STEPS)
    shown = tokens[start:stop]
    separator = "" if getattr(run.sample, "text", None) and len(run.sample.text) == len(tokens) else " "
    blocks: list[HighlightBlock] = []
    seen: set[tuple[str, int]] = set()

    def add(layer: LayerTrace, series: str, unit: int, why: str, suffix: str = "") -> None:
        values = _sequence(layer, series, (start, stop))[:, unit]
        # h lives in [−1, 1]; the unbounded cell state is scaled by the unit's own max |c|.
        scale = float(np.nanmax(np.abs(values))) if series == "c" and np.isfinite(values).any() else 1.0
        scale = scale or 1.0
        caption = f"{layer.label} · {series}[{unit}] · {why}" + (f" · colour scale ±{scale:.3g}" if series == "c" else "")
        block_id = anchor("tokens", layer.prefix, series, str(unit), suffix)
        blocks.append(highlight_block(block_id, caption, shown, values, start=start, series=series, unit=unit,
                                      scale=scale, separator=separator))
        seen.add((f"{layer.prefix}/{series}", unit))

    selected = {layer.prefix: layer for layer in rv.layers}
    # Units the analysis ranks (correlation with a text feature) say the most: show them first.
    for ranked in list(getattr(analysis, "units", []) or [])[:6]:
        prefix, _, series = str(ranked.key).rpartition("/")
        layer = selected.get(prefix)
        if layer is None or series not in layer.series or (ranked.key, ranked.unit) in seen:
            continue
        add(layer, series, int(ranked.unit), f"r = {ranked.r:+.2f} with {ranked.feature}", "ranked")
    for layer in rv.layers:
        key = "c" if "c" in layer.series else "h"
        values = _sequence(layer, key, (start, stop))
        for unit in top_variance_units(values, HIGHLIGHT_UNITS):
            if (f"{layer.prefix}/{key}", unit) not in seen:
                add(layer, key, unit, "high variance")
    note = ""
    if stop < rv.window[1]:
        note = f"showing steps {start}–{stop - 1} of {rv.window[0]}–{rv.window[1] - 1}; choose others with --steps"
    return {"blocks": blocks, "note": note}


def weights_section(rv: ReportView) -> list[dict[str, Any]]:
    figures = []
    for layer in rv.layers:
        if not layer.weights:
            continue
        figures.append({"id": anchor("weights", layer.prefix), "title": layer.label, "svg": job(plot_weights, layer)})
    return figures


def stats_section(analysis: Any, rv: ReportView, need_table: bool) -> dict[str, Any] | None:
    stats = list(getattr(analysis, "gate_stats", []) or [])
    if not stats:
        return None
    prefixes = [layer.prefix for layer in rv.layers if any(s.prefix == layer.prefix for s in stats)]
    if not prefixes:
        return None
    labels = {layer.prefix: layer.label for layer in rv.layers}
    rows = []
    if need_table:
        for s in stats:
            if s.prefix in prefixes:
                rows.append([
                    labels[s.prefix], s.series, f"{s.mean:.3f}", f"{s.std:.3f}",
                    "–" if s.frac_low is None else f"{100 * s.frac_low:.1f}%",
                    "–" if s.frac_high is None else f"{100 * s.frac_high:.1f}%",
                    "–" if getattr(s, "time_std", None) is None else f"{s.time_std:.3f}",
                ])
    return {"svg": job(plot_gate_stats, stats, prefixes, labels), "rows": rows}


# -- the page ---------------------------------------------------------------------------------


def _analysis_context(run: Any, analysis: Any, view: Any) -> dict[str, Any] | None:
    """The analysis engineer's sections, when that module and its template exist."""
    if not (templates_dir() / "_analysis.html.j2").is_file():
        return None
    try:
        from lstmviz_cli.page.analysis_view import analysis_context
    except ImportError:
        return None
    return analysis_context(run, analysis, view)


def _script() -> tuple[Markup, str]:
    """The page's one inline script and its CSP hash (so no other script can run)."""
    text = environment().get_template("_script.js.j2").render()
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def render_report(run: Any, analysis: Any, view: Any, *, workers: int = 1) -> str:
    """The whole report as one self-contained HTML string (deterministic for identical inputs).

    The sections describe their figures as jobs; all of them are drawn at the end, in `workers`
    processes (`render.jobs`): the page is the same for any number of workers.
    """
    rv = resolve_view(view, run)
    tokens = _tokens(run, _total_steps(run.trace))
    analysis_ctx = _analysis_context(run, analysis, view)
    has_stats_table = bool(analysis_ctx) and any(
        s.get("id") == "gate-statistics" for s in analysis_ctx.get("sections", [])
    )
    script, script_hash = _script()
    toc = [
        ("summary", "Summary"),
        ("architecture", "Architecture"),
        ("cell", "Cell"),
        ("unrolled", "Unrolled in time"),
        ("heatmaps", "Gate heatmaps"),
    ]
    tokens_ctx = token_section(run, analysis, rv, tokens)
    if tokens_ctx is not None:
        toc.append(("tokens", "Token highlighting"))
    weights = weights_section(rv)
    if weights:
        toc.append(("weights", "Weights"))
    stats = stats_section(analysis, rv, need_table=not has_stats_table)
    if stats is not None:
        toc.append(("gate-plots", "Gate statistics at a glance"))
    if analysis_ctx:
        toc.extend((str(i), str(t)) for i, t in analysis_ctx.get("toc", []))
    context = {
        "title": rv.title,
        "generator": f"{GENERATOR_MARKER} lstmviz {__version__}",
        "csp": (
            "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
            f"script-src {script_hash}; base-uri 'none'; form-action 'none'"
        ),
        "script": script,
        "toc": toc,
        "summary": summary_section(run, analysis, rv, analysis_ctx),
        "architecture": architecture_section(run),
        "cells": cell_section(run, analysis, rv, tokens),
        "at_step": rv.at_step,
        "unrolled": unrolled_section(run, rv, tokens),
        "heatmaps": heatmap_section(run, rv, tokens),
        "tokens": tokens_ctx,
        "weights": weights,
        "stats": stats,
        "analysis_ctx": analysis_ctx or {},
        "has_analysis": bool(analysis_ctx),
        "gate_colors": GATE_COLORS,
        "legend_gates": [g for g in ("i", "f", "g", "o", "r", "z", "n")
                         if any(g in layer.series for layer in rv.layers)],
        "token_levels": level_colours(),
        "series_names": SERIES_NAMES,
        "picker": [{"id": b.id, "label": b.caption} for b in (tokens_ctx or {"blocks": []})["blocks"]],
        "version": __version__,
    }
    html = environment().get_template("report.html.j2").render(**resolve(context, workers))
    # Matplotlib's RDF <metadata> blocks (ours and the analysis figures') only link vocabularies.
    html = _METADATA.sub("", html)
    # Last line of defence for every section: bidi overrides and C0 controls are shown, never obeyed.
    return _INVISIBLE_RE.sub(lambda match: _INVISIBLE[ord(match.group())], html)


_METADATA = re.compile(r"\s*<metadata>\s*<rdf:RDF.*?</metadata>", re.S)
_INVISIBLE = {
    code: f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"
    for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# A regex finds the rare invisible character 15x faster than str.translate walks 3 MB of page.
_INVISIBLE_RE = re.compile("[" + "".join(re.escape(chr(code)) for code in _INVISIBLE) + "]")
