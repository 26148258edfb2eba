"""HTML through Jinja2: the templates folder, the environments (autoescape on for every name), the index page.

Two environments remain until the page model renders every page through one: the report's
(`environment`, with the `visible` filter) and the one of the batch index and the diff page
(`template_environment`).
"""

from __future__ import annotations

import functools
import html
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from lstmviz_cli.output import GENERATOR_MARKER
from lstmviz_cli.render.highlight import visible


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


def render_index(rows: Sequence[ReportSummary], *, title: str) -> str:
    """index.html: one row per checkpoint, linking its report (autoescaped template, no outside links)."""
    env = template_environment()
    template = env.get_template("index.html.j2")
    return template.render(title=title, rows=list(rows), generator=GENERATOR_MARKER,
                           failed=sum(1 for r in rows if r.error))


def template_environment() -> Any:
    """The Jinja2 environment for this module's pages: autoescape on for every name, strict undefined."""
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


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    """The report's Jinja2 environment: autoescape on for every name (`.j2` included), strict undefined."""
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["visible"] = visible
    return env


def templates_dir() -> Path:
    """Templates inside the installed wheel (lstmviz_cli/templates), else the repository's templates/."""
    packaged = importlib.resources.files("lstmviz_cli") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "templates"
