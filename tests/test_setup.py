"""Setup is idempotent, and the wheel ships the templates an installed copy needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_second_setup_installs_nothing() -> None:
    if not (ROOT / ".venv" / ".lstmviz-setup").exists():
        pytest.skip("not running inside the Makefile's .venv")
    # --question: exit 0 when the install stamp is up to date, i.e. `make setup` would not pip install.
    stamp = subprocess.run(["make", "-C", str(ROOT), "--question", ".venv/.lstmviz-setup"], capture_output=True)
    assert stamp.returncode == 0
    dry = subprocess.run(["make", "-C", str(ROOT), "-n", "setup"], capture_output=True, text=True, check=True)
    assert "pip" not in dry.stdout


def test_makefile_pins_cpu_torch() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    assert "torch>=2.6" in (ROOT / "pyproject.toml").read_text()


def test_wheel_contains_templates(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("lstmviz-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    templates = sorted(n for n in names if n.startswith("lstmviz_cli/templates/"))
    expected = sorted(f"lstmviz_cli/templates/{p.relative_to(ROOT / 'templates').as_posix()}"
                      for p in (ROOT / "templates").rglob("*") if p.is_file())
    assert expected and templates == expected
    modules = sorted(str(p.relative_to(ROOT).as_posix()) for p in (ROOT / "lstmviz_cli").rglob("*.py"))
    assert "lstmviz_cli/cli.py" in modules and "lstmviz_cli/tracing/tracer.py" in modules
    assert [m for m in modules if m not in names] == []  # every stage folder ships
