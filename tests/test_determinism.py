"""Same checkpoint and input, byte-identical outputs: checked across interpreters, never inside one.

Two fresh interpreters with different hash seeds (so set and dict orders of strings differ), one drawing
the report's figures in one process and the other in two, run every command that writes files on a
character model reading text: `report` (+ `--json`), `check --json --junit`, `trace --json` (+ the .npz),
`figures` (SVG files of one layer + figures.json) and `diff --json`. Every file and every line they print must be the
same. A result compared with itself in one process cannot show what leaks from a hash seed, an id
counter or a worker count; this test can.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest_papers import sample, write_scaled

TEXT = 'he said "hi (there)", ok.\nshe said "no [way]".'  # quotes, brackets, a newline: every text feature
COMMANDS = """
import sys
from lstmviz_cli.cli import main

model, scaled, text, jobs = sys.argv[1:5]
for args in (
    ["report", model, "-i", text, "-o", "report.html", "--json", "report.json", "--jobs", jobs],
    ["check", model, "-i", text, "--json", "check.json", "--junit", "check.xml"],
    ["trace", model, "-i", text, "-o", "trace.npz", "--json", "trace.json"],
    ["figures", model, "-i", text, "-o", "figs", "--format", "svg", "--layers", "lstm/l1"],
    ["diff", model, scaled, "-i", text, "-o", "diff.html", "--json", "diff.json"],
):
    code = main(args)
    print(f"{args[0]}: exit {code}", flush=True)
"""


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_output_is_byte_identical_across_interpreters(tmp_path: Path) -> None:
    model = sample("charlm.pt")
    scaled = write_scaled(model, tmp_path / "charlm_scaled.pt", scale=1.25)
    text = tmp_path / "sample.txt"
    text.write_text(TEXT, encoding="utf-8")
    runs = []
    for seed, jobs in (("1", "1"), ("2", "2")):  # in parallel: the machine has two cores
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        command = [sys.executable, "-c", COMMANDS, str(model), str(scaled), str(text), jobs]
        runs.append((folder, subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True)))
    results = []
    for folder, process in runs:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        results.append((folder, out, err))
    (first, out1, err1), (second, out2, err2) = results
    assert [line for line in out1.splitlines() if line.endswith(("exit 0", "exit 1"))] == [
        "report: exit 0", "check: exit 0", "trace: exit 0", "figures: exit 0", "diff: exit 0"]
    assert (out1, err1) == (out2, err2)
    files, again = _files(first), _files(second)
    assert sorted(files) == sorted(again)
    assert {"report.html", "report.json", "check.json", "check.xml", "trace.npz", "trace.json", "diff.html",
            "diff.json", "figs/figures.json"} <= set(files)
    assert sum(name.endswith(".svg") for name in files) >= 8
    different = [name for name in files if files[name] != again[name]]
    assert not different, f"differ between interpreters: {different}"
