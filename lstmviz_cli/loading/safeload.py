"""Pickles are only ever read with `torch.load(..., weights_only=True)`; code runs only behind a trust flag.

A file that needs plain classes lstmviz cannot import is opened again with inert stand-ins
(`loading.standins`); a file that needs anything else is refused with one line naming what it needs.
`--trust-pickle` unpickles fully, with `__main__` classes taken from `--model-class` for a model saved
from a script.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import pickle
import re
import sys
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import _weights_only_unpickler as wou

from lstmviz_cli.errors import (
    CheckpointError,
    UnsafeCheckpointError,
    first_line,
)
from lstmviz_cli.loading.sniff import TORCH_ZIP, pickle_globals
from lstmviz_cli.loading.standins import StandInRefused, find_standins, standins_for
from lstmviz_cli.loading.usermodel import UserClass

_ENV_DOWNGRADE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_SCAN_LIMIT = 64 * 1024 * 1024  # bytes of a raw pickle scanned for the globals it needs


# -- safety ----------------------------------------------------------------------------------------
def require_safe_torch(torch_module: types.ModuleType) -> None:
    """torch < 2.6 let an environment variable turn weights_only off: refuse to run on it."""
    version = torch_module.__version__
    match = re.match(r"(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) < (2, 6):
        raise CheckpointError(f"lstmviz needs torch >= 2.6 for safe loading; this is torch {version}")


@contextlib.contextmanager
def _no_downgrade_env() -> Iterator[None]:
    """Hide TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD while loading.

    torch >= 2.6 ignores it when weights_only is passed explicitly (we always pass it), but hiding
    it keeps that true on any torch and avoids torch's error when both FORCE variables are set.
    """
    saved = os.environ.pop(_ENV_DOWNGRADE, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[_ENV_DOWNGRADE] = saved


def torch_load_safe(path: Path, kind: str, dev: str) -> tuple[Any, list[Any]]:
    """torch.load with weights_only=True passed explicitly; unsafe files raise UnsafeCheckpointError.

    A file that needs only plain classes lstmviz cannot import (a user's Vocab beside the weights)
    is opened again with those classes as inert stand-ins (`loading.standins`); the objects skipped so are
    returned beside the loaded object.
    """
    try:
        return _weights_only_load(path, dev), []
    except pickle.UnpicklingError as error:
        needed = unsafe_globals(path, kind)
        reason = str(error).partition("WeightsUnpickler error:")[2].strip() or first_line(error)
        standins = standins_for(needed) if needed else None
        if standins is not None:
            obj = _load_with_standins(path, dev, standins, needed)
            return obj, find_standins(obj)
        # A refused global the static scan could not name (e.g. built through the memo) is still
        # unsafe; anything else the weights-only unpickler rejects is a damaged file.
        if needed or "global" in reason.lower():
            raise UnsafeCheckpointError(_unsafe_message(path, needed)) from None
        raise CheckpointError(
            f"cannot read {path.name!r}: corrupted pickle data ({first_line(ValueError(reason))})"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure inside torch's reader is a bad file
        raise _corrupted(path, error) from None


def _weights_only_load(path: Path, dev: str) -> Any:
    with _no_downgrade_env(), quiet(), open(path, "rb") as handle:
        # A handle, not the name: torch.load would treat a name ending in .safetensors specially.
        return torch.load(handle, map_location=dev, weights_only=True)


def _load_with_standins(path: Path, dev: str, standins: dict[str, type], needed: list[str]) -> Any:
    """The weights-only unpickler again, with each needed global mapped to its inert stand-in."""
    try:
        with torch.serialization.safe_globals([(cls, name) for name, cls in standins.items()]):
            return _weights_only_load(path, dev)
    except StandInRefused as refused:
        raise UnsafeCheckpointError(_unsafe_message(path, needed, how=str(refused))) from None
    except pickle.UnpicklingError:
        raise UnsafeCheckpointError(_unsafe_message(path, needed)) from None
    except Exception as error:  # noqa: BLE001
        raise _corrupted(path, error) from None


def _corrupted(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(
        f"cannot read {path.name!r}: the file is corrupted or not a PyTorch checkpoint ({first_line(error)})"
    )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch warns on stderr about pickle protocols and deprecations; the CLI prints one line only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def unsafe_globals(path: Path, kind: str) -> list[str]:
    """The importable names a pickle needs that weights_only loading does not allow (no code runs)."""
    if kind == TORCH_ZIP:
        with contextlib.suppress(Exception):
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        # torch's scanner knows protocol-2 opcodes only; ours also reads protocols 0-5.
        try:
            with zipfile.ZipFile(path) as archive:
                member = next(m for m in archive.namelist() if m == "data.pkl" or m.endswith("/data.pkl"))
                data = archive.read(member)
        except Exception:  # noqa: BLE001
            return []
    else:
        with open(path, "rb") as handle:
            data = handle.read(_SCAN_LIMIT)
    return [name for name in pickle_globals(data) if name not in _allowed_globals()]


def _allowed_globals() -> set[str]:
    user_allowed: Callable[[], dict[str, object]] = wou._get_user_allowed_globals  # (unannotated in torch)
    try:
        return set(wou._get_allowed_globals()) | set(user_allowed())
    except Exception:  # noqa: BLE001 - private API moved: then every global is reported
        return set()


def _unsafe_message(path: Path, needed: list[str], how: str | None = None) -> str:
    shown = ", ".join(needed[:6]) + (f" and {len(needed) - 6} more" if len(needed) > 6 else "")
    what = f"needs unsafe globals ({shown})" if needed else "needs objects that weights-only loading refuses"
    if how:
        what += f" and {how}"
    flags = "--trust-pickle"
    main = [name.removeprefix("__main__.") for name in needed if name.startswith("__main__.")]
    if main:  # saved from a script: its classes exist only there
        flags += f" --model-class path/to/the_script.py:{main[0]} (the script that saved it)"
    return (
        f"{path.name!r} {what}: loading it would run code from the file; pass {flags} only if "
        "you trust it, or re-save it as a state_dict (torch.save(model.state_dict(), ...)) or as safetensors"
    )


def main_classes(path: Path, kind: str, user_class: UserClass) -> dict[str, object]:
    """For a pickle saved from a script (`__main__.StockLSTM`): the user's classes by name.

    With --model-class, `__main__` stands for the module that defines the named class (a class
    missing there is the named class itself when the file needs only one). Without it, or when a
    class cannot be found, a CheckpointError says exactly what to pass.
    """
    wanted = [name.removeprefix("__main__.") for name in unsafe_globals(path, kind) if name.startswith("__main__.")]
    if not wanted:
        return {}
    if user_class.spec is None:
        shown = ", ".join(f"__main__.{name}" for name in wanted)
        raise CheckpointError(
            f"{path.name!r} was saved with torch.save(model) from a script and needs {shown}, which only that "
            f"script defines: pass --model-class path/to/the_script.py:{wanted[0]} with --trust-pickle"
        )
    cls = user_class.get()
    module = inspect.getmodule(cls)
    missing = [name for name in wanted if getattr(module, name, None) is None]
    if missing and len(wanted) == 1:
        return {wanted[0]: cls}  # the script's one class, under another name in the user's file
    if missing:
        target = user_class.spec.rpartition(":")[0]
        raise CheckpointError(
            f"{path.name!r} needs {', '.join(f'__main__.{n}' for n in missing)}, which {target!r} does not define: "
            f"pass --model-class with the script that saved the model (the file that defines {', '.join(missing)})"
        )
    return {name: getattr(module, name) for name in wanted}


def torch_load_trusted(path: Path, dev: str, main: Mapping[str, object] | None = None) -> object:
    """Full unpickling (the user opted in), with the checkpoint's folder importable.

    `main`: the user's classes that stand for `__main__.Name` (the file was saved from a script).
    """
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        with quiet(), open(path, "rb") as handle:
            if main:
                return torch.load(handle, map_location=dev, weights_only=False, pickle_module=_main_pickle_module(main))
            return torch.load(handle, map_location=dev, weights_only=False)
    except Exception as error:  # noqa: BLE001 - the file's own code failed
        if isinstance(error, AttributeError) and "__main__" in str(error):
            raise CheckpointError(
                f"cannot unpickle {path.name!r}: it was saved from a script and needs a class of that script "
                "(__main__); pass --model-class path/to/the_script.py:Class with --trust-pickle"
            ) from None
        hint = " (put the module that defines the class on PYTHONPATH)" if isinstance(error, ImportError) else ""
        raise CheckpointError(
            f"cannot unpickle {path.name!r}: {type(error).__name__}: {first_line(error)}{hint}"
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _main_pickle_module(main: Mapping[str, object]) -> types.ModuleType:
    """A pickle module for torch.load whose Unpickler resolves `__main__.Name` to main[Name]."""
    class MainUnpickler(pickle.Unpickler):
        def find_class(self, module_name: str, name: str) -> Any:
            if module_name == "__main__" and name in main:
                return main[name]
            return super().find_class(module_name, name)

    module = types.ModuleType("lstmviz_main_pickle")
    module.Unpickler = MainUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: MainUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    return module
