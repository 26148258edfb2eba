"""Many checkpoints at once: pattern expansion, a process pool with a progress bar, and index.html."""

from __future__ import annotations

import glob
import html
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lstmviz_cli.errors import EXIT_CHECK_FAILED, InputError, LstmvizError

# Partial failure of a batch: some outputs were written, at least one checkpoint failed.
EXIT_SOME_FAILED = EXIT_CHECK_FAILED
INDEX_NAME = "index.html"


@dataclass
class ItemResult:
    """What one checkpoint's job returned: a value, or the one-line error that stopped it."""

    checkpoint: Path
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ReportSummary:
    """One row of index.html: what a reader needs to pick which report to open."""

    name: str
    file: str | None  # the report's file name inside out-dir, None when it failed
    format: str = ""
    n_params: int = 0
    layers: list[str] = field(default_factory=list)
    verify_error: float | None = None
    findings: dict[str, int] = field(default_factory=dict)  # severity -> count
    error: str | None = None


def expand_checkpoints(patterns: Sequence[str | Path]) -> list[Path]:
    """Paths and glob patterns (the shell's or ours, for quoted patterns and Windows) -> existing files.

    Order is the order given, each pattern's matches sorted; duplicates dropped. A pattern that
    matches nothing is an error naming it, so a typo in CI does not silently check nothing.
    """
    paths: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        text = str(pattern)
        if glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(f"no checkpoint matches {text!r}")
        else:
            matches = [Path(text)]
        for path in matches:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(path)
    if not paths:
        raise InputError("no checkpoint given")
    return paths


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct, file-name-safe stem per checkpoint: `a/model.pt` and `b/model.pt` -> `model`, `model-2`."""
    from lstmviz_cli.render.paper import model_stem

    stems: list[str] = []
    counts: dict[str, int] = {}
    for path in paths:
        stem = model_stem(path.name)
        counts[stem] = counts.get(stem, 0) + 1
        stems.append(stem if counts[stem] == 1 else f"{stem}-{counts[stem]}")
    return stems


def _call(job: Callable[..., Any], checkpoint: Path, args: tuple[Any, ...]) -> ItemResult:
    """Run one job, turning the tool's errors (and bugs) into a message so the batch goes on."""
    try:
        return ItemResult(checkpoint, value=job(checkpoint, *args))
    except LstmvizError as error:
        return ItemResult(checkpoint, error=error.message)
    except Exception as error:  # noqa: BLE001 - one bad checkpoint must not stop the others
        return ItemResult(checkpoint, error=f"internal error: {type(error).__name__}: {error}")


def run_many(job: Callable[..., Any], checkpoints: Sequence[Path], per_item_args: Sequence[tuple[Any, ...]], *,
             jobs: int = 1, label: str = "working", show_progress: bool = True) -> list[ItemResult]:
    """Run `job(checkpoint, *args)` for every checkpoint, in `jobs` processes, results in input order.

    `job` must be a module-level function (it is pickled for the worker processes). The progress
    bar goes to stderr, so stdout stays clean for tables and messages.
    """
    if jobs < 1:
        raise InputError(f"--jobs {jobs} must be at least 1")
    results: list[ItemResult | None] = [None] * len(checkpoints)
    with _progress(show_progress) as progress:
        task = progress.add_task(label, total=len(checkpoints))
        if jobs == 1 or len(checkpoints) == 1:
            for index, (path, args) in enumerate(zip(checkpoints, per_item_args, strict=True)):
                progress.update(task, description=f"{label} {path.name}")
                results[index] = _call(job, path, args)
                progress.advance(task)
        else:
            import multiprocessing

            # spawn, not fork: forking a process that has started torch's thread pools can hang.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(checkpoints)), mp_context=context) as pool:
                futures = {
                    pool.submit(_call, job, path, args): index
                    for index, (path, args) in enumerate(zip(checkpoints, per_item_args, strict=True))
                }
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        results[index] = future.result()
                    except Exception as error:  # noqa: BLE001 - a worker died (killed, out of memory)
                        results[index] = ItemResult(checkpoints[index], error=f"worker failed: {type(error).__name__}: {error}")
                    progress.advance(task)
    return [r for r in results if r is not None]


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None

    def advance(self, *args: Any, **kwargs: Any) -> None:
        return None


def _progress(show: bool) -> Any:
    """A rich progress bar on stderr; nothing at all when stderr is not a terminal (CI logs stay clean)."""
    if not show:
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return _NoProgress()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)


