"""The package's layout is its architecture: stage folders, data flowing one way, no import cycles.

Read from the source with `ast` (every import, at module or function level), so a new import that
points the wrong way fails here before it can hide behind a lazy import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lstmviz_cli"
STAGES = ("loading", "tracing", "analysis", "explain", "page", "render", "commands", "api")
# Shared by every stage, importing nothing but each other: the error hierarchy, atomic writes,
# warning capture, the recurrent families (gate order, names) and the glyphs of invisible characters.
SHARED = ("errors", "output", "_warncapture", "families", "glyphs")
# What each stage folder may import besides itself and SHARED. Data flows one way:
# loading -> tracing -> analysis/explain -> page -> render; commands wire them all; api is the Python
# interface over the commands' stages.
# The page says what is shown (figure specs hold a kind of data, not a plot function); render
# reads the page and maps each kind to the function that draws it, so the page never imports render.
ALLOWED = {
    "loading": set(),
    "tracing": {"loading"},
    "analysis": {"loading", "tracing"},
    "explain": {"loading", "tracing", "analysis"},
    "page": {"loading", "tracing", "analysis", "explain"},
    "render": {"loading", "tracing", "analysis", "explain", "page"},
    "commands": {"loading", "tracing", "analysis", "explain", "page", "render"},
    # The Python interface (report(), Report, Monitor) wires the stages as the commands do, through them.
    "api": {"loading", "tracing", "analysis", "explain", "page", "render", "commands"},
}
# Modules whose import must not start torch: the records later stages read, everything after
# tracing except explain/ (tensors leave tracing as NumPy arrays), and the CLI itself.
TORCH_FREE_PACKAGES = ("analysis", "page", "render")
TORCH_FREE_MODULES = (
    "lstmviz_cli", "lstmviz_cli.cli", "lstmviz_cli.cli_options", "lstmviz_cli.commands.options", "lstmviz_cli.loading.records",
    "lstmviz_cli.loading.sniff", "lstmviz_cli.tracing.records", "lstmviz_cli.tracing.verify",
    "lstmviz_cli.tracing.provenance",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every lstmviz_cli module `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lstmviz_cli"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("lstmviz_cli"))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the package uses absolute imports")
    return found - {"lstmviz_cli"}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else "top"


def test_every_module_lives_in_a_stage_folder_or_is_a_shared_top_level_module() -> None:
    top = {m.split(".")[1] for m in _modules() if m != "lstmviz_cli" and _stage(m) == "top"}
    assert top == {"cli", "cli_options", "__main__", *SHARED}


def test_stage_folders_import_only_earlier_stages() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        stage = _stage(module)
        for target in _imports(path, modules):
            to = _stage(target)
            if stage == "top":
                name = module.split(".")[1] if "." in module else "__init__"
                if name in SHARED and not (to == "top" and target.split(".")[1] in SHARED):
                    wrong.append(f"{module} -> {target}")
                continue
            if to == "top":
                if target.split(".")[1] not in SHARED:
                    wrong.append(f"{module} -> {target}")
            elif to != stage and to not in ALLOWED[stage]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the data flow:\n" + "\n".join(wrong)


def test_no_import_cycles_between_modules_or_stage_folders() -> None:
    modules = _modules()
    graph = {m: _imports(p, modules) & set(modules) for m, p in modules.items()}
    folders: dict[str, set[str]] = {}
    for module, targets in graph.items():
        folders.setdefault(_stage(module), set()).update(_stage(t) for t in targets)

    def cycle(edges: dict[str, set[str]]) -> list[str] | None:
        state: dict[str, int] = {}  # 1: on the path, 2: done

        def visit(node: str, path: list[str]) -> list[str] | None:
            state[node] = 1
            for nxt in sorted(edges.get(node, ())):
                if nxt == node:
                    continue
                if state.get(nxt) == 1:
                    return [*path, node, nxt]
                if nxt not in state and (found := visit(nxt, [*path, node])):
                    return found
            state[node] = 2
            return None

        for start in sorted(edges):
            if start not in state and (found := visit(start, [])):
                return found
        return None

    assert cycle(graph) is None, f"import cycle: {' -> '.join(cycle(graph) or [])}"
    stage_edges = {s: t - {"top"} for s, t in folders.items() if s != "top"}
    assert cycle(stage_edges) is None, f"stage folders import each other: {' -> '.join(cycle(stage_edges) or [])}"


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    """Every module, each named on its own, in one new interpreter (order problems need a cycle: above)."""
    names = [m for m in _modules() if not m.endswith("__main__")]
    script = (
        "import importlib\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as error:\n"
        "        failed.append(f'{name}: {type(error).__name__}: {error}')\n"
        "print('\\n'.join(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_records_analysis_page_and_render_import_without_torch() -> None:
    modules = [m for m in _modules() if _stage(m) in TORCH_FREE_PACKAGES] + list(TORCH_FREE_MODULES)
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
