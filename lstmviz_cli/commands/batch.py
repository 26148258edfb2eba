"""`lstmviz report A.pt B.pt --out-dir D`: one report per checkpoint, in processes, and D/index.html."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.many import expand_checkpoints, run_many, unique_stems
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.output import check_writable, write_atomic
from lstmviz_cli.page.build import build_page, select
from lstmviz_cli.page.index import ReportSummary, build_index_page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.html import render_html
from lstmviz_cli.render.jobs import default_workers
from lstmviz_cli.tracing.records import Run

INDEX_NAME = "index.html"


# -- batch reports ------------------------------------------------------------------------------------
def report_job(checkpoint: Path, options: LoadOptions, view: ViewOptions, analysis_options: AnalysisOptions,
               output: Path, force: bool, workers: int = 1) -> ReportSummary:
    """One checkpoint of `lstmviz report A.pt B.pt --out-dir D`: trace, analyze, render, summarise.

    `workers` draw its figures: all CPUs when checkpoints run one at a time, 1 when they run in parallel.
    """
    run = pipeline.load_and_trace(replace(options, checkpoint=checkpoint), float16_above=pipeline.REPORT_FLOAT16_ABOVE)
    run, analysis, shown = select(run, analyze_run(run, analysis_options), view)
    write_atomic(output, render_html(build_page(run, analysis, shown), workers=workers), force=force)
    return summarize(run, analysis, name=checkpoint.name, file=output.name)


def summarize(run: Run, analysis: Analysis, *, name: str, file: str | None) -> ReportSummary:
    """The index row of one report, read from the same run and analysis the report shows."""
    counts: dict[str, int] = {}
    for finding in analysis.findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    info = run.loaded.info
    return ReportSummary(
        name=name, file=file, format=info.format, n_params=int(info.n_params),
        layers=[layer.prefix for layer in run.trace.layers], verify_error=run.trace.verify_error,
        findings=dict(sorted(counts.items())),
    )


def run_batch_report(checkpoints: Sequence[str | Path], options: LoadOptions, view: ViewOptions,
                     analysis_options: AnalysisOptions, *, out_dir: Path, jobs: int = 1,
                     force: bool = False, show_progress: bool = True) -> tuple[list[ReportSummary], Path]:
    """`lstmviz report A.pt B.pt --out-dir D`: one report per checkpoint and D/index.html linking them.

    A failing checkpoint becomes a failed row; the others still run. A single checkpoint's error
    propagates (no index is written). Returns the rows and the index path.
    """
    paths = expand_checkpoints(checkpoints)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {str(out_dir)!r} is a file; name a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    # A checkpoint called index.pt must not take the index page's name.
    outputs = [out_dir / (f"{stem}-report.html" if stem == "index" else f"{stem}.html") for stem in unique_stems(paths)]
    index = out_dir / INDEX_NAME
    for path in [*outputs, index]:
        check_writable(path, force=force)  # refuse before hours of work, not after

    workers = default_workers() if jobs == 1 else 1
    args = [(options, view, analysis_options, output, force, workers) for output in outputs]
    results = run_many(report_job, paths, args, jobs=jobs, label="report", show_progress=show_progress)
    rows = [
        r.value if r.value is not None else ReportSummary(name=r.checkpoint.name, file=None, error=r.error)
        for r in results
    ]

    write_atomic(index, render_html(build_index_page(rows, title=view.title or "lstmviz reports")), force=force)
    return rows, index


def run_batch_command(checkpoints: Sequence[str], options: LoadOptions, view: ViewOptions,
                      analysis_options: AnalysisOptions, *, out_dir: Path | None, jobs: int,
                      json_path: Path | None, force: bool) -> tuple[list[ReportSummary], Path]:
    """`lstmviz report A B --out-dir D`: validate the batch form's options, then run the batch."""
    if out_dir is None:
        raise InputError("several checkpoints need --out-dir DIR (one report each, plus DIR/index.html)")
    if json_path is not None:
        raise InputError("--json takes one checkpoint; in a batch, use `lstmviz check --json` per checkpoint")
    return run_batch_report(checkpoints, options, view, analysis_options, out_dir=out_dir, jobs=jobs, force=force)
