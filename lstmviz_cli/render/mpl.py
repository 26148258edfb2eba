"""Matplotlib without pyplot state, figures laid out for the size they are shown at, and byte-stable SVG.

Every plot function takes a `Canvas`: the width it is drawn at and its base font size. The report
draws on `SCREEN`; `lstmviz figures` draws on the column of the paper (`render.paper`), so a figure
is laid out once, for its real size — never drawn for a screen and shrunk. `finish` lays a figure
out and thins tick labels that would overlap, and every writer (`to_svg`, the paper export) calls it.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg", force=False)

import base64  # noqa: E402

from matplotlib.axis import Axis, XAxis  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402


@dataclass(frozen=True)
class Canvas:
    """Where a figure is drawn: `width` in inches, `font` the base size in points.

    Titles and axis labels use `font`, tick labels and legends `small`. On screen an SVG inch is 96
    CSS pixels, so `SCREEN`'s 8.5 pt tick labels are 11 px at 100 % zoom.
    """

    width: float
    font: float
    max_height: float | None = None  # a paper's page: tall figures shrink their panels to fit
    fill: bool = False  # every figure exactly `width` wide (a paper's column); else small ones stay small

    @property
    def small(self) -> float:
        """Tick labels, legends, colour-bar labels."""
        return max(self.font - 1.0, 5.0)

    @property
    def line(self) -> float:
        """One line of base-size text, in inches (with the usual 1.2 leading)."""
        return self.font * 1.2 / 72

    @property
    def small_line(self) -> float:
        return self.small * 1.2 / 72

    def text_width(self, chars: int, *, small: bool = True) -> float:
        """About how wide `chars` characters of DejaVu Sans are, in inches (0.62 em a character)."""
        return chars * 0.62 * (self.small if small else self.font) / 72

    @property
    def narrow(self) -> bool:
        """A single column of a paper (or narrower): panels stack instead of standing side by side."""
        return self.width < 5.0


    def span(self, natural: float) -> float:
        """The width of a figure that needs about `natural` inches: the whole width on paper."""
        return self.width if self.fill else min(self.width, natural)


SCREEN = Canvas(width=10.0, font=9.5)


def new_figure(width: float, height: float, *, fixed: bool = False) -> Figure:
    """A Figure not registered with pyplot (no global state, garbage-collected normally).

    `fixed=True`: no layout engine at all, for figures that place their axes themselves (in inches,
    from their Canvas). Otherwise constrained layout, which `finish` runs once.
    """
    if fixed:
        return Figure(figsize=(width, height), layout=None)
    return Figure(figsize=(width, height), layout=ConstrainedLayoutEngine(w_pad=2 / 72, h_pad=2 / 72, wspace=0.03,
                                                                          hspace=0.03))


def margins(fig: Figure, *, left: float, right: float, top: float, bottom: float,
            wspace: float = 0.0, hspace: float = 0.0) -> None:
    """Fixed subplot margins in inches and gaps as fractions (for `new_figure(..., fixed=True)`)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                        wspace=wspace, hspace=hspace)


def finish(fig: Figure) -> None:
    """Lay the figure out once (its engine, if any, then none: savefig would lay it out again) and
    thin every axis' tick labels so that no two overlap. Idempotent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "constrained_layout not applied", missing glyphs
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.execute(fig)
            fig.set_layout_engine(None)
        declutter(fig)


TICK_GAP = 2.0  # points between two neighbouring tick labels


def declutter(fig: Figure) -> None:
    """Keep every k-th tick label of an axis, with the smallest k for which none overlap.

    A uniform stride keeps the axis readable (every 5th step, every 4th unit). Only axes whose
    labels collide are touched; their ticks become fixed at the kept positions.
    """
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    renderer: RendererAgg = canvas.get_renderer()  # type: ignore[no-untyped-call]
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for minor in (False, True):
                _thin(axis, renderer, minor=minor)


def _boxes(axis: Axis, renderer: RendererAgg, minor: bool) -> tuple[list[float], list[str], list[Bbox]]:
    ticks = axis.get_minor_ticks() if minor else axis.get_major_ticks()
    locs = list(axis.get_minorticklocs() if minor else axis.get_majorticklocs())
    low, high = sorted(axis.get_view_interval())
    positions, labels, boxes = [], [], []
    for tick, loc in zip(ticks, locs, strict=False):
        label = tick.label1 if tick.label1.get_visible() else tick.label2
        text = label.get_text()
        if not label.get_visible() or not text or not low - 1e-9 <= loc <= high + 1e-9:
            continue
        box = label.get_window_extent(renderer)
        if not all(math.isfinite(v) for v in (box.x0, box.x1, box.y0, box.y1)):
            continue  # a label matplotlib will not place (an empty colour bar's ticks)
        positions.append(float(loc))
        labels.append(text)
        boxes.append(box)
    return positions, labels, boxes


def _collide(boxes: list[Bbox], stride: int, horizontal: bool, gap: float) -> bool:
    kept = boxes[::stride]
    for a, b in zip(kept, kept[1:], strict=False):
        if horizontal:
            if min(a.x1, b.x1) + gap > max(a.x0, b.x0) and a.y1 > b.y0 and b.y1 > a.y0:
                return True
        # Stacked labels may share the blank above and below their digits (a fifth of a line each).
        elif min(a.y1, b.y1) - 0.2 * min(a.height, b.height) > max(a.y0, b.y0) and a.x1 > b.x0 and b.x1 > a.x0:
            return True
    return False


def _thin(axis: Axis, renderer: RendererAgg, *, minor: bool) -> None:
    positions, labels, boxes = _boxes(axis, renderer, minor)
    if len(boxes) < 2:
        return
    horizontal = isinstance(axis, XAxis)
    dpi = axis.figure.dpi if axis.figure is not None else 72.0
    gap = TICK_GAP * dpi / 72
    order = sorted(range(len(boxes)), key=lambda k: (boxes[k].x0 if horizontal else boxes[k].y0))
    boxes = [boxes[k] for k in order]
    positions = [positions[k] for k in order]
    labels = [labels[k] for k in order]
    stride = 1
    while stride < len(boxes) and _collide(boxes, stride, horizontal, gap):
        stride += 1
    if stride == 1:
        return
    keep = list(range(0, len(boxes), stride))
    axis.set_ticks([positions[k] for k in keep], [labels[k] for k in keep], minor=minor)


def to_svg(fig: Figure) -> str:
    """Render `fig` to an SVG string that is identical for identical data.

    Fixed hash salt (element ids), no date metadata; the XML prolog and DOCTYPE are stripped so
    the SVG can be inlined in HTML. Text stays text (`svg.fonttype: none`, XML-escaped by
    matplotlib): 20-25 % smaller pages than glyph outlines, and labels can be selected and searched.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "lstmviz", "svg.fonttype": "none"}), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # glyphs missing from DejaVu (emoji) draw as boxes
        finish(fig)
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def to_png_data_uri(fig: Figure, dpi: int = 110) -> str:
    """PNG as a data: URI, for figures whose SVG would be huge (dense heatmaps are rasterised)."""
    buffer = io.BytesIO()
    finish(fig)
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
