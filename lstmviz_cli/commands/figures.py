"""`lstmviz figures`: every checkpoint's figures as publication-ready files, plus figures.json."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.many import expand_checkpoints, naming, run_many, unique_stems
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import OutputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.output import check_writable
from lstmviz_cli.page.build import report_page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.paper import (
    MANIFEST_NAME,
    ManifestEntry,
    PublicationStyle,
    check_format,
    export_items,
    manifest_owned,
    page_items,
    write_manifest,
)


def export_checkpoint(checkpoint: Path, options: LoadOptions, view: ViewOptions, out_dir: Path, fmt: str,
                      style: PublicationStyle, model: str, force: bool, owned: set[str]) -> list[ManifestEntry]:
    """One checkpoint of `lstmviz figures`: trace, analyze, write every figure of its report (runs in a worker).

    The figures are the report page's own (`Page.figures()`): the report and the files cannot differ.
    """
    run = pipeline.load_and_trace(replace(options, checkpoint=checkpoint))
    page = report_page(run, analyze_run(run, AnalysisOptions()), view)
    return export_items(page_items(page), model=model, out_dir=out_dir, fmt=fmt, style=style, force=force,
                        owned=owned)


@dataclass
class FiguresOutcome:
    """What `lstmviz figures` did: files written, checkpoints that failed (name -> message), manifest.

    `manifest` is None when no figure was written (every checkpoint of a batch failed).
    """

    entries: list[ManifestEntry]
    failures: dict[str, str]
    manifest: Path | None

    def failure_lines(self) -> list[str]:
        """One line per failed checkpoint, naming it once."""
        return [naming(name, message) for name, message in self.failures.items()]


def run_figures(checkpoints: Sequence[str | Path], options: LoadOptions, view: ViewOptions, *, out_dir: Path, fmt: str,
                style: PublicationStyle, jobs: int = 1, force: bool = False,
                show_progress: bool = True) -> FiguresOutcome:
    """`lstmviz figures`: every checkpoint's figures into `out_dir` plus figures.json; failures don't stop the rest.

    A single checkpoint's error propagates (exit 2 or 3); figures.json is written only when a figure was.
    """
    fmt = check_format(fmt)
    paths = expand_checkpoints(checkpoints)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"-o {str(out_dir)!r} is a file; name a directory for the figures")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST_NAME
    check_writable(manifest, force=force)
    owned = manifest_owned(out_dir)
    stems = unique_stems(paths)
    args = [(options, view, out_dir, fmt, style, stem, force, owned) for stem in stems]
    results = run_many(export_checkpoint, paths, args, jobs=jobs, label="figures", show_progress=show_progress)
    entries = [entry for r in results if r.value is not None for entry in r.value]
    failures = {r.checkpoint.name: r.error for r in results if r.error is not None}
    if not entries:
        return FiguresOutcome(entries=entries, failures=failures, manifest=None)
    write_manifest(out_dir, entries, style, fmt, force=True, failures=failures)
    return FiguresOutcome(entries=entries, failures=failures, manifest=manifest)
