"""Many checkpoints at once, for `report --out-dir` and `figures`: patterns, distinct stems, a process pool.

A failing checkpoint is one line in the results (the others still run); the progress bar goes to stderr.
A single checkpoint is no batch: its error stops the command as it would `lstmviz report one.pt`.
"""

from __future__ import annotations

import glob
import multiprocessing
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from lstmviz_cli.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, InputError, LstmvizError
from lstmviz_cli.render.paper import model_stem

T = TypeVar("T")


@dataclass
class ItemResult(Generic[T]):
    """What one checkpoint's job returned: a value, or the one-line error that stopped it."""

    checkpoint: Path
    value: T | None = None
    error: str | None = None
    exit_code: int = EXIT_BAD_INPUT  # of the error: 2 the tool refused (bad input), 3 a crash

    @property
    def ok(self) -> bool:
        return self.error is None


def naming(name: str, message: str) -> str:
    """One failure's line that names its checkpoint once: "a.pt: <message>", or the message alone when
    it names the file already, quoted with or without its folders ("'a.pt' holds a dict ...",
    "'ckpts/a.pt' is not a checkpoint ...", as the loader's messages do)."""
    for quote in ("'", '"'):
        if re.search(rf"{quote}(?:[^{quote}]*[/\\])?{re.escape(name)}{quote}", message):
            return message
    return f"{name}: {message}"


def expand_checkpoints(patterns: Sequence[str | Path]) -> list[Path]:
    """Paths and glob patterns (the shell's or ours, for quoted patterns and Windows) -> existing files.

    Order is the order given, each pattern's matches sorted; duplicates dropped. A pattern that
    matches nothing is an error naming it, so a typo in CI does not silently check nothing.
    """
    paths: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        text = str(pattern)
        if glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).is_file())
            if not matches:
                raise InputError(f"no checkpoint matches {text!r}")
        else:
            matches = [Path(text)]
        for path in matches:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(path)
    if not paths:
        raise InputError("no checkpoint given")
    return paths


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct, file-name-safe stem per checkpoint: `a/model.pt` and `b/model.pt` -> `model`, `model-2`."""
    stems: list[str] = []
    counts: dict[str, int] = {}
    for path in paths:
        stem = model_stem(path.name)
        counts[stem] = counts.get(stem, 0) + 1
        stems.append(stem if counts[stem] == 1 else f"{stem}-{counts[stem]}")
    return stems


def _call(job: Callable[..., T], checkpoint: Path, args: tuple[object, ...]) -> ItemResult[T]:
    """Run one job, turning the tool's errors (and bugs) into a message so the batch goes on."""
    try:
        return ItemResult(checkpoint, value=job(checkpoint, *args))
    except LstmvizError as error:
        return ItemResult(checkpoint, error=error.message, exit_code=error.exit_code)
    except Exception as error:  # noqa: BLE001 - one bad checkpoint must not stop the others
        return ItemResult(checkpoint, error=f"internal error: {type(error).__name__}: {error}", exit_code=EXIT_INTERNAL)


def run_many(job: Callable[..., T], checkpoints: Sequence[Path], per_item_args: Sequence[tuple[object, ...]], *,
             jobs: int = 1, label: str = "working", show_progress: bool = True) -> list[ItemResult[T]]:
    """Run `job(checkpoint, *args)` for every checkpoint, in `jobs` processes, results in input order.

    `job` must be a module-level function (it is pickled for the worker processes). The progress
    bar goes to stderr, so stdout stays clean for tables and messages. A single checkpoint's job
    runs here and its error propagates (exit 2, or 3 for a crash, one line; nothing else written).
    """
    if jobs < 1:
        raise InputError(f"--jobs {jobs} must be at least 1")
    if len(checkpoints) == 1:
        with _progress(show_progress) as progress:
            task = progress.add_task(f"{label} {checkpoints[0].name}", total=1)
            value = job(checkpoints[0], *per_item_args[0])
            progress.advance(task)
        return [ItemResult(checkpoints[0], value=value)]
    results: list[ItemResult[T] | None] = [None] * len(checkpoints)
    with _progress(show_progress) as progress:
        task = progress.add_task(label, total=len(checkpoints))
        if jobs == 1:
            for index, (path, args) in enumerate(zip(checkpoints, per_item_args, strict=True)):
                progress.update(task, description=f"{label} {path.name}")
                results[index] = _call(job, path, args)
                progress.advance(task)
        else:
            # spawn, not fork: forking a process that has started torch's thread pools can hang.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(jobs, len(checkpoints)), mp_context=context) as pool:
                futures = {
                    pool.submit(_call, job, path, args): index
                    for index, (path, args) in enumerate(zip(checkpoints, per_item_args, strict=True))
                }
                for future in as_completed(futures):
                    index = futures[future]
                    try:
                        results[index] = future.result()
                    except Exception as error:  # noqa: BLE001 - a worker died (killed, out of memory)
                        results[index] = ItemResult(checkpoints[index], error=f"worker failed: {type(error).__name__}: {error}",
                                                    exit_code=EXIT_INTERNAL)
                    progress.advance(task)
    return [r for r in results if r is not None]


class _Bar(Protocol):
    """What run_many asks of a progress bar (rich's Progress, or none)."""

    def __enter__(self) -> _Bar: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None: ...

    def add_task(self, description: str, start: bool = ..., total: float | None = ...) -> TaskID: ...

    def update(self, task_id: TaskID, *, description: str | None = ...) -> None: ...

    def advance(self, task_id: TaskID, advance: float = ...) -> None: ...


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        return None

    def add_task(self, description: str, start: bool = True, total: float | None = None) -> TaskID:
        return TaskID(0)

    def update(self, task_id: TaskID, *, description: str | None = None) -> None:
        return None

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        return None


def _progress(show: bool) -> _Bar:
    """A rich progress bar on stderr; nothing at all when stderr is not a terminal (CI logs stay clean)."""
    if not show:
        return _NoProgress()

    console = Console(stderr=True)
    if not console.is_terminal:
        return _NoProgress()
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
