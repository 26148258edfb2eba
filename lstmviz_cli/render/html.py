"""Any `Page` as one self-contained HTML file, through one Jinja2 environment.

The report, the `check --report` page, the diff page and the batch index are all Pages
(`page.model`) rendered by `render_html`: one template (`page.html.j2`) and one macro per kind of
block (`_blocks.html.j2`). Autoescape is on for every name (`.j2` included) and undefined names are
errors. Only two things are marked safe: the SVG of the page's figures (matplotlib and Graphviz
escape the text they are given) and the page's own script. The page's figures are drawn together
(`render.jobs`), each with its SVG ids scoped to the figure (`render.svgids`).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from lstmviz_cli import __version__
from lstmviz_cli.output import GENERATOR_MARKER, compact_json
from lstmviz_cli.page.model import Page, UnitExplorer
from lstmviz_cli.render.draw import figure_svg
from lstmviz_cli.render.highlight import LEVELS, level_colours, token_class
from lstmviz_cli.render.jobs import Done, Drawer, draw_figures
from lstmviz_cli.render.palette import GATE_COLORS


def templates_dir() -> Path:
    """Templates inside the installed wheel (lstmviz_cli/templates), else the repository's templates/."""
    packaged = importlib.resources.files("lstmviz_cli") / "templates"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "templates"


@functools.lru_cache(maxsize=1)
def environment() -> Environment:
    """The one Jinja2 environment: autoescape on for every name (`.j2` included), strict undefined."""
    env = Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=True,  # select_autoescape() would skip *.j2 names
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["token_class"] = token_class
    env.globals["explorer_payload"] = explorer_payload
    return env


def explorer_payload(block: UnitExplorer) -> str:
    """The unit explorer's values for the page's script: per series its label and (steps, units)
    float32 values, base64, row-major; colours follow `render.highlight.token_class`."""
    return compact_json({
        "start": block.start, "levels": LEVELS,
        "series": [{"label": s.label, "series": s.series, "steps": int(s.values.shape[0]), "units": int(s.values.shape[1]),
                    "f4": base64.b64encode(np.ascontiguousarray(s.values, dtype="<f4").tobytes()).decode("ascii")}
                   for s in block.series],
    })


def _script() -> tuple[Markup, str]:
    """The page's one inline script and its CSP hash (so no other script can run)."""
    text = environment().get_template("_script.js.j2").render()
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def render_html(page: Page, *, workers: int = 1, drawer: Drawer = figure_svg, done: Done | None = None) -> str:
    """The page as one self-contained HTML string (deterministic for identical pages, whatever `workers`).

    Its figures are drawn in `workers` processes (`render.jobs`); `drawer` draws one (tests pass a
    stand-in that draws nothing); `done(drawn, total)` hears of each figure drawn (a progress bar).
    """
    specs = page.figures()
    svg = {spec.id: Markup(text) for spec, text in zip(specs, draw_figures(specs, workers, drawer=drawer, done=done),
                                                        strict=True)}
    script, script_hash = _script()
    return fill_page(page, svg, csp=(
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src {script_hash}; base-uri 'none'; form-action 'none'"
    ), script=script)


def style_text() -> str:
    """The page's stylesheet (inline in one file; `lstmviz.css` of a folder)."""
    return environment().get_template("_style.css.j2").render(gate_colors=GATE_COLORS, token_levels=level_colours())


def script_text() -> str:
    """The page's script (inline in one file, allowed by its hash; `lstmviz.js` of a folder)."""
    return str(_script()[0])


def fill_page(page: Page, figures: Mapping[str, Markup], *, csp: str, script: Markup = Markup(""),
              stylesheet: str = "", script_src: str = "") -> str:
    """The page's HTML with its figures' markup (`figures` by figure id) filled in.

    One file: the stylesheet and `script` inline. A folder (`render.folder`): `stylesheet` and
    `script_src` name the files beside it, and nothing is inline.
    """
    html = environment().get_template("page.html.j2").render(
        page=page,
        svg=figures,
        script=script,
        stylesheet=stylesheet,
        script_src=script_src,
        csp=csp,
        generator=f"{GENERATOR_MARKER} lstmviz {__version__}",
        version=__version__,
        gate_colors=GATE_COLORS,
        token_levels=level_colours(),
        picker=[{"id": ident, "label": label} for ident, label in page.pickers()],
    )
    return clean_markup(html)


def clean_markup(text: str) -> str:
    """Matplotlib's RDF <metadata> blocks (they only link vocabularies) removed; bidi overrides and C0
    controls shown as escapes, never obeyed: the last line of defence for every block and figure."""
    text = _METADATA.sub("", text)
    return _INVISIBLE_RE.sub(lambda match: _INVISIBLE[ord(match.group())], text)


_METADATA = re.compile(r"\s*<metadata>\s*<rdf:RDF.*?</metadata>", re.S)
_INVISIBLE = {
    code: f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"
    for code in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
}
# A regex finds the rare invisible character 15x faster than str.translate walks 3 MB of page.
_INVISIBLE_RE = re.compile("[" + "".join(re.escape(chr(code)) for code in _INVISIBLE) + "]")
