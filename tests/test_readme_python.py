"""The README's "Python and notebooks" examples, copied from the README by the test and run unchanged: the
report in one line, what a `Report` gives, and the experiment-tracker lines (W&B, MLflow and TensorBoard
stood in for by recorders, since none of them is a dependency)."""

from __future__ import annotations

import re
import webbrowser
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section that starts at `heading` (up to the next heading)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(heading) + len(heading):]
    section = section[:section.index("\n#")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


class Recorder:
    """Stands in for a tracker module or writer: records every call as (name, args, kwargs)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def __getattr__(self, name: str):  # noqa: ANN204
        def call(*args: object, **kwargs: object) -> tuple[str, tuple[object, ...]]:
            self.calls.append((name, args, kwargs))
            return (name, args)

        return call


@pytest.mark.slow
def test_the_readmes_python_examples_run_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one_line, uses = python_blocks("### A report in one line")
    (trackers,) = python_blocks("### Experiment trackers")
    monkeypatch.chdir(tmp_path)
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)

    space: dict[str, object] = {}
    exec(compile(one_line, "README:report in one line", "exec"), space)  # noqa: S102
    exec(compile(uses, "README:a Report's uses", "exec"), space)  # noqa: S102
    report = space["report"]
    assert (tmp_path / "report.html").is_file() and opened == [(tmp_path / "report.html").resolve().as_uri()]
    scalars = report.scalars()  # type: ignore[attr-defined]
    assert set(scalars) >= {"lstm/l0/fwd/gate_mean_f", "memory_horizon", "verify_error"}

    import lstmviz_cli

    wandb, mlflow, writer = Recorder(), Recorder(), Recorder()
    space.update(wandb=wandb, mlflow=mlflow, writer=writer, epoch=2, monitor=lstmviz_cli.Monitor(
        space["model"], "a bad cafe had a bag", space["vocab"], every=2, out_dir=tmp_path / "lstmviz"))
    space["monitor"].step()  # type: ignore[attr-defined]  # the first call does not fire
    exec(compile(trackers, "README:experiment trackers", "exec"), space)  # noqa: S102
    logged = space["report"]
    assert logged is not None and logged is not report
    tagged = {f"lstmviz/{name}": value for name, value in logged.scalars().items()}  # type: ignore[attr-defined]
    (html_panel,) = [c for c in wandb.calls if c[0] == "Html"]
    assert html_panel[1] == (logged.html,) and html_panel[2] == {"inject": False}  # type: ignore[attr-defined]
    assert [c[0] for c in wandb.calls] == ["Html", "log"]
    assert wandb.calls[1][1][0] == {**tagged, "lstmviz/report": ("Html", (logged.html,))}  # type: ignore[attr-defined]
    assert mlflow.calls[0] == ("log_metrics", (tagged,), {"step": 2})
    assert mlflow.calls[1] == ("log_artifact", (str(tmp_path / "lstmviz" / "epoch_0002.html"),),
                               {"artifact_path": "lstmviz"})
    assert writer.calls == [("add_scalar", (name, value, 2), {}) for name, value in tagged.items()]
    assert len(writer.calls) == 16  # one LSTM layer: the count the README gives
