"""Typed contracts between the stages stay typed: no `Any` parameter, no `getattr(x, "field", default)`.

Read from the source with `ast`, so a parameter annotated `Any` (or `dict[str, Any]`, ...) or a
three-argument getattr that papers over a record's field fails here, before mypy is even run. The
whole package is scanned; getattr with a default on objects that are not the project's (torch
modules, the user's classes, TorchScript schemas) is listed in FOREIGN_GETATTR with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lstmviz_cli"


# Three-argument getattr calls allowed, on objects that are not the project's: (file, attribute) -> why.
# The attribute is the string given, or the source of the expression that computes it.
FOREIGN_GETATTR = {
    ("explain/control.py", "reset_parameters"): "any torch module may or may not define it",
    ("loading/findweights.py", "__dict__"): "an object of the user's class from a trusted pickle may have no instance dict",
    ("loading/safeload.py", "name"): "does the user's own module (--model-class) define the class the pickle names",
    ("tracing/cellrecord.py", "__name__"): "the callable torch passes to __torch_function__ (a builtin may have no name)",
    ("tracing/endtoend.py", "part"): "a TorchScript module's submodules, by path (ScriptModules have no get_submodule)",
    ("tracing/endtoend.py", "batch_first"): "a scripted recurrent module keeps only the attributes TorchScript compiled",
    ("tracing/forwardargs.py", "forward"): "the user's model's forward (a ScriptMethod when scripted)",
    ("tracing/forwardargs.py", "schema"): "a ScriptMethod's schema (an eager method has none)",
    ("tracing/forwardargs.py", "arguments"): "the arguments of a TorchScript FunctionSchema",
    ("tracing/kernels.py", "name + suffix"): "a torch recurrent module's weights by PyTorch's names (parametrized ones too)",
}


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _uses_any(annotation: ast.expr) -> bool:
    return any(isinstance(node, ast.Name) and node.id == "Any"
               or isinstance(node, ast.Attribute) and node.attr == "Any" for node in ast.walk(annotation))


def test_the_scan_covers_the_whole_package() -> None:
    scanned = {str(path.relative_to(PACKAGE)).split("/")[0] for path in _files()}
    stages = {"loading", "tracing", "analysis", "explain", "page", "render", "commands"}
    assert stages <= scanned and {"cli.py", "cli_options.py", "errors.py"} <= scanned and len(_files()) > 100


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
            if len(node.args) < 3:
                continue
            name = node.args[1].value if isinstance(node.args[1], ast.Constant) else ast.unparse(node.args[1])
            if (relative, name) not in FOREIGN_GETATTR:
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
        "    getattr(module, name + suffix, None)\n"
    )
    assert [line.split(" ", 1)[1] for line in _any_parameters(bad, "x.py")] == [
        "f(run: Any)", "f(view: dict[str, typing.Any])", "f(rest: Any)"]
    assert _getattr_defaults(bad, "x.py") == ["x.py:2 getattr(run, 'sample', None)",
                                              "x.py:4 getattr(module, 'reset_parameters', None)",
                                              "x.py:5 getattr(module, name + suffix, None)"]
    assert _getattr_defaults(bad, "explain/control.py") == ["explain/control.py:2 getattr(run, 'sample', None)",
                                                            "explain/control.py:5 getattr(module, name + suffix, None)"]
    assert _getattr_defaults(bad, "tracing/kernels.py") == ["tracing/kernels.py:2 getattr(run, 'sample', None)",
                                                            "tracing/kernels.py:4 getattr(module, 'reset_parameters', None)"]


def test_every_allowed_getattr_is_still_there() -> None:
    """An entry of FOREIGN_GETATTR whose call is gone would silently allow the next one of that name."""
    found = set()
    for path in _files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                    and len(node.args) >= 3:
                arg = node.args[1]
                found.add((str(path.relative_to(PACKAGE)), arg.value if isinstance(arg, ast.Constant) else ast.unparse(arg)))
    assert set(FOREIGN_GETATTR) <= found, set(FOREIGN_GETATTR) - found
