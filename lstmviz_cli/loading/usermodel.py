"""`--model-class`: import the user's class (a module path or a file) and build it with the checkpoint's weights."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstmviz_cli.errors import (
    LstmvizError,
    ModelError,
    first_line,
)
from lstmviz_cli.loading.findweights import align_to_class
from lstmviz_cli.loading.records import Metadata


class UserClass:
    """--model-class, imported once and only when needed (importing it runs the user's module)."""

    def __init__(self, spec: str | None) -> None:
        self.spec = spec
        self._cls: Callable[..., object] | None = None

    def get(self) -> Callable[..., object]:
        assert self.spec is not None
        if self._cls is None:
            self._cls = _import_target(self.spec)
        return self._cls


def _import_target(spec: str) -> Callable[..., object]:
    """'package.module:Class' or 'path/to/file.py:Class' -> the class (or factory)."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        raise ModelError(f"--model-class must look like 'package.module:Class' or 'path/to/file.py:Class', not {spec!r}")
    try:
        if target.endswith(".py") or "/" in target or os.sep in target:
            file = Path(target)
            if not file.is_file():
                raise ModelError(f"--model-class file {target!r} does not exist")
            name = f"lstmviz_user_{re.sub(r'[^0-9a-zA-Z_]', '_', file.stem)}"
            module_spec = importlib.util.spec_from_file_location(name, file)
            if module_spec is None or module_spec.loader is None:
                raise ModelError(f"--model-class file {target!r} cannot be imported")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            with _on_sys_path(str(file.resolve().parent)):
                module_spec.loader.exec_module(module)
        else:
            with _on_sys_path(os.getcwd()):
                module = importlib.import_module(target)
    except LstmvizError:
        raise
    except Exception as error:  # noqa: BLE001 - the user's module failed to import
        raise ModelError(f"--model-class: importing {target!r} failed: {type(error).__name__}: {first_line(error)}") from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"--model-class: {target!r} has no attribute {attr!r}")
        obj = getattr(obj, part)  # the user's module: its attribute
    if not callable(obj):
        raise ModelError(f"--model-class: {spec!r} is not a class")
    return obj


@contextlib.contextmanager
def _on_sys_path(folder: str) -> Iterator[None]:
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _user_kwargs(cls: Callable[..., object], model_kwargs: str | None, meta: Metadata) -> dict[str, Any]:
    """--model-kwargs JSON, else the saved config restricted to what the constructor accepts."""
    if model_kwargs:
        try:
            kwargs = json.loads(model_kwargs)
        except ValueError as error:
            raise ModelError(f"--model-kwargs is not valid JSON ({error})") from None
        if not isinstance(kwargs, dict):
            raise ModelError("--model-kwargs must be a JSON object, e.g. '{\"hidden_size\": 64}'")
        return kwargs
    config = dict(meta.get("config") or {})
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return config
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return config
    return {k: v for k, v in config.items() if k in params}


def build_user_model(
    cls: Callable[..., object], spec: str, model_kwargs: str | None, meta: Metadata, state: dict[str, torch.Tensor]
) -> tuple[nn.Module, str | None, list[str]]:
    """The user's class built with its kwargs and loaded strictly: (model, attribute prefix removed,
    keys left out).

    Keys carrying an attribute prefix the class does not have (a LightningModule's `model.`) are
    matched to the class's own state_dict() keys; the tensors outside that prefix (a loss's
    `criterion.weight`) are returned, for the tensor accounting.
    """
    kwargs = _user_kwargs(cls, model_kwargs, meta)
    try:
        model = cls(**kwargs)
    except Exception as error:  # noqa: BLE001 - the user's constructor
        hint = ""
        if isinstance(error, TypeError) and "argument" in str(error) and not model_kwargs:
            hint = ("; pass its arguments with --model-kwargs '{\"name\": value}' (or save them in the "
                    "checkpoint's 'config')")
        raise ModelError(
            f"--model-class: {spec}(**{kwargs}) failed: {type(error).__name__}: {first_line(error)}{hint}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model-class: {spec} built a {type(model).__name__}, not a torch.nn.Module")
    own = model.state_dict()
    state, prefix, leftover = align_to_class(state, list(own))
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}" + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
        raise ModelError(f"the checkpoint does not fit {spec}: {'; '.join(parts)}")
    for key, tensor in own.items():
        if isinstance(tensor, torch.Tensor) and tuple(tensor.shape) != tuple(state[key].shape):
            raise ModelError(
                f"the checkpoint does not fit {spec}: {key!r} is {tuple(state[key].shape)} in the file "
                f"but {tuple(tensor.shape)} in the model (check --model-kwargs)"
            )
    try:
        model.load_state_dict(state, strict=True)
    except Exception as error:  # noqa: BLE001
        raise ModelError(f"the checkpoint does not fit {spec}: {first_line(error)}") from None
    return model, prefix, leftover
