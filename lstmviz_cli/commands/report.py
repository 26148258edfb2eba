"""`lstmviz report` for one checkpoint: trace, analyze and write one self-contained HTML file or, with
`--format dir`, a folder for strict-CSP servers (`render.folder`); and its JSON."""

from __future__ import annotations

from pathlib import Path

from lstmviz_cli.analysis.measures import measure_run
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.analysis.serialize import report_json
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.commands.progress import Steps
from lstmviz_cli.explain.corpus import Progress
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.output import check_distinct, check_writable, write_atomic, write_json
from lstmviz_cli.page.build import build_page, select
from lstmviz_cli.page.model import Page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.folder import INDEX, check_folder_writable, write_folder
from lstmviz_cli.render.html import render_html
from lstmviz_cli.render.jobs import default_workers
from lstmviz_cli.tracing.records import Run


def report_stages(run: Run, analysis_options: AnalysisOptions, view: ViewOptions, *,
                  progress: Progress | None = None) -> tuple[Run, Analysis, Page]:
    """Analyze a traced run and build its report page: the run and analysis cut to `--layers`, and the page.

    What `lstmviz report` and `lstmviz_cli.report` do after tracing, so their pages are the same.
    `progress` is told (sequences done, in all) while a corpus is read (`--corpus`).
    """
    run, analysis, shown = select(run, analyze_run(run, analysis_options, progress=progress), view)
    return run, analysis, build_page(run, analysis, shown)


def run_report_command(
    options: LoadOptions, view: ViewOptions, analysis_options: AnalysisOptions, *, output: Path,
    json_path: Path | None, force: bool, workers: int | None = None, page_format: str = "html",
) -> str:
    """`lstmviz report`: trace, analyze and write one self-contained HTML file.

    The page and the JSON summary come from the same run and analysis, cut once to `--layers`.
    `workers`: processes that draw the figures (None: one per CPU, at most render.jobs.MAX_WORKERS).
    """
    check_distinct({"-o": output, "--json": json_path}, inputs={"--input": options.input})
    if page_format == "dir":
        check_folder_writable(output)
    else:
        check_writable(output, force=force)
    if json_path is not None:
        check_writable(json_path, force=force)
    with Steps("report") as steps:
        steps.step(f"loading and tracing {Path(options.checkpoint).name}")
        corpus = analysis_options.corpus is not None
        run = pipeline.load_and_trace(options, float16_above=pipeline.REPORT_FLOAT16_ABOVE, corpus=corpus)
        steps.step("analysing")
        run, analysis, page = report_stages(run, analysis_options, view,
                                            progress=steps.counter("reading the corpus") if corpus else None)
        if page_format == "dir":
            size = write_folder(page, output, workers=workers or default_workers(), done=steps.figures)
            written = output / INDEX
        else:
            html = render_html(page, workers=workers or default_workers(), done=steps.figures)
            steps.step("writing")
            write_atomic(output, html, force=force)
            size, written = len(html.encode("utf-8")), output
        if json_path is not None:
            write_json(json_path, report_json(analysis, measure_run(run.trace, analysis), page.anchor), force=force)
    pipeline.announce(run)
    return f"wrote {written} ({size / 1024:,.0f} KB); open it in a browser"
