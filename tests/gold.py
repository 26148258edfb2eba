"""Golden files: compare text with a stored file under tests/gold/, or rewrite it with LSTMVIZ_UPDATE_GOLD=1.

Volatile parts are scrubbed before comparing (`scrub`): the package version, matplotlib's and
Graphviz's drawing. A failing comparison shows the first lines that differ.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

GOLD = Path(__file__).resolve().parent / "gold"
UPDATE = os.environ.get("LSTMVIZ_UPDATE_GOLD") == "1"


def scrub(text: str) -> str:
    """Version strings out of a page (the gold files must not change at every release)."""
    from lstmviz_cli import __version__

    return re.sub(re.escape(__version__) + r"\b", "VERSION", text)


def check_gold(name: str, text: str) -> None:
    """`text` equals tests/gold/<name>; with LSTMVIZ_UPDATE_GOLD=1 the file is written instead."""
    path = GOLD / name
    if UPDATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE:
            raise AssertionError(f"{path} did not exist and was written: check it, then rerun")
        return
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), str(path), "now"))[:60])
        raise AssertionError(f"{name} differs from its golden file (LSTMVIZ_UPDATE_GOLD=1 rewrites it):\n{diff}")


def check_gold_json(name: str, data: Any) -> None:
    check_gold(name, json.dumps(data, indent=1, ensure_ascii=False, sort_keys=False) + "\n")
