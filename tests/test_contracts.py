"""Typed contracts between the stages stay typed: no `Any` parameter, no `getattr(x, "field", default)`.

Read from the source with `ast`, so a parameter annotated `Any` (or `dict[str, Any]`, ...) or a
three-argument getattr that papers over a record's field fails here, before mypy is even run. The
folders scanned are listed in SCANNED.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lstmviz_cli"


# The folders scanned. mypy strict checks the whole package (`make typecheck`); this scan covers the
# stages whose records are fully typed, and grows to the whole package.
SCANNED = ("analysis", "explain", "commands", "cli.py", "cli_options.py")


def _typechecked() -> list[Path]:
    return [PACKAGE / name for name in SCANNED]

# Three-argument getattr calls allowed, on objects that are not the project's: (file, attribute, why).
FOREIGN_GETATTR = {
    ("explain/control.py", "reset_parameters"): "any torch module may or may not define it",
}


def _files() -> list[Path]:
    found: list[Path] = []
    for path in _typechecked():
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found


def _uses_any(annotation: ast.expr) -> bool:
    return any(isinstance(node, ast.Name) and node.id == "Any"
               or isinstance(node, ast.Attribute) and node.attr == "Any" for node in ast.walk(annotation))


def test_the_typed_folders_exist() -> None:
    assert all(path.exists() for path in _files()) and len(_files()) > 30


def _any_parameters(source: str, relative: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            found.extend(
                f"{relative}:{node.lineno} {getattr(node, 'name', 'lambda')}({arg.arg}: {ast.unparse(arg.annotation)})"
                for arg in every if arg is not None and arg.annotation is not None and _uses_any(arg.annotation)
            )
    return found


def _getattr_defaults(source: str, relative: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr":
            name = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else None
            if len(node.args) >= 3 and (relative, name) not in FOREIGN_GETATTR:
                found.append(f"{relative}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_parameter_is_annotated_any() -> None:
    wrong = [line for path in _files()
             for line in _any_parameters(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))]
    assert not wrong, "parameters typed Any (name the record, a Protocol, or object):\n" + "\n".join(wrong)


def test_no_getattr_with_a_default_on_the_projects_records() -> None:
    wrong = [line for path in _files()
             for line in _getattr_defaults(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))]
    assert not wrong, "getattr with a default hides a record's contract (read the field):\n" + "\n".join(wrong)


def test_the_scans_catch_what_they_forbid() -> None:
    """The scans above on a sample of what they must reject (a test that cannot fail is no test)."""
    bad = (
        "def f(run: Any, view: dict[str, typing.Any], ok: int, *rest: Any) -> None:\n"
        "    getattr(run, 'sample', None)\n"
        "    getattr(run, 'sample')\n"
        "    getattr(module, 'reset_parameters', None)\n"
    )
    assert [line.split(" ", 1)[1] for line in _any_parameters(bad, "x.py")] == [
        "f(run: Any)", "f(view: dict[str, typing.Any])", "f(rest: Any)"]
    assert _getattr_defaults(bad, "x.py") == ["x.py:2 getattr(run, 'sample', None)",
                                              "x.py:4 getattr(module, 'reset_parameters', None)"]
    assert _getattr_defaults(bad, "explain/control.py") == ["explain/control.py:2 getattr(run, 'sample', None)"]