# -- batch reports ------------------------------------------------------------------------------------
def report_job(checkpoint: Path, options: Any, view: Any, output: Path, force: bool, workers: int = 1) -> ReportSummary:
    """One checkpoint of `lstmviz report A.pt B.pt --out-dir D`: trace, analyze, render, summarise.

    `workers` draw its figures: all CPUs when checkpoints run one at a time, 1 when they run in parallel.
    """
    from lstmviz_cli.commands.pipeline import REPORT_FLOAT16_ABOVE, load_and_trace
    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.output import write_atomic
    from lstmviz_cli.page.report import render_report

    run = load_and_trace(replace(options, checkpoint=checkpoint), float16_above=REPORT_FLOAT16_ABOVE)
    analysis = analyze_run(run, view)
    write_atomic(output, render_report(run, analysis, view, workers=workers), force=force)
    return summarize(run, analysis, name=checkpoint.name, file=output.name)


def summarize(run: Any, analysis: Any, *, name: str, file: str | None) -> ReportSummary:
    """The index row of one report, read from the same run and analysis the report shows."""
    counts: dict[str, int] = {}
    for finding in getattr(analysis, "findings", []):
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    info = run.loaded.info
    return ReportSummary(
        name=name, file=file, format=info.format, n_params=int(info.n_params),
        layers=[layer.prefix for layer in run.trace.layers], verify_error=run.trace.verify_error,
        findings=dict(sorted(counts.items())),
    )


def run_batch_report(checkpoints: Sequence[str | Path], options: Any, view: Any, *, out_dir: Path, jobs: int = 1,
                     force: bool = False, show_progress: bool = True) -> tuple[list[ReportSummary], Path]:
    """`lstmviz report A.pt B.pt --out-dir D`: one report per checkpoint and D/index.html linking them.

    A failing checkpoint becomes a failed row; the others still run. Returns the rows and the index path.
    """
    from lstmviz_cli.output import check_writable

    paths = expand_checkpoints(checkpoints)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {str(out_dir)!r} is a file; name a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    # A checkpoint called index.pt must not take the index page's name.
    outputs = [out_dir / (f"{stem}-report.html" if stem == "index" else f"{stem}.html") for stem in unique_stems(paths)]
    index = out_dir / INDEX_NAME
    for path in [*outputs, index]:
        check_writable(path, force=force)  # refuse before hours of work, not after
    from lstmviz_cli.render.jobs import default_workers

    workers = default_workers() if jobs == 1 else 1
    args = [(options, view, output, force, workers) for output in outputs]
    results = run_many(report_job, paths, args, jobs=jobs, label="report", show_progress=show_progress)
    rows = [
        r.value if r.ok else ReportSummary(name=r.checkpoint.name, file=None, error=r.error)
        for r in results
    ]
    from lstmviz_cli.output import write_atomic

    write_atomic(index, render_index(rows, title=getattr(view, "title", None) or "lstmviz reports"), force=force)
    return rows, index


def render_index(rows: Sequence[ReportSummary], *, title: str) -> str:
    """index.html: one row per checkpoint, linking its report (autoescaped template, no outside links)."""
    from lstmviz_cli.output import GENERATOR_MARKER

    env = template_environment()
    template = env.get_template("index.html.j2")
    return template.render(title=title, rows=list(rows), generator=GENERATOR_MARKER,
                           failed=sum(1 for r in rows if r.error))


def template_environment() -> Any:
    """The Jinja2 environment for this module's pages: autoescape on for every name, strict undefined."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,  # select_autoescape() would skip *.j2 names
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["sci"] = lambda v: "-" if v is None else f"{v:.1e}"
    env.filters["thousands"] = lambda v: f"{int(v):,}"
    env.filters["escape_attr"] = html.escape
    return env


def templates_dir() -> Path:
    """templates/ in a checkout, or lstmviz_cli/templates inside an installed wheel."""
    from importlib import resources

    packaged = Path(str(resources.files("lstmviz_cli") / "templates"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def run_batch_command(checkpoints: Sequence[str], options: Any, view: Any, *, out_dir: Path | None, jobs: int,
                      json_path: Path | None, force: bool) -> tuple[list[ReportSummary], Path]:
    """`lstmviz report A B --out-dir D`: validate the batch form's options, then run the batch."""
    if out_dir is None:
        raise InputError("several checkpoints need --out-dir DIR (one report each, plus DIR/index.html)")
    if json_path is not None:
        raise InputError("--json takes one checkpoint; in a batch, use `lstmviz check --json` per checkpoint")
    return run_batch_report(checkpoints, options, view, out_dir=out_dir, jobs=jobs, force=force)
