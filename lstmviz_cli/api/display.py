"""Showing a page outside the command line: inline in a notebook cell, or in the default browser.

In a notebook the page goes into an `<iframe srcdoc>`: the report keeps its own document, so its
styles and its script cannot reach the notebook's (and the notebook's cannot restyle it), and its
Content-Security-Policy (`render.html`: nothing but its own hashed script, its inline styles and
`data:` images) holds inside the frame as it does in a browser. No `sandbox` attribute: the page's
links are to its own sections, and its one script is ours, pinned by its hash.
"""

from __future__ import annotations

import hashlib
import html
import tempfile
import webbrowser
from pathlib import Path

DEFAULT_HEIGHT = 800  # pixels of a notebook cell; the report scrolls inside the frame


def iframe_html(page: str, *, title: str, height: int = DEFAULT_HEIGHT) -> str:
    """The page as one isolated `<iframe srcdoc>` element (its HTML escaped into the attribute)."""
    return (
        f'<iframe class="lstmviz-report" title="{html.escape(title, quote=True)}" '
        f'style="width: 100%; height: {int(height)}px; border: 1px solid #d0d4da; border-radius: 4px;" '
        f'srcdoc="{html.escape(page, quote=True)}"></iframe>'
    )


def temporary_page(page: str, name: str) -> Path:
    """Write a page that was not saved to a file of its own in the temporary folder (named by its content)."""
    digest = hashlib.sha256(page.encode("utf-8")).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / "lstmviz"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{digest}.html"
    if not path.exists():
        path.write_text(page, encoding="utf-8")
    return path


def open_in_browser(path: Path) -> bool:
    """Open a written page in the default browser (`webbrowser`); False when no browser could be started."""
    return bool(webbrowser.open(Path(path).resolve().as_uri()))
