"""Call sites in the user's source: where an activation was called, and what the user named it.

Names come from the assignment on the call's own line (`forget_gate = torch.sigmoid(...)`), read with
`ast` from the file (via linecache, so notebooks and `python -c` modules work where their source is
registered). When no name can be read, the fallback is `sigmoid@cell.py:42` (plus `:col` when one
line holds several calls): it depends only on the source, so it is the same on every run.
"""

from __future__ import annotations

import ast
import linecache
import os
import re
import sys
from collections.abc import Collection
from dataclasses import dataclass
from types import CodeType, FrameType

import torch

_SKIP_DIRS = (os.path.dirname(torch.__file__) + os.sep,)
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the whole lstmviz_cli package


@dataclass(frozen=True)
class Site:
    """One activation call site: file, line, column span (None before Python 3.11) and function."""

    filename: str
    lineno: int
    col: int | None
    end_lineno: int | None
    end_col: int | None
    function: str
    kind: str  # "sigmoid" | "tanh"

    @property
    def where(self) -> str:
        return f"{os.path.basename(self.filename)}:{self.lineno}"


_positions_cache: dict[CodeType, list[tuple[int | None, int | None, int | None, int | None]]] = {}


def _positions(code: CodeType, lasti: int) -> tuple[int | None, int | None, int | None]:
    """(end_lineno, col, end_col) of the instruction being executed, where Python records them."""
    if not hasattr(code, "co_positions"):
        return None, None, None
    table = _positions_cache.get(code)
    if table is None:
        table = _positions_cache[code] = list(code.co_positions())
    index = lasti // 2
    if 0 <= index < len(table):
        _, end_lineno, col, end_col = table[index]
        return end_lineno, col, end_col
    return None, None, None


def user_site(kind: str) -> Site | None:
    """The first frame outside torch and lstmviz: where the user's code asked for the activation."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_SKIP_DIRS) or filename.startswith(_HERE)):
            end_lineno, col, end_col = _positions(frame.f_code, frame.f_lasti)
            return Site(filename, frame.f_lineno, col, end_lineno, end_col, frame.f_code.co_name, kind)
        frame = frame.f_back
    return None


# -- names from the source --------------------------------------------------------------------------

_tree_cache: dict[str, ast.Module | None] = {}


def _tree(filename: str) -> ast.Module | None:
    if filename not in _tree_cache:
        source = "".join(linecache.getlines(filename))
        try:
            _tree_cache[filename] = ast.parse(source) if source else None
        except (SyntaxError, ValueError):
            _tree_cache[filename] = None
    return _tree_cache[filename]


def _target_name(target: ast.expr) -> str | None:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Subscript):
        return _target_name(target.value)
    return None


def _contains(node: ast.AST, call: ast.Call) -> bool:
    return any(child is call for child in ast.walk(node))


def _find_call(tree: ast.Module, site: Site) -> tuple[ast.Call | None, ast.stmt | None]:
    """The Call node at the site, and the innermost statement holding it."""
    best: tuple[ast.Call | None, ast.stmt | None] = (None, None)
    line_calls: list[tuple[ast.Call, ast.stmt]] = []
    for stmt in ast.walk(tree):
        if not isinstance(stmt, ast.stmt) or isinstance(stmt, (ast.FunctionDef, ast.ClassDef, ast.For,
                                                                 ast.While, ast.If, ast.With, ast.Try,
                                                                 ast.AsyncFunctionDef, ast.AsyncFor,
                                                                 ast.AsyncWith)):
            continue
        if not (stmt.lineno <= site.lineno <= (stmt.end_lineno or stmt.lineno)):
            continue
        for node in ast.walk(stmt):
            if isinstance(node, ast.Call) and node.lineno == site.lineno:
                if site.col is not None and (node.col_offset, node.end_col_offset) == (site.col, site.end_col):
                    return node, stmt
                line_calls.append((node, stmt))
    activation = [(c, s) for c, s in line_calls if _call_word(c) in _ACTIVATION_WORDS]
    if len(activation) == 1:  # no column information: one activation call on the line is unambiguous
        return activation[0]
    return best


_ACTIVATION_WORDS = {"sigmoid", "sigmoid_", "tanh", "tanh_", "expit"}


def _call_word(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def source_name(site: Site) -> str | None:
    """The variable the user assigns this call's result to, e.g. `forget_gate`; None if none."""
    tree = _tree(site.filename)
    if tree is None:
        return None
    call, stmt = _find_call(tree, site)
    if call is None or stmt is None:
        return None
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target, value = stmt.targets[0], stmt.value
        if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)):
            for sub_target, sub_value in zip(target.elts, value.elts, strict=False):
                if _contains(sub_value, call):
                    return _own_target(sub_target, sub_value)
            return None
        return _own_target(target, value)
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and stmt.value is not None:
        return _own_target(stmt.target, stmt.value)
    return None


def _own_target(target: ast.expr, value: ast.expr) -> str | None:
    """The target's name, unless several activations share it (`c = sig(a)*c + sig(b)*tanh(d)`)."""
    calls = [n for n in ast.walk(value) if isinstance(n, ast.Call) and _call_word(n) in _ACTIVATION_WORDS]
    return _target_name(target) if len(calls) <= 1 else None


def argument_name(site: Site) -> str | None:
    """The source text of the call's argument when it is a plain name (`c_next` in tanh(c_next))."""
    tree = _tree(site.filename)
    if tree is None:
        return None
    call, _ = _find_call(tree, site)
    if call is None:
        return None
    arg: ast.expr | None = call.args[0] if call.args else None
    if arg is None and isinstance(call.func, ast.Attribute):
        arg = call.func.value  # c.tanh()
    if isinstance(arg, (ast.Name, ast.Attribute)):
        return _target_name(arg)
    return None


def fallback_name(site: Site, *, with_col: bool) -> str:
    """`sigmoid@cell.py:42`, or `sigmoid@cell.py:42:17` when the line holds several calls."""
    name = f"{site.kind}@{site.where}"
    return f"{name}:{site.col}" if with_col and site.col is not None else name


# -- what a name says about the gate -----------------------------------------------------------------

_HINTS: list[tuple[str, re.Pattern[str]]] = [
    ("f", re.compile(r"forget|^f(_?(gate|t|g))?$")),
    ("i", re.compile(r"input|^in(_?gate)?$|^i(_?(gate|t|g))?$")),
    ("o", re.compile(r"output|^out(_?gate)?$|^o(_?(gate|t|g))?$")),
    ("g", re.compile(r"cand|tilde|cell_?gate|^g(_?t)?$|^c_?(hat|bar|in)(_?t)?$")),
    ("z", re.compile(r"update|^z(_?(gate|t))?$|^u(_?(gate|t))?$")),
    ("r", re.compile(r"reset|^r(_?(gate|t))?$")),
    ("n", re.compile(r"^new|^n(_?(gate|t))?$|cand|tilde|^h_?(hat|bar)")),
]


def name_hint(name: str | None, allowed: Collection[str]) -> str | None:
    """The series among `allowed` (a family's gates: `families.LSTM.gates`) a user's name points to,
    None when unclear.

    "forget_gate" -> "f"; "h_tilde" -> "n" for a GRU (the LSTM reading, "g", is not allowed there).
    """
    if not name or "@" in name:
        return None
    lowered = name.lower()
    found = {series for series, pattern in _HINTS if series in allowed and pattern.search(lowered)}
    return found.pop() if len(found) == 1 else None
