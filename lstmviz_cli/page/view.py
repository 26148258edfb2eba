"""What the page shows: `ViewOptions` as the user gave them, and `View`, the same checked against the trace.

`resolve_view` turns `--layers/--units/--steps/--at-step/--sort-units` into layers, unit choices and
step windows, or raises InputError with one line listing the valid choices. `View.narrow` gives the
run the page is built from: the trace's layers cut to the selection, so every section, and the
analysis cut the same way (`analysis.select.select_layers`), show only what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lstmviz_cli.errors import InputError
from lstmviz_cli.tracing.records import LayerTrace, Run, Trace

DEFAULT_UNITS = 16  # heatmap rows per panel unless --units says otherwise (all labelled; hover names any)
DEFAULT_DIAGRAM_STEPS = 20  # unrolled-diagram window unless --steps says otherwise
MAX_DIAGRAM_STEPS = 40  # wider windows become hairballs: the diagram shows this many at most
SORT_METHODS = ("none", "variance", "cluster")
COLOR_SCALES = ("auto", "fixed", "robust")


@dataclass(frozen=True)
class ViewOptions:
    """A selection of layers, units and steps, and presentation choices (checked against the trace
    when the page is built)."""

    title: str | None = None
    layers: str | None = None  # "lstm/l1" or "lstm/l0,lstm/l1/bwd"
    units: str | None = None  # a count, "all", or unit indices "0,5,9"
    steps: str | None = None  # "START:STOP"
    at_step: int | None = None  # the step whose gate values the cell diagram shows
    sort_units: str = "variance"  # none | variance | cluster
    color_scale: str = "auto"  # heatmap colours: fixed ranges, robust (1st–99th percentile) or auto


@dataclass(frozen=True)
class View:
    """ViewOptions checked against the trace: what the page shows."""

    title: str
    layers: tuple[LayerTrace, ...]
    units: int | tuple[int, ...]  # top-N count, or explicit unit indices
    window: tuple[int, int]  # heatmap / highlight window (start, stop)
    diagram_window: tuple[int, int]
    at_step: int | None
    sort_units: str
    color_scale: str = "auto"

    @property
    def prefixes(self) -> tuple[str, ...]:
        """The chosen layers' prefixes ("lstm/l0/fwd"), in trace order."""
        return tuple(layer.prefix for layer in self.layers)

    def narrow(self, run: Run) -> Run:
        """The run with its trace's layers cut to the chosen ones (no array is copied)."""
        if len(self.layers) == len(run.trace.layers):
            return run
        chosen = set(self.prefixes)
        return replace(run, trace=replace(run.trace, layers=[layer for layer in run.trace.layers if layer.prefix in chosen]))


def valid_steps(trace: Trace) -> int:
    """Steps of batch element 0 that are not padding (from the packed lengths, never from NaN values)."""
    return int(trace.valid_steps()[0])


def total_steps(trace: Trace) -> int:
    """Steps of the recorded time axis: the input's padded length (padding of batch element 0 included)."""
    return int(next(iter(trace.layers[0].series.values())).shape[1])


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


def select_layers(text: str | None, trace: Trace) -> tuple[LayerTrace, ...]:
    """`--layers lstm/l1,gru`: each selector names a module, a layer or a layer and direction."""
    if text is None or not text.strip():
        return tuple(trace.layers)
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
    return tuple(layer for layer in trace.layers if layer in chosen)  # trace order, whatever the option order


def parse_units(text: str | None, layers: tuple[LayerTrace, ...]) -> int | tuple[int, ...]:
    """`--units 32` (top-N by the sort order), `--units all`, or `--units 0,5,9` (these units)."""
    widest = max(max(int(a.shape[2]) for a in layer.series.values()) for layer in layers)
    if text is None or not text.strip():
        return min(DEFAULT_UNITS, widest)
    text = text.strip()
    if text.lower() == "all":
        return widest
    hint = "expected a count (e.g. 32), 'all', or unit indices (e.g. 0,5,9; one unit: 7, with its comma)"
    if text == "0":  # no count of zero units exists: the user means unit 0
        text = "0,"
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
    if not units:  # only commas: no unit named
        raise InputError(f"--units {text!r}: {hint}")
    narrowest = min(layer.config.hidden_size for layer in layers)
    bad = [u for u in units if not 0 <= u < narrowest]
    if bad:
        raise InputError(
            f"--units {text!r}: unit {bad[0]} is out of range; the selected layers have units "
            f"0–{narrowest - 1}"
        )
    return tuple(units)


def resolve_view(options: ViewOptions, run: Run) -> View:
    """Check every view option against the trace; a bad value raises InputError listing valid choices."""
    trace = run.trace
    if not trace.layers:
        raise InputError("the trace holds no recurrent layer to report on")
    # --steps may reach into the padding of sequence 0 (shown blank); by default only its valid steps.
    total = valid_steps(trace)
    layers = select_layers(options.layers, trace)
    sort = (options.sort_units or "variance").lower()
    if sort not in SORT_METHODS:
        raise InputError(f"--sort-units {sort!r}: choose one of {', '.join(SORT_METHODS)}")
    scale = (options.color_scale or "auto").lower()
    if scale not in COLOR_SCALES:
        raise InputError(f"--color-scale {scale!r}: choose one of {', '.join(COLOR_SCALES)}")
    window = parse_steps(options.steps, total_steps(trace))
    at_step = options.at_step
    if at_step is not None and not 0 <= at_step < total:
        padding = " (later steps are padding)" if total < total_steps(trace) else ""
        raise InputError(f"--at-step {at_step}: the sample has steps 0–{total - 1}{padding}")
    if window is None:
        heat_window = (0, total)
        diagram_window = (0, min(total, DEFAULT_DIAGRAM_STEPS))
    else:
        heat_window = window
        diagram_window = (window[0], min(window[1], window[0] + MAX_DIAGRAM_STEPS))
    return View(
        title=options.title or f"lstmviz report: {run.loaded.info.name}", layers=layers,
        units=parse_units(options.units, layers), window=heat_window, diagram_window=diagram_window,
        at_step=at_step, sort_units=sort, color_scale=scale,
    )
