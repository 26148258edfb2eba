"""Matplotlib without pyplot state, and byte-stable SVG output."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib.figure import Figure  # noqa: E402


def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A Figure not registered with pyplot (no global state, garbage-collected normally)."""
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def to_svg(fig: Figure) -> str:
    """Render `fig` to an SVG string that is identical for identical data.

    Fixed hash salt (element ids), no date metadata; the XML prolog and DOCTYPE are stripped so
    the SVG can be inlined in HTML. Text stays text (`svg.fonttype: none`, XML-escaped by
    matplotlib): 20-25 % smaller pages than glyph outlines, and labels can be selected and searched.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "lstmviz", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text


def to_png_data_uri(fig: Figure, dpi: int = 110) -> str:
    """PNG as a data: URI, for figures whose SVG would be huge (dense heatmaps are rasterised)."""
    import base64

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
