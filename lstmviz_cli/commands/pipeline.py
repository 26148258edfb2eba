"""The pipeline behind each command: load -> trace -> analyze -> render, with plain data between.

The CLI only builds option records and calls one function here; tests call the same functions.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstmviz_cli.analysis.serialize import analysis_json
from lstmviz_cli.output import GENERATOR_MARKER, check_writable, write_atomic


@dataclass(frozen=True)
class LoadOptions:
    """How to load the checkpoint and the sample, and how strictly to verify the trace."""

    checkpoint: Path
    input: Path | None = None
    tokens: str | None = None
    device: str = "cpu"
    trust_pickle: bool = False
    trust_torchscript: bool = False
    model_class: str | None = None
    model_kwargs: str | None = None
    verify: bool = True
    module: str | None = None  # hand-written cell to open up (cells.py); None: automatic
    max_memory: str | None = None  # e.g. "2G" or "50%"; None: a quarter of RAM
    weights_key: str | None = None  # which state dict of a dict checkpoint holding several ("model", "ckpt/model")
    # "PARAM=ARRAY" pairs: arrays of an .npz input (or its lengths) for the model's forward
    forward_args: tuple[str, ...] = ()
    head: str | None = None  # a rebuilt head's wiring: "all" | "last" | "final-states"; None: metadata/assumed
    recurrent_only: bool = False  # trace the recurrent layers alone, the sample as their direct input


@dataclass(frozen=True)
class ViewOptions:
    """What the report shows: a selection of layers, units and steps, and presentation choices."""

    title: str | None = None
    layers: str | None = None
    units: str | None = None
    steps: str | None = None
    at_step: int | None = None
    sort_units: str = "variance"
    # The analysis stage (analysis.py / saliency.py).
    labels: Path | None = None  # per-step user labels CSV for the interpretable-units ranking
    saturation_low: float = 0.1  # gate values below this are left-saturated
    saturation_high: float = 0.9  # gate values above this are right-saturated
    saliency_step: int | None = None  # the output step whose gradient saliency is shown (default last)
    memory_probe: bool = False  # run the key-at-start memory-length probe


@dataclass
class Run:
    """One loaded model traced on one sample. `loaded` keeps the torch model for saliency."""

    loaded: Any  # checkpoint.LoadedModel
    sample: Any  # inputs.SampleInput
    trace: Any  # tracedata.Trace
    # The traced output against the real model (your code run plainly, or a TorchScript archive);
    # None when no real model exists (a rebuild from weights) or --recurrent-only.
    end_to_end: Any = None  # provenance.Verification | None
    # Lines for stderr once the command has succeeded (an error stays one line): the tensor accounting.
    notes: list[str] = field(default_factory=list)


def announce(*runs: Run) -> None:
    """Print the runs' stderr notes; commands call this after their outputs are written."""
    for run in runs:
        for note in getattr(run, "notes", []):
            _warn(note)


