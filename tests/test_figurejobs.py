"""Figure jobs: the same SVG in one process or several, errors surface, and no job reaches a template."""

from __future__ import annotations

import os

import jinja2
import numpy as np
import pytest

from lstmviz_cli.render import jobs as figurejobs
from lstmviz_cli.render.jobs import job, render_jobs, resolve


def _line(values: list[float], title: str):  # noqa: ANN202 - a matplotlib Figure
    from lstmviz_cli.render.mpl import new_figure

    fig = new_figure(3, 2)
    ax = fig.add_subplot()
    ax.plot(values)
    ax.set_title(title)
    return fig


def _nothing() -> None:
    return None


def _fails() -> None:
    raise ValueError("a bug in a plotting function")


def _dies_in_a_worker(parent: int, values: list[float]):  # noqa: ANN202
    if os.getpid() != parent:
        os._exit(1)  # a worker killed from outside (out of memory) looks like this
    return _line(values, "rendered by the parent")


JOBS = [job(_line, [0.0, 1.0, 0.5], "first"), job(_nothing), job(_line, list(np.sin(np.arange(30.0))), title="sin")]


def test_parallel_render_is_byte_identical_to_serial() -> None:
    serial = render_jobs(JOBS, workers=1)
    assert serial[0].startswith("<svg") and "first" in serial[0]
    assert serial[1] == ""  # a builder that returns None means "no figure"
    assert "sin" in serial[2]
    assert render_jobs(JOBS, workers=2) == serial
    assert render_jobs(JOBS, workers=8) == serial  # more workers than jobs is fine


def test_without_fork_the_jobs_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing
    import sys

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert not figurejobs.can_fork()
    assert render_jobs(JOBS, workers=2) == render_jobs(JOBS, workers=1)
    monkeypatch.undo()
    monkeypatch.setattr(sys, "platform", "darwin")  # fork exists there, but is not safe
    assert not figurejobs.can_fork()
    assert render_jobs(JOBS, workers=2) == render_jobs(JOBS, workers=1)


def test_a_plotting_error_is_raised_not_swallowed() -> None:
    with pytest.raises(ValueError, match="a bug in a plotting function"):
        render_jobs([JOBS[0], job(_fails)], workers=2)


def test_a_dead_worker_falls_back_to_this_process() -> None:
    svg = render_jobs([job(_dies_in_a_worker, os.getpid(), [1.0, 2.0]), JOBS[0]], workers=2)
    assert "rendered by the parent" in svg[0] and "first" in svg[1]
    assert figurejobs._PENDING == ()  # nothing left behind for a later fork


def test_resolve_replaces_jobs_everywhere_in_a_context() -> None:
    context = {"a": JOBS[0], "list": [{"svg": JOBS[2]}, "text"], "pair": ("x", JOBS[1]), "n": 3}
    done = resolve(context, workers=2)
    assert done["a"].startswith("<svg") and hasattr(done["a"], "__html__")  # Markup: not escaped again
    assert "sin" in done["list"][0]["svg"] and done["list"][1] == "text"
    assert done["pair"] == ("x", "") and done["n"] == 3
    assert context["a"] is JOBS[0]  # the input is not modified


def test_an_unresolved_job_cannot_reach_a_page() -> None:
    template = jinja2.Environment(autoescape=True).from_string("{{ figure }}")
    with pytest.raises(TypeError, match="render.jobs.resolve"):
        template.render(figure=JOBS[0])


def test_default_workers_is_bounded() -> None:
    assert 1 <= figurejobs.default_workers() <= figurejobs.MAX_WORKERS
