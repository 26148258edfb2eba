"""A page's figures drawn together and, where the OS can fork, in parallel.

A report has 10–30 figures and diagrams, and turning them into SVG is most of its run time
(benchmarks/RESULTS.md). The page lists them as specs (`page.model.FigureSpec`: data, no drawing);
`draw_figures` draws them all at once. Drawing is a pure function of a spec, so the result is
byte-identical in one process or several (tested).

Workers are forked *after* the specs exist and read them from this module's memory, so nothing is
pickled on the way in (only the SVG text comes back). They only run NumPy, matplotlib and `dot`; a
forked child must not run torch's thread pools, and these never do. Where fork is not used
(anything but Linux) or a pool cannot start, the figures are drawn in this process.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from lstmviz_cli.page.model import FigureSpec
from lstmviz_cli.render.draw import figure_svg

MAX_WORKERS = 4  # more processes than this buy nothing for ~25 figures and cost memory
Drawer = Callable[[FigureSpec], str]


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


_PENDING: Sequence[FigureSpec] = ()  # the specs a forked worker reads (set only while a pool runs)
_DRAWER: Drawer = figure_svg


def _draw_pending(index: int) -> str:
    return _DRAWER(_PENDING[index])


Done = Callable[[int, int], None]  # (figures drawn, figures in all): a progress bar's update


def draw_figures(specs: Sequence[FigureSpec], workers: int = 1, *, drawer: Drawer = figure_svg,
                 done: Done | None = None) -> list[str]:
    """SVG of every spec, in order. `workers` > 1 draws in that many forked processes.

    `drawer` draws one spec (default: `render.draw.figure_svg`); tests pass a stand-in that draws nothing.
    `done` is told after each figure how many are drawn (the command's progress on stderr).
    """
    report = done or (lambda _count, _total: None)
    total = len(specs)
    workers = min(workers, total)
    if workers <= 1 or not can_fork():
        return _in_process(specs, drawer, report)
    global _PENDING, _DRAWER
    _PENDING, _DRAWER = specs, drawer
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            drawn = []
            for svg in pool.map(_draw_pending, range(total)):
                drawn.append(svg)
                report(len(drawn), total)
            return drawn
    except (BrokenProcessPool, OSError):
        # No processes here (a sandbox, a process limit) or a worker died: do it ourselves.
        return _in_process(specs, drawer, report)
    finally:
        _PENDING, _DRAWER = (), figure_svg


def _in_process(specs: Sequence[FigureSpec], drawer: Drawer, report: Done) -> list[str]:
    drawn = []
    for spec in specs:
        drawn.append(drawer(spec))
        report(len(drawn), len(specs))
    return drawn
