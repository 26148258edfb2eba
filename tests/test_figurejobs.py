"""Drawing a page's figures: the same SVG in one process or several, errors surface, ids are the figure's own."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lstmviz_cli.analysis.records import FigureRef, MemoryProbe
from lstmviz_cli.page.figuredata import MemoryProbeData
from lstmviz_cli.page.model import FigureSpec
from lstmviz_cli.render import jobs as figurejobs
from lstmviz_cli.render.draw import figure_svg
from lstmviz_cli.render.jobs import draw_figures
from lstmviz_cli.render.mpl import new_figure, to_svg
from lstmviz_cli.render.svgids import scope_ids

PARENT = os.getpid()


def _spec(name: str, lengths: tuple[int, ...] = (1, 2, 4)) -> FigureSpec:
    probe = MemoryProbe(prefix=name, lengths=list(lengths), dependence=[1.0 / n for n in lengths])
    return FigureSpec(id=name, ref=FigureRef("memory-probe", name), data=MemoryProbeData(probe), description=name)


def _line(spec: FigureSpec) -> str:
    """A stand-in drawer: "nothing" draws no figure, "fails" raises, "dies" kills a worker."""
    if spec.id == "nothing":
        return ""
    if spec.id == "fails":
        raise ValueError("a bug in a plotting function")
    if spec.id == "dies" and os.getpid() != PARENT:
        os._exit(1)  # a worker killed from outside (out of memory) looks like this
    fig = new_figure(3, 2)
    fig.add_subplot().plot(np.sin(np.arange(30.0)) if spec.id == "sin" else [0.0, 1.0, 0.5])
    fig.axes[0].set_title(f"drawn in {'the parent' if os.getpid() == PARENT else 'a worker'}: {spec.id}")
    return to_svg(fig)


SPECS = [_spec("first"), _spec("nothing"), _spec("sin")]


def test_parallel_drawing_is_byte_identical_to_serial() -> None:
    serial = draw_figures(SPECS, workers=1, drawer=_line)
    assert serial[0].startswith("<svg") and "first" in serial[0]
    assert serial[1] == ""  # nothing to draw
    parallel = draw_figures(SPECS, workers=2, drawer=_line)
    assert [text.replace("a worker", "the parent") for text in parallel] == serial
    assert len(draw_figures(SPECS, workers=8, drawer=_line)) == 3  # more workers than figures is fine


def test_real_figures_are_identical_in_one_process_or_two() -> None:
    specs = [_spec("fig-a"), _spec("fig-b", (1, 2, 4, 8))]
    assert draw_figures(specs, workers=1) == draw_figures(specs, workers=2)


def test_without_fork_the_figures_are_drawn_here(monkeypatch: pytest.MonkeyPatch) -> None:
    import multiprocessing
    import sys

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert not figurejobs.can_fork()
    assert all("the parent" in svg for svg in draw_figures([SPECS[0], SPECS[2]], workers=2, drawer=_line))
    monkeypatch.undo()
    monkeypatch.setattr(sys, "platform", "darwin")  # fork exists there, but is not safe
    assert not figurejobs.can_fork()


def test_a_plotting_error_is_raised_not_swallowed() -> None:
    with pytest.raises(ValueError, match="a bug in a plotting function"):
        draw_figures([SPECS[0], _spec("fails")], workers=2, drawer=_line)


def test_a_dead_worker_falls_back_to_this_process() -> None:
    svg = draw_figures([_spec("dies"), SPECS[0]], workers=2, drawer=_line)
    assert "the parent: dies" in svg[0] and "first" in svg[1]
    assert figurejobs._PENDING == ()  # nothing left behind for a later fork


def test_default_workers_is_bounded() -> None:
    assert 1 <= figurejobs.default_workers() <= figurejobs.MAX_WORKERS


def test_svg_ids_are_the_figures_own() -> None:
    svg = ('<svg id="root"><defs><clipPath id="p1"><rect/></clipPath><path id="m2"/></defs>'
           '<g id="axes_1" clip-path="url(#p1)"><use xlink:href="#m2"/><a href="#m2"/></g>'
           '<text>id="not-an-attribute" url(#p1)</text></svg>')
    out = scope_ids(svg, "fig-x")
    assert 'id="fig-x_p1"' in out and 'id="fig-x_m2"' in out  # referenced: prefixed
    assert "root" not in out and "axes_1" not in out  # referenced by nothing: dropped
    assert 'clip-path="url(#fig-x_p1)"' in out and 'xlink:href="#fig-x_m2"' in out and 'href="#fig-x_m2"' in out
    drawn = figure_svg(_spec("fig-probe"))
    ids = [part.split('"')[0] for part in drawn.split(' id="')[1:]]
    assert ids and all(ident.startswith("fig-probe_") for ident in ids)
