"""The command line: options, help and the error boundary. No logic lives here.

Each command is its options and one call to `commands/`: the options shared by every command that
loads a model arrive as one `LoadOptions` record (`cli_options.with_load_options`); the others build
`ViewOptions` / `AnalysisOptions`. `commands/` is imported inside the command functions: it imports
torch and matplotlib, which `lstmviz --help` and `lstmviz --version` must not pay for.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lstmviz_cli import __version__
from lstmviz_cli._warncapture import captured_warnings
from lstmviz_cli.analysis.checksettings import PAGE_FORMATS, CheckConfig, Tolerances, tolerance_name
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.cli_options import (
    HORIZON_SHARE,
    SATURATION_BAND,
    CheckpointArg,
    CheckpointsArg,
    ColorScaleOpt,
    Command,
    Group,
    LayersOpt,
    flag,
    force_flag,
    in_words,
    with_load_options,
)
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_SOME_FAILED,
    InputError,
    LstmvizError,
    first_line,
)
from lstmviz_cli.glyphs import for_terminal
from lstmviz_cli.page.view import ViewOptions

if TYPE_CHECKING:  # commands/ imports torch: only for the type checker here
    from lstmviz_cli.commands.check import CheckOutputs
    from lstmviz_cli.commands.checkconfig import CheckSettings

app = typer.Typer(
    name="lstmviz",
    cls=Group,
    help="See inside recurrent networks: every gate of every LSTM/GRU layer, as one offline HTML report.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}
# The --tolerance help: every measure with its default, from the record that holds them.
TOLERANCES_HELP = ", ".join(f"{tolerance_name(name)} (default {in_words(value)})"
                            for name, value in Tolerances().to_json().items())


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lstmviz {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.", metavar=""),
    ] = None,
    debug: Annotated[bool, flag("--debug", "Show full tracebacks instead of one-line errors.")] = False,
) -> None:
    """lstmviz: trace a PyTorch checkpoint and show what its gates do."""
    _state["debug"] = debug


@app.command("trace", cls=Command)
@with_load_options(checkpoint="checkpoint")
def trace_command(
    checkpoint: CheckpointArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the .npz of every series.")] = Path(
        "trace.npz"
    ),
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write a JSON summary (keys, shapes, config, error).")
    ] = None,
    float16: Annotated[bool, flag("--float16", "Store series as float16 (half the size).")] = False,
    force: Annotated[bool, force_flag("outputs")] = False,
    *,
    load: LoadOptions,
) -> None:
    """Record every gate of every recurrent layer and save them as arrays.

    Example: lstmviz trace sample_models/charlm.pt -o trace.npz --json trace.json
    """
    # Imported when the command runs: commands/ and render/ load torch and matplotlib, never for --help.
    from lstmviz_cli.commands.trace import run_trace_command

    typer.echo(for_terminal(run_trace_command(load, output=output, json_path=json_path,
                                              dtype="float16" if float16 else "float32", force=force)))


@app.command("report", cls=Command)
@with_load_options(checkpoint="checkpoints")
def report_command(
    checkpoints: Annotated[
        list[str], typer.Argument(help="Checkpoint(s); with several (or a glob such as 'ckpts/*.pt') use --out-dir.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Batch: one report per checkpoint here, plus index.html.")
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", help="Processes. One report: figures drawn in parallel (default: CPUs, at most 4). "
                     "Batch: checkpoints in parallel (default 1)."),
    ] = None,
    title: Annotated[str | None, typer.Option("--title", help="Report title (default: the checkpoint name).")] = None,
    layers: LayersOpt = None,
    units: Annotated[
        str | None, typer.Option("--units", help="Units to show: a count (top-N by variance, e.g. 32), 'all', or "
                                 "indices '0,5,9' (one unit: '7,'; '0' is unit 0).")
    ] = None,
    steps: Annotated[
        str | None, typer.Option("--steps", help="Time window for diagrams and heatmaps, e.g. 0:20.")
    ] = None,
    at_step: Annotated[
        int | None, typer.Option("--at-step", help="Write gate values of this step on the cell diagram (default: means).")
    ] = None,
    sort_units: Annotated[
        str, typer.Option("--sort-units", help="Order heatmap rows: none, variance or cluster.")
    ] = "variance",
    color_scale: ColorScaleOpt = "auto",
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="CSV of per-step labels (header row, one column per feature) to rank units against."),
    ] = None,
    saturation_low: Annotated[
        float, typer.Option("--saturation-low", help="Gate values below this count as left-saturated.")
    ] = Thresholds.saturation_low,
    saturation_high: Annotated[
        float, typer.Option("--saturation-high", help="Gate values above this count as right-saturated.")
    ] = Thresholds.saturation_high,
    saliency_step: Annotated[
        int | None, typer.Option("--saliency-step", help="Output step whose gradient saliency is shown (default: the last).")
    ] = None,
    memory_probe: Annotated[bool, flag("--memory-probe", "Also run the key-at-start memory-length probe.")] = False,
    corpus: Annotated[bool, flag("--corpus", "Read --input as many sequences and pool the statistics, units and "
                                 "findings over all of them: a .txt file (one per line, or per paragraph when it has "
                                 "blank lines), a folder of .txt files (no flag needed), or an .npy/.npz batch.")] = False,
    attribution: Annotated[
        str, typer.Option("--attribution", help="Decompositions of the prediction: auto (LRP; contextual decomposition "
                          "on short inputs), none, or a list such as cd,lrp.")
    ] = AnalysisOptions.attribution,
    ablate: Annotated[
        list[str] | None, typer.Option("--ablate", help="Check a unit causally: clamp (or zero) its h while the model "
                                       "runs, e.g. lstm/l0/fwd:49 or lstm/l0/fwd:49=0.5 (repeatable).")
    ] = None,
    ablate_mode: Annotated[
        str, typer.Option("--ablate-mode", help="clamp: hold the unit at its mean where its feature is absent (else its "
                          "mean); zero: set it to 0.")
    ] = AnalysisOptions.ablate_mode,
    ablate_top: Annotated[
        int, typer.Option("--ablate-top", help="How many top-ranked units are checked causally (0: none).")
    ] = AnalysisOptions.ablate_top,
    permutations: Annotated[
        int, typer.Option("--permutations", help="Block permutations per feature for the units' p-values (0: none).")
    ] = AnalysisOptions.permutations,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the analysis results as JSON.")
    ] = None,
    page_format: Annotated[
        str, typer.Option("--format", help="html (one self-contained file) or dir (a folder with no inline code, "
                          "for servers with a strict Content-Security-Policy; -o names the folder).")
    ] = "html",
    open_page: Annotated[bool, flag("--open", "Open the report (a batch: its index) in the default browser.")] = False,
    force: Annotated[bool, force_flag("an output file")] = False,
    *,
    load: LoadOptions,
) -> None:
    """Trace the model on a sample and write one self-contained HTML report.

    Example: lstmviz report sample_models/charlm.pt -o report.html

    Batch example: lstmviz report sample_models/*.pt --out-dir reports/ --jobs 2
    """
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs {jobs} must be at least 1")
    view = ViewOptions(title=title, layers=layers, units=units, steps=steps, at_step=at_step, sort_units=sort_units,
                       color_scale=color_scale)
    corpus_path = load.input if corpus or (load.input is not None and load.input.is_dir()) else None
    if ablate_mode not in ("clamp", "zero"):
        raise InputError(f"--ablate-mode {ablate_mode!r}: choose clamp or zero")
    if ablate_top < 0 or permutations < 0:
        raise InputError("--ablate-top and --permutations must be 0 or more")
    _check_explain_options(attribution, ablate or (), permutations)
    if corpus_path is not None and labels is not None:
        raise InputError("--labels gives one row per step of one sequence; it cannot label a corpus (drop --corpus "
                         "or --labels)")
    if corpus and load.input is None:
        raise InputError("--corpus reads --input: pass --input corpus.txt (or a folder, .npy or .npz)")
    analysis_options = AnalysisOptions(
        labels=labels, saturation_low=saturation_low, saturation_high=saturation_high,
        saliency_step=saliency_step, memory_probe=memory_probe, attribution=attribution,
        ablate=tuple(ablate or ()), ablate_mode=ablate_mode, ablate_top=ablate_top, permutations=permutations,
        corpus=corpus_path,
    )
    batch = out_dir is not None or len(checkpoints) > 1
    if page_format == "dir" and batch:
        raise InputError("--format dir writes one report as a folder; for several checkpoints run one report each")
    if page_format == "dir" and output == Path("report.html"):
        output = Path("report")  # the default name, as a folder
    page_format = _page_format(page_format, output, "-o")
    if batch:
        from lstmviz_cli.commands.batch import run_batch_command  # torch: not for --help
        from lstmviz_cli.commands.many import naming

        rows, index = run_batch_command(checkpoints, load, view, analysis_options, out_dir=out_dir, jobs=jobs or 1,
                                        json_path=json_path, force=force)
        failed = [row for row in rows if row.error]
        typer.echo(for_terminal(f"wrote {len(rows) - len(failed)} reports and {index}"))
        for row in failed:
            typer.echo(for_terminal(f"lstmviz: error: {naming(row.name, row.error or '')}"), err=True)
        if open_page:
            _open(index)
        if failed:
            raise typer.Exit(EXIT_SOME_FAILED)
        return
    from lstmviz_cli.commands.report import run_report_command  # torch, matplotlib: not for --help

    typer.echo(for_terminal(run_report_command(load, view, analysis_options, output=output, json_path=json_path,
                                              force=force, workers=jobs, page_format=page_format)))
    if open_page:
        from lstmviz_cli.render.folder import INDEX

        _open(output / INDEX if page_format == "dir" else output)


def _open(page: Path) -> None:
    """`--open`: the written page in the default browser; a machine without one gets a note, not an error."""
    from lstmviz_cli.api.display import open_in_browser

    if not open_in_browser(page):
        typer.echo(for_terminal(f"lstmviz: note: no browser could be started; open {page} yourself"), err=True)


# -- papers and CI (issue 6): figures, check, diff ------------------------------------------------
@app.command("figures", cls=Command)
@with_load_options(checkpoint="checkpoints")
def figures_command(
    checkpoints: CheckpointsArg,
    out_dir: Annotated[Path, typer.Option("--output", "-o", help="Directory for the figure files and figures.json.")] = Path("figs"),
    fmt: Annotated[str, typer.Option("--format", "-f", help="pdf, svg, png or pgf (pgf needs LaTeX).")] = "pdf",
    width: Annotated[str, typer.Option("--width", help="single (3.5 in), double (7.16 in) or inches, e.g. 5.5.")] = "double",
    grayscale: Annotated[bool, flag("--grayscale", "Print-safe gray: luminance of every colour.")] = False,
    font_size: Annotated[float, typer.Option("--font-size", help="Base font size in points.")] = 8.0,
    layers: LayersOpt = None,
    units: Annotated[
        str | None, typer.Option("--units", help="Heatmap units: a count (top-N by variance), 'all', or indices "
                                 "'0,5,9' (one unit: '7,'; '0' is unit 0).")
    ] = None,
    steps: Annotated[str | None, typer.Option("--steps", help="Time window of heatmaps and diagrams, e.g. 0:20.")] = None,
    color_scale: ColorScaleOpt = "auto",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Checkpoints processed in parallel (processes).")] = 1,
    force: Annotated[bool, force_flag("files")] = False,
    *,
    load: LoadOptions,
) -> None:
    """Export every figure of the report as its own publication-ready file, plus a figures.json manifest.

    Example: lstmviz figures sample_models/*.pt -o figs/ --format pdf --width double --jobs 2
    """
    # Imported when the command runs: commands/ and render/ load torch and matplotlib, never for --help.
    from lstmviz_cli.commands.figures import run_figures
    from lstmviz_cli.render.paper import PublicationStyle, parse_width

    style = PublicationStyle(width=parse_width(width), grayscale=grayscale, font_size=font_size)
    view = ViewOptions(layers=layers, units=units, steps=steps, color_scale=color_scale)
    outcome = run_figures(checkpoints, load, view, out_dir=out_dir, fmt=fmt, style=style, jobs=jobs, force=force)
    manifest = f" and {outcome.manifest}" if outcome.manifest is not None else " (no figures.json)"
    typer.echo(for_terminal(f"wrote {len(outcome.entries)} figures{manifest}"))
    for line in outcome.failure_lines():
        typer.echo(for_terminal(f"lstmviz: error: {line}"), err=True)
    if outcome.failures:
        raise typer.Exit(EXIT_SOME_FAILED)


@app.command("check", cls=Command)
@with_load_options(checkpoint="checkpoints", no_verify=False)
def check_command(
    checkpoints: Annotated[
        list[str], typer.Argument(help="Checkpoint(s). Several (or a glob such as 'ckpts/epoch_*.pt') are checked "
                                  "one by one, in training order, and --json/--report add their timeline.")
    ],
    max_saturated: Annotated[
        str | None,
        typer.Option("--max-saturated", metavar="FRACTION|off", help=f"Max share of a gate's values "
                     f"{SATURATION_BAND} (default {in_words(CheckConfig.max_saturated)})."),
    ] = None,
    max_dead_units: Annotated[
        str | None,
        typer.Option("--max-dead-units", metavar="N|N%|off", help="Max dead units per layer: a count (3) or a share (10%) "
                     f"(default {in_words(CheckConfig.max_dead_units)})."),
    ] = None,
    min_memory_horizon: Annotated[
        str | None,
        typer.Option("--min-memory-horizon", metavar="STEPS|off", help=f"Min steps back holding {HORIZON_SHARE} of the output's saliency "
                     f"(default {in_words(CheckConfig.min_memory_horizon)}; at most the sample's steps)."),
    ] = None,
    max_verify_error: Annotated[
        str | None,
        typer.Option("--max-verify-error", metavar="NUMBER|off", help="Max |recorded - real| of the trace, looser or tighter than "
                     f"the default {in_words(CheckConfig.max_verify_error)}."),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="Analysis findings that fail the check: error, warning or never "
                     f"(default {in_words(CheckConfig.fail_on)})."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Fail when a measure moved past its tolerance from this earlier "
                     "`check --json` file (gate means and stds, saturation, dead units, memory horizon, "
                     "verification error)."),
    ] = None,
    tolerance: Annotated[
        list[str] | None,
        typer.Option("--tolerance", metavar="MEASURE=VALUE",
                     help=f"How far a measure may move from --baseline (repeatable; 'off' skips it): {TOLERANCES_HELP}."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Settings file (default: the nearest lstmviz.toml, or "
                                  "pyproject.toml with a tool.lstmviz.check table).")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write every check and measure as JSON "
                                                   "(a valid --baseline).")] = None,
    junit_path: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one test case per check).")] = None,
    markdown_path: Annotated[
        Path | None, typer.Option("--markdown", help="Write the summary as Markdown (also appended to "
                                  "$GITHUB_STEP_SUMMARY when that is set).")
    ] = None,
    report_path: Annotated[Path | None, typer.Option("--report", help="Also write the HTML report, opened by the "
                                                     "check's verdict (one trace for both).")] = None,
    page_format: Annotated[
        str, typer.Option("--format", help="How --report is written: html (one self-contained file) or dir (a "
                          "folder with no inline code, for servers with a strict Content-Security-Policy).")
    ] = "html",
    report_url: Annotated[
        str | None, typer.Option("--report-url", help="Where the report will be served: the JUnit and Markdown "
                                 "link each failure to its evidence there.")
    ] = None,
    force: Annotated[bool, force_flag("output files")] = False,
    *,
    load: LoadOptions,
) -> None:
    """Gate-health check for CI: exit 0 when healthy, 1 when a threshold is crossed or a measure moved.

    Example: lstmviz check sample_models/charlm.pt --max-saturated 0.9 --junit check.xml --report report.html

    Baseline example: lstmviz check model.pt --json base.json; later: lstmviz check model.pt --baseline base.json

    Training over time: lstmviz check ckpts/epoch_*.pt --json timeline.json --report timeline.html
    """
    # Imported when the command runs: commands/ and render/ load torch and matplotlib, never for --help.
    from lstmviz_cli.commands.check import CheckOutputs, run_check
    from lstmviz_cli.commands.checkconfig import parse_tolerance_flags, resolve_config
    from lstmviz_cli.render.checkresults import summary_table

    flags = {"max_saturated": max_saturated, "max_dead_units": max_dead_units,
             "min_memory_horizon": min_memory_horizon, "max_verify_error": max_verify_error, "fail_on": fail_on}
    if page_format != "html" and report_path is None:
        raise InputError(f"--format {page_format} says how --report is written; add --report FOLDER")
    if report_url is not None and not report_url.strip():
        raise InputError("--report-url is empty: give the address the report will be served at, or leave it out")
    settings = resolve_config(flags, tolerances=parse_tolerance_flags(tolerance), baseline=baseline,
                              config_path=config)
    outputs = CheckOutputs(
        json=json_path, junit=junit_path, markdown=markdown_path, step_summary=_github_step_summary(),
        report=report_path, report_format=_page_format(page_format, report_path, "--report"),
        report_url=report_url, artifacts_url=_github_run_url(), force=force,
    )
    from lstmviz_cli.commands.many import expand_checkpoints

    paths = expand_checkpoints(checkpoints)
    if len(paths) > 1:
        _check_timeline(paths, load, settings, outputs)
        return
    result = run_check(replace(load, checkpoint=paths[0]), settings, ViewOptions(), outputs)
    console = Console(width=110)
    console.print(summary_table([result]))
    model = for_terminal(result.model)  # printed as text: no escape sequence, no rich markup
    console.print(f"{model}: {result.verdict()}", highlight=False, markup=False)
    for line in filter(None, (settings.source_text(), f"baseline: {settings.baseline}" if settings.baseline else "")):
        console.print(f"{model}: {for_terminal(line)}", highlight=False, markup=False)
    if result.recurrent_only:
        console.print(f"{model}: checked with --recurrent-only: the recurrent layers alone, fed the sample "
                      "directly; the model's other layers were not run", highlight=False, markup=False)
    if not result.passed:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _check_explain_options(attribution: str, ablate: Sequence[str], permutations: int) -> None:
    """Refuse a malformed --attribution or --ablate, or an unaffordable --permutations, before any work
    (the units named are checked against the model once it is traced)."""
    from lstmviz_cli.explain.gather import parse_attribution  # torch: not for --help
    from lstmviz_cli.explain.intervention import parse_unit_spec
    from lstmviz_cli.explain.significance import MAX_PERMUTATIONS

    if permutations > MAX_PERMUTATIONS:
        raise InputError(f"--permutations {permutations:,}: at most {MAX_PERMUTATIONS:,} (the test holds every "
                         "permutation in memory; 2,000 already resolve p-values down to features / 2,001)")
    parse_attribution(attribution)
    for text in ablate:
        parse_unit_spec(text)


def _page_format(value: str, path: Path | None, option: str) -> str:
    """--format checked: html or dir; a dir needs a folder name, not an .html file."""
    if value not in PAGE_FORMATS:
        raise InputError(f"--format {value!r} must be one of {', '.join(PAGE_FORMATS)}")
    if value == "dir" and path is not None and path.suffix.lower() in (".html", ".htm"):
        raise InputError(f"--format dir writes a folder: give {option} a folder name such as "
                         f"{str(path.with_suffix(''))!r}, not {str(path)!r}")
    return value


def _github_step_summary() -> Path | None:
    """GitHub Actions' job summary file, when running there ($GITHUB_STEP_SUMMARY)."""
    value = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    return Path(value) if value else None


def _github_run_url() -> str | None:
    """The GitHub Actions run's page (where its artifacts are listed), when running there."""
    parts = [os.environ.get(name, "").strip() for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}" if all(parts) else None


def _check_timeline(paths: list[Path], load: LoadOptions, settings: CheckSettings, outputs: CheckOutputs) -> None:
    """`check` over several checkpoints: each one's checks, then their timeline (`commands.timeline`)."""
    from lstmviz_cli.commands.timeline import run_check_timeline
    from lstmviz_cli.render.checkresults import summary_table
    from lstmviz_cli.render.timeline import timeline_table

    checked = run_check_timeline(paths, load, settings, outputs)
    console = Console(width=140)
    console.print(summary_table(checked.results))
    console.print(timeline_table(checked.timeline))
    failed = [result for result in checked.results if not result.passed]
    verdict = "all healthy" if not failed else f"{len(failed)} of {len(checked.results)} checkpoints failed"
    console.print(for_terminal(f"{len(paths)} checkpoints: {verdict}. {checked.ordering}"), highlight=False,
                  markup=False)
    for line in filter(None, (settings.source_text(), f"baseline: {settings.baseline}" if settings.baseline else "")):
        console.print(for_terminal(line), highlight=False, markup=False)
    if failed:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.command("diff", cls=Command)
@with_load_options(checkpoint="before")
def diff_command(
    before: Annotated[Path, typer.Argument(help="The earlier checkpoint.")],
    after: Annotated[Path, typer.Argument(help="The later checkpoint (same architecture).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("diff.html"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the comparison as JSON.")] = None,
    force: Annotated[bool, force_flag("an output file")] = False,
    *,
    load: LoadOptions,
) -> None:
    """Compare two checkpoints of one architecture: weights per gate, gate statistics, saturation, units.

    Example: lstmviz diff epoch1.pt epoch10.pt -o diff.html
    """
    # Imported when the command runs: commands/ and render/ load torch and matplotlib, never for --help.
    from lstmviz_cli.commands.diff import run_diff_command

    typer.echo(for_terminal(run_diff_command(load, after, AnalysisOptions(), output=output, json_path=json_path,
                                             force=force)))


@contextlib.contextmanager
def _quiet_warnings(debug: bool) -> Iterator[None]:
    caught: list[str] = []
    try:
        with captured_warnings() as caught:
            yield
    finally:
        for line in caught if debug else ():
            typer.echo(for_terminal(f"lstmviz: debug: warning: {line}"), err=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and map every failure to one line on stderr and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        # Standalone mode: Typer prints usage errors itself (exit 2) and turns Ctrl-C into exit 130.
        # No Python warning reaches the terminal (what is worth telling is on the page as a note);
        # --debug prints them at the end.
        with _quiet_warnings(debug):
            app(args=args, prog_name="lstmviz")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except LstmvizError as error:
        if debug:
            raise
        typer.echo(for_terminal(f"lstmviz: error: {error.message}"), err=True)
        return error.exit_code
    except KeyboardInterrupt:
        typer.echo("lstmviz: interrupted; no output was written or replaced.", err=True)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the boundary: a bug in lstmviz or in the user's model code
        if debug:
            raise
        typer.echo(for_terminal(
            f"lstmviz: internal error: {type(error).__name__}: {first_line(error)} (run with --debug for the traceback)"),
            err=True,
        )
        return EXIT_INTERNAL
    return 0


def run() -> None:
    """The console script and `python -m lstmviz_cli`: `main()`, then exit without interpreter teardown.

    Unloading torch and matplotlib takes 0.6–0.8 s after the work is done (measured; see
    benchmarks/RESULTS.md). By then every output is closed and renamed into place (write_atomic)
    and worker processes are joined, so only the standard streams need flushing.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`lstmviz ... | head`): nothing left to say
            pass
    os._exit(code)
