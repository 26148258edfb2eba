"""What a long command is doing, shown on stderr while it is a terminal: `report`, `check`, `diff`.

A report takes seconds to a minute (load, trace, analyse, draw 10–30 figures). `Steps` names the
stage and counts the figures in one transient line (rich, which Typer brings); when stderr is not a
terminal (CI logs, pipes) it prints nothing at all, so logs and outputs stay byte-identical.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Steps:
    """A context manager: `step("tracing")` names the stage, `figures(k, n)` counts the figures drawn."""

    def __init__(self, label: str, *, console: Console | None = None) -> None:
        self._label = label
        self._console = console if console is not None else Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @property
    def shown(self) -> bool:
        """Whether anything is drawn: only on a terminal."""
        return self._console.is_terminal

    def __enter__(self) -> Steps:
        if self.shown:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), console=self._console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self._label, total=None)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.__exit__(kind, error, traceback)
            self._progress = None

    def step(self, text: str) -> None:
        """Name the stage now running ("tracing charlm.pt"); the bar waits for a count."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"{self._label}: {text}", total=None, completed=0)

    def figures(self, done: int, total: int) -> None:
        """`done` of `total` figures drawn (`render.jobs.draw_figures`'s report)."""
        self._count("drawing figures", done, total)

    def counter(self, text: str) -> Callable[[int, int], None]:
        """A (done, total) callback that shows `text` with a count: "reading the corpus 1,200/2,500"."""
        return functools.partial(self._count, text)

    def _count(self, text: str, done: int, total: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=f"{self._label}: {text}", total=total, completed=done)
