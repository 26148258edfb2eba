"""`lstmviz check A.pt B.pt C.pt`: each checkpoint checked as alone, and their gate statistics as a timeline.

Checkpoints are put in training order (`analysis.timeline.training_order`: `epoch_2.pt` before
`epoch_10.pt`, whatever the shell's sort), each is checked by `commands.check.check_one` exactly as
`lstmviz check` checks one (its JSON entry is that checkpoint's own `--json`), and their measures
form a `Timeline`: `--json` adds it beside the models, `--report` writes its page (one table and one
line chart per measure), and the terminal gets a one-screen table of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lstmviz_cli.analysis.checks import CheckCase, CheckResult
from lstmviz_cli.analysis.checksettings import CheckConfig
from lstmviz_cli.analysis.timeline import Timeline, TimelinePoint, training_order
from lstmviz_cli.commands.check import check_one, write_outputs
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import LstmvizError
from lstmviz_cli.output import check_writable, write_atomic
from lstmviz_cli.page.timeline import build_timeline_page
from lstmviz_cli.page.view import ViewOptions
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


def check_timeline(paths: list[Path], options: LoadOptions, config: CheckConfig) -> TimelineCheck:
    """Check each checkpoint on the same sample and settings; one that cannot be loaded is a failed point."""
    order, steps, axis = training_order([path.name for path in paths])
    ordered = [paths[k] for k in order]
    results: list[CheckResult] = []
    points: list[TimelinePoint] = []
    for k, path in enumerate(ordered):
        step = None if steps is None else steps[k]
        try:
            result = check_one(replace(options, checkpoint=path), config, ViewOptions())
        except LstmvizError as error:
            case = CheckCase("load", "load and trace", None, None, None, False, error.message)
            result = CheckResult(model=path.name, cases=[case], config=config)
        results.append(result)
        failure = None if result.measures is not None else result.cases[0].message
        points.append(TimelinePoint(path.name, step, result.measures, error=failure, passed=result.passed))
    return TimelineCheck(results, Timeline(tuple(points), axis=axis), _ordering(axis, order != sorted(order)))


def run_check_timeline(paths: list[Path], options: LoadOptions, config: CheckConfig, *,
                       json_path: Path | None = None, junit_path: Path | None = None,
                       report_path: Path | None = None, force: bool = False) -> TimelineCheck:
    """`lstmviz check` over several checkpoints: refuse unwritable outputs first, check, then write them."""
    for path in (json_path, junit_path, report_path):
        if path is not None:
            check_writable(path, force=force)
    checked = check_timeline(paths, options, config)
    write_outputs(checked.results, json_path=json_path, junit_path=junit_path, force=force,
                  extra={"timeline": checked.timeline.to_json()})
    if report_path is not None:
        references = {} if config.max_saturated is None else {
            "saturation": (config.max_saturated, f"--max-saturated {config.max_saturated:g}")}
        page = build_timeline_page(checked.timeline, title=f"lstmviz check: {len(paths)} checkpoints",
                                   ordering=checked.ordering, references=references)
        write_atomic(report_path, render_html(page, workers=1), force=force)
    return checked
