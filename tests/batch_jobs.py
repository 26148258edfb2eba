"""Jobs for `commands.many.run_many` tests, in a module of their own: spawned worker processes import it to
find the job, so it imports nothing heavy (a test module would pull in torch and matplotlib per worker)."""

from __future__ import annotations

from pathlib import Path

from lstmviz_cli.errors import InputError


def square_or_fail(path: Path, factor: int) -> int:
    """The checkpoint's stem squared times `factor`; "bad" is a tool error, "bug" a crash."""
    if path.stem == "bad":
        raise InputError(f"{path.name!r} is broken")
    if path.stem == "bug":
        raise ZeroDivisionError("division by zero")
    return int(path.stem) ** 2 * factor


def load_one(path: Path) -> int:
    """A job that refuses its checkpoint (the loader's kind of message)."""
    raise InputError(f"{path.name!r} holds no recurrent layer")
