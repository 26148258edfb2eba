"""`--format dir`: any Page as a folder of files, for artifact servers with a strict Content-Security-Policy.

Jenkins serves archived files with `sandbox; default-src 'none'; img-src 'self'; style-src 'self';`,
which blocks inline styles, inline scripts and `data:` images: the single-file page's style and
figures would not show. The folder holds the same page with nothing inline:

    index.html          the page: its stylesheet and script by reference, each figure an <img>
    lstmviz.css         the page's stylesheet
    lstmviz.js          the page's script (it runs where the server allows scripts; the page reads without it)
    figures/<id>.svg    one file per figure, drawn by the same function as the single file's

The page opens under `default-src 'self'` (its own meta policy says `'none'` for everything but its
own files) with no console message. Its only inline `<script>` elements are JSON data blocks
(`type="application/json"`), which no policy executes. Byte-identical for the same page, like the
single file. `write_folder` replaces a folder only when it is empty or lstmviz wrote it (its
`index.html` carries the generator marker), never a folder of the user's other files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from markupsafe import Markup

from lstmviz_cli.errors import OutputError
from lstmviz_cli.output import GENERATOR_MARKER, is_lstmviz_output
from lstmviz_cli.page.model import Page
from lstmviz_cli.render.draw import figure_svg
from lstmviz_cli.render.html import clean_markup, fill_page, script_text, style_text
from lstmviz_cli.render.jobs import Done, Drawer, draw_figures

INDEX = "index.html"
STYLESHEET = "lstmviz.css"
SCRIPT = "lstmviz.js"
FIGURES = "figures"
# The page's own policy: nothing but its own files (served from the same folder), no inline code.
FOLDER_CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; base-uri 'none'; "
              "form-action 'none'")
_SVG_HEAD = f'<?xml version="1.0" encoding="utf-8" standalone="no"?>\n<!-- {GENERATOR_MARKER} -->\n'


def folder_files(page: Page, *, workers: int = 1, drawer: Drawer = figure_svg, done: Done | None = None) -> dict[str, str]:
    """Every file of the page's folder: relative path -> text (deterministic for identical pages)."""
    specs = page.figures()
    drawn = draw_figures(specs, workers, drawer=drawer, done=done)
    files: dict[str, str] = {}
    images: dict[str, Markup] = {}
    for spec, svg in zip(specs, drawn, strict=True):
        if not svg:
            images[spec.id] = Markup("")
            continue
        name = f"{FIGURES}/{spec.id}.svg"
        files[name] = _SVG_HEAD + clean_markup(svg).strip() + "\n"
        images[spec.id] = Markup('<img src="{}" alt="{}">').format(name, spec.description)
    files[INDEX] = fill_page(page, images, csp=FOLDER_CSP, stylesheet=STYLESHEET, script_src=SCRIPT)
    files[STYLESHEET] = f"/* {GENERATOR_MARKER} */\n" + style_text()
    files[SCRIPT] = f"// {GENERATOR_MARKER}\n" + script_text()
    return files


def check_folder_writable(path: Path) -> None:
    """Refuse early a folder we must not replace: a file, or a folder of files lstmviz did not write."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{str(path)!r} is a file; --format dir writes a folder: name one, e.g. "
                          f"{str(path.with_suffix(''))!r}")
    if path.is_dir() and any(path.iterdir()) and not is_lstmviz_output(path / INDEX):
        raise OutputError(f"folder {str(path)!r} holds files lstmviz did not write; choose an empty or new folder "
                          "for --format dir (it is replaced whole)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {str(path)!r}: directory {str(parent)!r} is not writable")


def write_folder(page: Page, path: Path, *, workers: int = 1, drawer: Drawer = figure_svg,
                 done: Done | None = None) -> int:
    """Write the page's folder at `path` and return its size in bytes.

    The folder is written beside `path` and then moved into place, so an interrupted run leaves the
    old folder (or none), never half of one. Raises OutputError for a folder lstmviz may not replace.
    """
    path = Path(path)
    check_folder_writable(path)
    files = folder_files(page, workers=workers, drawer=drawer, done=done)
    parent = path.parent if str(path.parent) else Path(".")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    old: Path | None = None
    try:
        for name, text in files.items():
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        for folder in (staging, staging / FIGURES):
            if folder.is_dir():
                os.chmod(folder, 0o755)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / path.name)
        os.replace(staging, path)
    except OSError as error:
        if old is not None and not path.exists():
            os.replace(old / path.name, path)  # put the previous folder back
        raise OutputError(f"cannot write {str(path)!r}: {error.strerror or error}") from error
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return sum(len(text.encode("utf-8")) for text in files.values())
