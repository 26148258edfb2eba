"""Figures as deferred jobs, rendered together and (where the OS can fork) in parallel.

A report has 10–30 matplotlib figures, and turning them into SVG is most of its run time
(benchmarks/RESULTS.md). Sections therefore describe a figure as a `FigureJob` (a pure plotting
function and its arguments) instead of drawing it; `render_jobs` then builds and serialises all of
them at once. The jobs are pure functions of their arguments, so the result is byte-identical in
one process or several (tested).

Workers are forked *after* the jobs are collected and read them from this module's memory, so
nothing is pickled on the way in (only the SVG text comes back). They only run NumPy and
matplotlib; a forked child must not run torch's thread pools, and these never do. Where fork is
not used (anything but Linux) or a pool cannot start, the jobs run in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from lstmviz_cli.render.mpl import to_svg

MAX_WORKERS = 4  # more processes than this buy nothing for ~25 figures and cost memory


@dataclass(frozen=True)
class FigureJob:
    """`build(*args, **kwargs)` returns a matplotlib Figure (or None: no figure, empty string)."""

    build: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __html__(self) -> str:
        raise TypeError("a FigureJob reached a template: pass the context through render.jobs.resolve first")

    def figure(self) -> Any:
        return self.build(*self.args, **self.kwargs)

    def svg(self) -> str:
        fig = self.figure()
        return "" if fig is None else to_svg(fig)


def job(build: Callable[..., Any], *args: Any, **kwargs: Any) -> FigureJob:
    """Shorthand: `job(plot_weights, layer)`."""
    return FigureJob(build, args, kwargs)


def default_workers() -> int:
    """CPUs this process may use, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def can_fork() -> bool:
    """Linux only: macOS offers fork, but system libraries there can crash in a forked child."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


_PENDING: Sequence[FigureJob] = ()  # the jobs a forked worker reads (set only while a pool runs)


def _render_pending(index: int) -> str:
    return _PENDING[index].svg()


def render_jobs(jobs: Sequence[FigureJob], workers: int = 1) -> list[str]:
    """SVG of every job, in order. `workers` > 1 renders in that many forked processes."""
    workers = min(workers, len(jobs))
    if workers <= 1 or not can_fork():
        return [j.svg() for j in jobs]

    global _PENDING
    _PENDING = jobs
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_render_pending, range(len(jobs))))
    except (BrokenProcessPool, OSError):
        # No processes here (a sandbox, a process limit) or a worker died: do it ourselves.
        return [j.svg() for j in jobs]
    finally:
        _PENDING = ()


def _jobs_in(value: Any) -> list[FigureJob]:
    """Every FigureJob in a template context (dicts, lists, tuples), depth first."""
    if isinstance(value, FigureJob):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [found for item in value for found in _jobs_in(item)]
    return []


def _filled(value: Any, svg: dict[int, Any]) -> Any:
    if isinstance(value, FigureJob):
        return svg[id(value)]
    if isinstance(value, dict):
        return {key: _filled(item, svg) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, svg) for item in value]
    if isinstance(value, tuple):
        return tuple(_filled(item, svg) for item in value)
    return value


def resolve(context: Any, workers: int = 1) -> Any:
    """A copy of a template context with every FigureJob replaced by its SVG (as safe Markup).

    All jobs render in one `render_jobs` call, so one pool serves the whole page.
    """
    jobs = _jobs_in(context)
    svg = {id(j): Markup(text) for j, text in zip(jobs, render_jobs(jobs, workers), strict=True)}
    return _filled(context, svg)
