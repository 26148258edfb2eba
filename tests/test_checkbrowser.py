"""`lstmviz check`'s pages in a real browser: a failing check's page shows its verdict and failed rows, and the
`--format dir` folder opens under a strict Content-Security-Policy with no console message."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_browser import console_lines, run_chromium
from test_checkpage import checked
from test_page import stub_svg

from lstmviz_cli.analysis.checks import CheckConfig
from lstmviz_cli.render.folder import FOLDER_CSP, INDEX, write_folder
from lstmviz_cli.render.html import render_html

pytestmark = pytest.mark.browser


class _Cells(HTMLParser):
    """The text of the banner and of each row of the checks table, as the browser's DOM holds them."""

    def __init__(self) -> None:
        super().__init__()
        self.banner: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self._in_banner = 0
        self._row: list[str] | None = None
        self._status = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div" and "banner" in classes:
            self._in_banner = 1
        elif self._in_banner and tag == "div":
            self._in_banner += 1
        if tag == "tr" and any(c.startswith("check-") for c in classes):
            self._status = next(c for c in classes if c.startswith("check-"))
            self._row = []
        if tag == "td" and self._row is not None:
            self._row.append("")
        if tag == "br" and self._row:
            self._row[-1] += " "

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._in_banner:
            self._in_banner -= 1
        if tag == "tr" and self._row is not None:
            self.rows.setdefault(self._status, []).append([" ".join(cell.split()) for cell in self._row])
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._in_banner:
            self.banner.append(data)
        if self._row is not None and self._row:
            self._row[-1] += data


def test_failing_check_page_shows_its_banner_and_failed_rows(tmp_path: Path) -> None:
    page, _ = checked(CheckConfig(max_verify_error=1e-9, max_saturated=0.5))
    path = tmp_path / "check.html"
    path.write_text(render_html(page, drawer=stub_svg), encoding="utf-8")
    result = run_chromium(path, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    cells = _Cells()
    cells.feed(result.stdout)
    banner = " ".join("".join(cells.banner).split())
    assert banner.startswith("Check failed: 2 of 5 checks failed pinned.pt · thresholds: max-saturated 0.5")
    failed = cells.rows["check-fail"]
    assert [row[1].split(" ")[0:3] for row in failed] == [["verification", "error", "gates"],
                                                         ["saturation", "lstm/l0/fwd", "f"]]
    assert [row[2:4] for row in failed] == [["3e-07", "≤ 1e-09"], ["1", "≤ 0.5"]]
    assert [row[-1] for row in failed] == ["verification", "see figure"]
    assert len(cells.rows["check-pass"]) == 3  # folded under "3 checks passed"
    assert '<summary>3 checks passed</summary>' in result.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The check page as a --format dir folder behind a local HTTP server that sends a strict CSP header."""
    page, _ = checked(CheckConfig(max_saturated=0.5))
    folder = tmp_path / "report"
    write_folder(page, folder, workers=2)  # real figures: matplotlib and Graphviz SVG files
    requests: list[tuple[str, int]] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def end_headers(self) -> None:
            self.send_header("Content-Security-Policy", "default-src 'self'")
            super().end_headers()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            requests.append((self.path, int(code)))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{INDEX}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_dir_format_opens_under_a_strict_csp(served: tuple[str, list[tuple[str, int]]], tmp_path: Path) -> None:
    url, requests = served
    folder = tmp_path / "report"
    index = (folder / INDEX).read_text(encoding="utf-8")
    # Nothing inline: no <style>, no style attribute, no data: URI, no script but by reference or JSON data.
    assert "<style" not in index and not re.search(r"\sstyle=", index) and "data:" not in index
    assert all('src="lstmviz.js"' in tag or 'type="application/json"' in tag for tag in re.findall(r"<script[^>]*>", index))
    assert f'content="{FOLDER_CSP}"'.replace("'", "&#39;") in index
    figures = sorted(path.name for path in (folder / "figures").iterdir())
    assert figures and all(f'src="figures/{name}"' in index for name in figures)

    dom_run = _chromium_url(url, tmp_path / "profile2")
    assert console_lines(dom_run.stderr) == [], "console messages (CSP violations, script errors)"
    assert re.search(r'<html[^>]*data-lstmviz="ready"', dom_run.stdout)  # lstmviz.js ran, from its file
    assert 'class="banner banner-fail"' in dom_run.stdout
    fetched = dict(requests)
    assert fetched.get("/lstmviz.css") == 200 and fetched.get("/lstmviz.js") == 200
    assert {f"/figures/{name}" for name in figures} <= set(fetched), "every figure file was loaded"
    assert all(code == 200 for path, code in fetched.items() if path != "/favicon.ico"), requests


def _chromium_url(url: str, profile: Path):  # noqa: ANN202 - subprocess.CompletedProcess[str]
    import subprocess

    from test_browser import CHROMIUM

    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", "--dump-dom", "--virtual-time-budget=5000", url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_dir_format_opens_from_a_local_folder(tmp_path: Path) -> None:
    """Opened from disk (file://), its own meta policy allows its files: the script runs, nothing is logged."""
    page, _ = checked(CheckConfig(max_saturated=None))
    folder = tmp_path / "report"
    write_folder(page, folder, drawer=stub_svg)
    result = run_chromium(folder / INDEX, tmp_path / "profile", "--dump-dom")
    assert console_lines(result.stderr) == []
    assert re.search(r'<html[^>]*data-lstmviz="ready"', result.stdout)
    assert 'class="banner banner-pass"' in result.stdout