UNSAFE_WARNING = (
    "lstmviz: warning: {name} was loaded with unsafe deserialization ({flag}); "
    "only do this for files you trust"
)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def loading_summary(info: Any) -> dict[str, Any]:
    """Where the weights were found and how they were stored, for `trace --json` (empty: nothing to say)."""
    fields = {
        "weights_key": info.weights_key,
        "key_prefix_removed": info.key_prefix,
        "lightning": info.lightning or None,
        "stored_dtype": info.stored_dtype if info.stored_dtype != "float32" else None,
        "run_dtype": info.run_dtype if info.stored_dtype not in (None, "float32") else None,
        "vocab_source": info.vocab_source,
        "output_labels_source": info.labels_source,
        "notes": loading_notes(info) or None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def loading_notes(info: Any) -> list[str]:
    """What loading skipped or left unused, one sentence each (stderr and the report's summary)."""
    notes = []
    if info.skipped:
        used = ""
        source = info.vocab_source or ""
        if any(source == where or source.startswith(f"{where}/") for where, _cls in info.skipped):
            used = f"; the vocabulary inside ({source!r}, {len(info.vocab or ())} tokens) is used"
        objects = ", ".join(f"{where!r} ({cls})" for where, cls in info.skipped)
        notes.append(
            f"opened without running code: {objects} "
            f"({'a class' if len(info.skipped) == 1 else 'classes'} lstmviz did not import, read as plain data){used}"
        )
    notes.extend(info.load_notes)
    return notes


# A report keeps traces larger than this as float16 (figures need 3 digits, not 7): with the
# saliency budget this keeps T = 100,000 at hidden 1024 under 4 GB.
REPORT_FLOAT16_ABOVE = 1 << 30


def load_and_trace(options: LoadOptions, *, float16_above: int | None = None) -> Run:
    """Load the checkpoint safely, read the sample, and trace every recurrent layer.

    Loading through a trust flag is announced on stderr (and the report is stamped by render).
    `float16_above`: store the series as float16 when the float32 trace would exceed this many bytes.
    """
    from lstmviz_cli.loading.budget import parse_memory_size
    from lstmviz_cli.loading.checkpoint import load_checkpoint
    from lstmviz_cli.loading.inputs import load_sample
    from lstmviz_cli.tracing import endtoend
    from lstmviz_cli.tracing.forwardargs import parse_forward_args
    from lstmviz_cli.tracing.sample import trace_sample

    forward_args = parse_forward_args(options.forward_args)

    loaded = load_checkpoint(
        options.checkpoint,
        device=options.device,
        trust_pickle=options.trust_pickle,
        trust_torchscript=options.trust_torchscript,
        model_class=options.model_class,
        model_kwargs=options.model_kwargs,
        weights_key=options.weights_key,
        head=options.head,
        recurrent_only=options.recurrent_only,
    )
    if loaded.info.unsafe:
        flag = "--trust-torchscript" if loaded.info.format == "torchscript" else "--trust-pickle"
        _warn(UNSAFE_WARNING.format(name=loaded.info.name, flag=flag))
    for note in loading_notes(loaded.info):
        _warn(f"lstmviz: note: {loaded.info.name}: {note}")
    budget = parse_memory_size(options.max_memory) if options.max_memory else None
    sample = load_sample(loaded, path=options.input, tokens=options.tokens, max_memory_bytes=budget)
    compact = float16_above is not None and sample.extra.get("trace_bytes", 0) > float16_above
    store = {"store_dtype": "float16"} if compact else {}
    archive = None
    if loaded.scripted is not None and not loaded.info.recurrent_only:
        archive = endtoend.check_archive(loaded, sample, verify=options.verify)
    own_code = not loaded.info.rebuilt  # --model-class or a pickled module: the real model runs
    watch = endtoend.capture_call(loaded.model) if own_code else contextlib.nullcontext()
    with watch as captured:
        trace = trace_sample(loaded, sample, verify=options.verify, module=options.module,
                             forward_args=forward_args, **store)
    end_to_end = None
    if own_code:
        end_to_end = endtoend.verify_user_model(loaded.model, captured, verify=options.verify)
    elif archive is not None:
        end_to_end = endtoend.verify_archive(archive, trace, verify=options.verify)
    loading = loading_summary(loaded.info)
    if loading:
        trace.meta["loading"] = loading
    notes = []
    if loaded.info.accounting is not None:
        notes.append(f"lstmviz: {loaded.info.name}: {loaded.info.accounting.line()}")
    return Run(loaded=loaded, sample=sample, trace=trace, end_to_end=end_to_end, notes=notes)


def write_json(path: Path, payload: dict[str, Any], *, force: bool) -> None:
    """Deterministic JSON (sorted keys) carrying the generator marker."""
    document = {"generator": GENERATOR_MARKER, **payload}
    write_atomic(path, json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n", force=force)


def run_trace_command(
    options: LoadOptions, *, output: Path, json_path: Path | None, dtype: str, force: bool
) -> str:
    """`lstmviz trace`: save every series to .npz (and a JSON summary)."""
    check_writable(output, force=force)
    if json_path is not None:
        check_writable(json_path, force=force)
    from lstmviz_cli.tracing.provenance import describe_run

    run = load_and_trace(options)
    facts = describe_run(run)
    model = {"model": facts.to_json()}
    write_atomic(output, lambda tmp: run.trace.save_npz(tmp, dtype=dtype, extra=model), force=force)
    if json_path is not None:
        write_json(json_path, {**run.trace.summary(), **model}, force=force)
    announce(run)
    keys = run.trace.keys()
    levels = "; ".join(v.text() for v in facts.verification)
    return f"wrote {output} ({len(keys)} arrays; {levels})"


def run_report_command(
    options: LoadOptions, view: ViewOptions, *, output: Path, json_path: Path | None, force: bool,
    workers: int | None = None,
) -> str:
    """`lstmviz report`: trace, analyze and write one self-contained HTML file.

    `workers`: processes that draw the figures (None: one per CPU, at most figurejobs.MAX_WORKERS).
    """
    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.page.report import render_report
    from lstmviz_cli.render.jobs import default_workers

    check_writable(output, force=force)
    if json_path is not None:
        check_writable(json_path, force=force)
    run = load_and_trace(options, float16_above=REPORT_FLOAT16_ABOVE)
    analysis = analyze_run(run, view)
    html = render_report(run, analysis, view, workers=workers or default_workers())
    write_atomic(output, html, force=force)
    if json_path is not None:
        write_json(json_path, analysis_json(analysis), force=force)
    announce(run)
    size_kb = len(html.encode("utf-8")) / 1024
    return f"wrote {output} ({size_kb:,.0f} KB); open it in a browser"
