"""`lstmviz diff`: load and trace two checkpoints of one architecture on one sample, compare, write the page."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from lstmviz_cli.analysis.diff import DiffResult, diff_traces, require_same_architecture
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.serialize import diff_json
from lstmviz_cli.analysis.thresholds import saturation_thresholds
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.commands.progress import Steps
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.loading.records import SampleInput
from lstmviz_cli.output import check_distinct, check_writable, write_atomic, write_json
from lstmviz_cli.page.diff import build_diff_page
from lstmviz_cli.render.html import render_html
from lstmviz_cli.tracing.forwardargs import parse_forward_args
from lstmviz_cli.tracing.records import Run
from lstmviz_cli.tracing.sample import trace_sample


def run_diff(options: LoadOptions, after_checkpoint: Path, analysis_options: AnalysisOptions) -> tuple[DiffResult, Run, Run]:
    """Load and trace both checkpoints on BEFORE's sample, analyze each, compare.

    Returns the result and both runs. `options` loads BEFORE; AFTER is loaded with the same options.
    """
    before = pipeline.load_and_trace(options)
    after = pipeline.load_and_trace(replace(options, checkpoint=after_checkpoint))
    require_same_architecture(before.trace, after.trace)
    if not _same_sample(before.sample, after.sample):
        # Behaviour is only comparable on one input: trace AFTER again on BEFORE's sample.
        after = Run(loaded=after.loaded, sample=before.sample,
                    trace=trace_sample(after.loaded, before.sample, verify=options.verify, module=options.module,
                                       forward_args=parse_forward_args(options.forward_args)),
                    notes=after.notes)
    result = diff_traces(
        before.trace, after.trace, analyze_run(before, analysis_options), analyze_run(after, analysis_options),
        before_name=before.loaded.info.name, after_name=after.loaded.info.name,
        sample=before.sample.description,
    )
    return result, before, after


def _same_sample(a: SampleInput, b: SampleInput) -> bool:
    va, vb = np.asarray(a.values), np.asarray(b.values)
    return va.shape == vb.shape and va.dtype == vb.dtype and bool(np.array_equal(va, vb))


def run_diff_command(options: LoadOptions, after_checkpoint: Path, analysis_options: AnalysisOptions, *,
                     output: Path, json_path: Path | None,
                     force: bool) -> str:
    """`lstmviz diff`: refuse unwritable outputs first, compare, write the page (and JSON)."""
    check_distinct({"-o": output, "--json": json_path}, inputs={"--input": options.input})
    check_writable(output, force=force)
    if json_path is not None:
        check_writable(json_path, force=force)
    with Steps("diff") as steps:
        steps.step(f"tracing and comparing {Path(options.checkpoint).name} and {Path(after_checkpoint).name}")
        result, before, after = run_diff(options, after_checkpoint, analysis_options)
        thresholds = saturation_thresholds(analysis_options.saturation_low, analysis_options.saturation_high)
        write_atomic(output, render_html(build_diff_page(result, thresholds), done=steps.figures), force=force)
    if json_path is not None:
        write_json(json_path, diff_json(result), force=force)
    pipeline.announce(before, after)
    verdict = "no change" if result.unchanged else (
        f"largest weight change {result.max_weight_change:.3g}, activation change {result.max_activation_change:.3g}")
    return f"wrote {output}: {result.before} -> {result.after}, {verdict}"
