"""The CLI shell: help without torch, version, usage errors, and the one-line error boundary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmviz_cli import __version__
from lstmviz_cli.cli import main
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import CheckpointError

BIN = Path(sys.executable).parent
DIGITSUM = str(Path(__file__).resolve().parents[1] / "sample_models" / "digitsum.pt")


def test_help_does_not_import_torch() -> None:
    code = "import sys; from lstmviz_cli.cli import main; main(['--help']); print('TORCH', 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "report" in result.stdout and "trace" in result.stdout
    assert "TORCH False" in result.stdout


def test_console_script_and_module_entry_points() -> None:
    script = BIN / "lstmviz"
    assert script.exists(), "make setup installs the lstmviz console script into .venv/bin"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lstmviz {__version__}"
    out = subprocess.run([sys.executable, "-m", "lstmviz_cli", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lstmviz {__version__}"


def test_console_script_exits_fast_without_losing_output_or_codes(tmp_path: Path) -> None:
    """`run()` skips interpreter teardown (os._exit): streams are flushed, files complete, exit codes kept.

    (The report itself, drawn in one or two processes by fresh interpreters: tests/test_determinism.py.)
    """
    script = str(BIN / "lstmviz")
    out = tmp_path / "t.npz"
    runs = {  # the three at once: two cores
        "missing": [script, "report", str(tmp_path / "missing.pt")],
        "zero": [script, "report", DIGITSUM, "--jobs", "0"],
        "trace": [script, "trace", DIGITSUM, "-o", str(out), "--json", str(tmp_path / "t.json")],
    }
    started = {name: subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in runs.items()}
    done = {name: (process.wait(timeout=120), *process.communicate()) for name, process in started.items()}
    code, _, err = done["missing"]
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert done["zero"] == (2, "", "lstmviz: error: --jobs 0 must be at least 1\n")
    code, stdout, err = done["trace"]
    assert code == 0 and stdout.startswith(f"wrote {out} (6 arrays;") and stdout.endswith("\n"), err
    assert err == "lstmviz: digitsum.pt: rebuilt from weights: all 7 tensors placed\n"
    assert sorted(np.load(out)) == sorted([*json.loads((tmp_path / "t.json").read_text())["keys"], "__summary__"])


def test_subcommand_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("report", "trace"):
        assert main([command, "--help"]) == 0
        assert f"lstmviz {command} sample_models/" in capsys.readouterr().out


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 2
    assert "Missing argument" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_tool_error_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise CheckpointError("'x.pt' is not a checkpoint")

    monkeypatch.setattr(pipeline, "load_and_trace", fail)
    assert main(["trace", str(tmp_path / "x.pt"), "-o", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert err == "lstmviz: error: 'x.pt' is not a checkpoint\n"


def test_internal_error_is_one_line_and_debug_shows_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "load_and_trace", bug)
    args = ["trace", str(tmp_path / "x.pt"), "-o", str(tmp_path / "t.npz")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: boom" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", *args])


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "load_and_trace", interrupted)
    assert main(["trace", str(tmp_path / "x.pt"), "-o", str(tmp_path / "t.npz")]) == 130


def test_max_memory_refuses_an_oversized_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "t.npz"
    assert main(["trace", DIGITSUM, "--max-memory", "1K", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstmviz: error: tracing 1 × 10 steps") and "--max-memory" in err and err.count("\n") == 1
    assert not out.exists()
    assert main(["trace", DIGITSUM, "--max-memory", "lots", "-o", str(out)]) == 2
    assert "--max-memory must be a positive size" in capsys.readouterr().err
    assert main(["trace", DIGITSUM, "--max-memory", "64M", "-o", str(out)]) == 0
    assert out.exists()


SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"


def test_unequal_lengths_reach_a_rebuilt_model(tmp_path: Path) -> None:
    """A batch of two sine windows of lengths 40 and 25: padded steps are NaN, lengths are kept."""
    x = np.loadtxt(SAMPLES / "sine.csv", skiprows=1, dtype=np.float32)[:, None]
    batch = np.zeros((2, 40, 1), np.float32)
    batch[0], batch[1, :25] = x, x[:25]
    np.savez(tmp_path / "two.npz", input=batch, lengths=np.array([40, 25]))
    out = tmp_path / "t.npz"
    assert main(["trace", str(SAMPLES / "sine.pt"), "-i", str(tmp_path / "two.npz"), "-o", str(out)]) == 0
    arrays = np.load(out)
    assert arrays["lstm/lengths"].tolist() == [40, 25]
    h = arrays["lstm/l1/bwd/h"]
    assert np.isnan(h[1, 25:]).all() and not np.isnan(h[1, :25]).any() and not np.isnan(h[0]).any()


def test_hand_written_cell_sample_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.npz"
    args = ["trace", str(SAMPLES / "loop_lstm_digitsum.pt"), "--model-class",
            f"{SAMPLES / 'models.py'}:LoopLSTMDigitSum", "-o", str(out), "--json", str(tmp_path / "s.json")]
    assert main(args) == 0
    arrays = np.load(out)
    assert {k.rsplit("/", 1)[1] for k in arrays if k.count("/") == 3} >= {"i", "f", "g", "o", "c", "h"}
    capsys.readouterr()
    assert main(["trace", str(SAMPLES / "digitsum.pt"), "--module", "nope", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--module 'nope' is not a module" in err and err.count("\n") == 1


COMMANDS = ("trace", "report", "figures", "check", "diff")


def test_flags_look_like_flags_in_help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: `--force <bool>` read as if `--force true` were how to write it; a flag shows no value type."""
    monkeypatch.setenv("COLUMNS", "160")
    for command in ("", *COMMANDS):
        assert main([*([command] if command else []), "--help"]) == 0
        out = capsys.readouterr().out
        assert "<bool>" not in out, command
        assert re.search(r"--help +-h +Show this message", out), command
    assert main(["trace", "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"--force +Overwrite outputs", out) and re.search(r"--input +-i +<path>", out)
    for command in ("trace", "check"):  # still a flag: "true" is refused, saying why
        assert main([command, DIGITSUM, "--force", "true"]) == 2
        err = " ".join(capsys.readouterr().err.replace("│", " ").split())
        assert "--force is a flag and takes no value: write --force alone (or leave it out), not '--force true'" in err
    assert main(["check", DIGITSUM, "a.pt"]) == 2  # check takes several checkpoints: a typo is refused first
    assert "checkpoint 'a.pt' does not exist" in capsys.readouterr().err
    assert main(["trace", DIGITSUM, "a.pt"]) == 2  # any other extra argument: Typer's own message
    assert "unexpected extra argument(s) (a.pt)" in capsys.readouterr().err


def test_every_loading_command_takes_the_same_load_options(capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """One declaration (cli_options.LOAD_OPTIONS) for all five commands; `check` decides verification itself."""
    from lstmviz_cli.cli_options import LOAD_OPTIONS

    monkeypatch.setenv("COLUMNS", "200")
    expected = ["--input", "--tokens", "--device", "--trust-pickle", "--trust-torchscript", "--model-class",
                "--model-kwargs", "--module", "--max-memory", "--weights-key", "--forward-arg", "--head",
                "--recurrent-only", "--batch-index"]
    assert len(LOAD_OPTIONS) == len(expected)
    for command in COMMANDS:
        assert main([command, "--help"]) == 0
        shown = re.findall(r"│ (--[a-z0-9-]+)", capsys.readouterr().out)
        load = [name for name in shown if name in expected]
        assert load == expected, command
        assert ("--no-verify" in shown) is (command != "check"), command


def test_load_options_reach_the_command_as_one_record(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []

    def record(options: object, **kwargs: object) -> str:
        seen.append(options)
        return "ok"

    import lstmviz_cli.commands.trace as trace_module

    monkeypatch.setattr(trace_module, "run_trace_command", record)
    args = ["trace", "m.pt", "-i", "x.npz", "--device", "auto", "--trust-pickle", "--forward-arg", "a=b",
            "--forward-arg", "c=d", "--head", "last", "--recurrent-only", "--no-verify", "-o", str(tmp_path / "t.npz")]
    assert main(args) == 0
    assert seen == [LoadOptions(checkpoint=Path("m.pt"), input=Path("x.npz"), device="auto", trust_pickle=True,
                                forward_args=("a=b", "c=d"), head="last", recurrent_only=True, verify=False)]


def test_help_states_the_defaults_of_the_records_that_hold_them() -> None:
    """Threshold defaults have one source: change them there and the CLI's defaults and help follow."""
    code = (
        "from lstmviz_cli.analysis.thresholds import Thresholds\n"
        "from lstmviz_cli.analysis.checksettings import CheckConfig\n"
        "Thresholds.saturation_low, Thresholds.saturation_high, Thresholds.horizon_mass = 0.2, 0.7, 0.8\n"
        "CheckConfig.max_saturated, CheckConfig.max_dead_units, CheckConfig.max_verify_error = 0.5, '7%', 3e-5\n"
        "from lstmviz_cli.cli import main\n"
        "main(['check', '--help']); main(['report', '--help'])\n"
    )
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "values < 0.2 or > 0.7 (default 0.5)" in out and "(default 7%)" in out and "holding 80%" in out
    assert "looser or tighter than the default 3e-5" in out
    assert re.search(r"--saturation-low +<float> +Gate values below this count as left-saturated\. +\[default: 0\.2\]",
                     out)


def test_explain_options_are_refused_before_any_work(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    """A malformed --ablate or --attribution, or --permutations past what memory allows, is one line before the
    model is loaded (100,000,000 permutations were a MemoryError after 48 s; a comma list was read as one
    module named 'lstm/l0/fwd:1,lstm/l0/fwd')."""

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(pipeline, "load_and_trace", no_work)
    out = str(tmp_path / "r.html")
    cases = {
        ("--permutations", "100000000"): "--permutations 100,000,000: at most 100,000",
        ("--ablate", "lstm/l0/fwd:1,lstm/l0/fwd:2"): "name one unit per --ablate (repeat the option",
        ("--ablate", "lstm/l0/fwd"): "is not of the form <module>/l<layer>/<fwd|bwd>:<unit>[=value]",
        ("--attribution", "shap"): "--attribution 'shap': give auto, none, or a list of lrp, cd",
    }
    for args, message in cases.items():
        assert main(["report", DIGITSUM, "-o", out, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
