"""`lstmviz check A.pt B.pt C.pt`: each checkpoint checked as alone, and their gate statistics as a timeline.

Checkpoints are put in training order (`analysis.timeline.training_order`: `epoch_2.pt` before
`epoch_10.pt`, whatever the shell's sort), each is checked by `commands.check.check_one` exactly as
`lstmviz check` checks one (its JSON entry is that checkpoint's own `--json`, but for the anchors: no
page of one checkpoint is written, so nothing links into one), and their measures
form a `Timeline`: `--json` adds it beside the models, `--report` writes its page (one table and one
line chart per measure), and the terminal gets a one-screen table of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lstmviz_cli.analysis.baseline import Baseline
from lstmviz_cli.analysis.checks import CheckCase, CheckResult
from lstmviz_cli.analysis.timeline import Timeline, TimelinePoint, training_order
from lstmviz_cli.commands.check import (
    CheckOutputs,
    check_one,
    check_outputs_writable,
    read_baseline_file,
    write_outputs,
)
from lstmviz_cli.commands.checkconfig import CheckSettings
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import CheckpointError, LstmvizError
from lstmviz_cli.output import write_atomic
from lstmviz_cli.page.timeline import build_timeline_page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.folder import write_folder
from lstmviz_cli.render.html import render_html


@dataclass(frozen=True)
class TimelineCheck:
    """Every checkpoint's check result, in training order, and the timeline of their measures."""

    results: list[CheckResult]
    timeline: Timeline
    ordering: str  # how the checkpoints were ordered, in words

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)


def _ordering(axis: str, renamed: bool) -> str:
    if axis == "checkpoint":
        return "In the order given."
    return f"Ordered by the {axis} number in their names" + (" (not as given)." if renamed else ".")


def distinct_names(paths: list[Path]) -> list[str]:
    """How the outputs name each checkpoint: its file name, or as many of its last path parts as tell the
    checkpoints apart (`run_a/model.pt`, `run_b/model.pt`), the same number for all."""
    parts = [path.parts for path in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]


def check_timeline(paths: list[Path], options: LoadOptions, settings: CheckSettings,
                   baselines: Mapping[str, Baseline] | None = None) -> TimelineCheck:
    """Check each checkpoint on the same sample and settings (against its baseline in `baselines`, by its name
    in `distinct_names`); one that cannot be loaded, traced or compared is a failed point with that
    one-line error."""
    names = distinct_names(paths)
    order, steps, axis = training_order(names)
    ordered = [(paths[k], names[k]) for k in order]
    results: list[CheckResult] = []
    points: list[TimelinePoint] = []
    for k, (path, name) in enumerate(ordered):
        step = None if steps is None else steps[k]
        baseline = (baselines or {}).get(name)
        try:
            result = check_one(replace(options, checkpoint=path), settings, ViewOptions(), baseline=baseline,
                               name=name)
        except LstmvizError as error:
            case = CheckCase("error", "checkpoint checked", None, None, None, False, error.message)
            result = CheckResult(model=name, cases=[case], config=settings.config,
                                 settings_source=None if settings.source is None else str(settings.source),
                                 baseline=None if baseline is None else baseline.source)
        # No page of this one checkpoint is written (the report is the timeline's): nothing to link to.
        result.anchors, result.verification_anchor = {}, None
        results.append(result)
        measured = tuple(result.measures) or None
        failure = None if measured is not None else result.cases[0].message
        points.append(TimelinePoint(name, step, measured, error=failure, passed=result.passed))
    return TimelineCheck(results, Timeline(tuple(points), axis=axis), _ordering(axis, order != sorted(order)))


def run_check_timeline(paths: list[Path], options: LoadOptions, settings: CheckSettings,
                       outputs: CheckOutputs) -> TimelineCheck:
    """`lstmviz check` over several checkpoints: refuse unwritable outputs and unusable baselines first, check
    each, then write the JSON (with the timeline), JUnit and Markdown of them all and the timeline's page.

    Raises CheckpointError when a path does not exist (a typo, or a flag's value read as a path): a
    checkpoint that exists but cannot be loaded is a failed point of the timeline instead.
    """
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise CheckpointError(f"checkpoint {missing[0]!r} does not exist"
                              + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""))
    check_outputs_writable(outputs, settings, options)
    baselines = {} if settings.baseline is None else {
        name: read_baseline_file(settings.baseline, model=name) for name in distinct_names(paths)}
    checked = check_timeline(paths, options, settings, baselines)
    write_outputs(checked.results, outputs, extra={"timeline": checked.timeline.to_json()})
    if outputs.report is not None:
        config = settings.config
        references = {} if config.max_saturated is None else {
            "saturation": (config.max_saturated, f"--max-saturated {config.max_saturated:g}")}
        page = build_timeline_page(checked.timeline, title=f"lstmviz check: {len(paths)} checkpoints",
                                   ordering=checked.ordering, references=references)
        if outputs.report_format == "dir":
            write_folder(page, outputs.report, workers=1)
        else:
            write_atomic(outputs.report, render_html(page, workers=1), force=outputs.force)
    return checked
