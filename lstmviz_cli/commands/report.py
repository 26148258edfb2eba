"""`lstmviz report` for one checkpoint: trace, analyze and write one self-contained HTML file (and its JSON)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.serialize import analysis_json
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.explain.corpus import Progress
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.output import check_writable, write_atomic, write_json
from lstmviz_cli.page.build import build_page, select
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.html import render_html
from lstmviz_cli.render.jobs import default_workers


@contextlib.contextmanager
def corpus_progress(show: bool) -> Iterator[Progress | None]:
    """A progress bar on stderr while a corpus is read, when stderr is a terminal (else nothing)."""
    console = Console(stderr=True)
    if not show or not console.is_terminal:
        yield None
        return
    bar = RichProgress(TextColumn("reading the corpus"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), console=console, transient=True)
    with bar:
        task = bar.add_task("corpus", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def run_report_command(
    options: LoadOptions, view: ViewOptions, analysis_options: AnalysisOptions, *, output: Path,
    json_path: Path | None, force: bool, workers: int | None = None,
) -> str:
    """`lstmviz report`: trace, analyze and write one self-contained HTML file.

    The page and the JSON summary come from the same run and analysis, cut once to `--layers`.
    `workers`: processes that draw the figures (None: one per CPU, at most render.jobs.MAX_WORKERS).
    """
    check_writable(output, force=force)
    if json_path is not None:
        check_writable(json_path, force=force)
    corpus = analysis_options.corpus is not None
    run = pipeline.load_and_trace(options, float16_above=pipeline.REPORT_FLOAT16_ABOVE, corpus=corpus)
    with corpus_progress(corpus) as progress:
        analyzed = analyze_run(run, analysis_options, progress=progress)
    run, analysis, shown = select(run, analyzed, view)
    page = build_page(run, analysis, shown)
    html = render_html(page, workers=workers or default_workers())
    write_atomic(output, html, force=force)
    if json_path is not None:
        write_json(json_path, analysis_json(analysis, page.anchor), force=force)
    pipeline.announce(run)
    size_kb = len(html.encode("utf-8")) / 1024
    return f"wrote {output} ({size_kb:,.0f} KB); open it in a browser"
