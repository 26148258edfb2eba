"""The two kinds that are not pickles: safetensors (the reference reader) and TorchScript archives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from lstmviz_cli.errors import (
    CheckpointError,
    first_line,
)
from lstmviz_cli.loading.metadata import parse_json_object
from lstmviz_cli.loading.records import JSON
from lstmviz_cli.loading.safeload import quiet
from lstmviz_cli.loading.sniff import validate_safetensors


# -- the kinds ---------------------------------------------------------------------------------
def load_safetensors(path: Path, size: int) -> tuple[dict[str, torch.Tensor], dict[str, JSON]]:
    header = validate_safetensors(path, size)
    read: Callable[..., dict[str, torch.Tensor]] = load_file  # (safetensors ships no type information)
    try:
        state = read(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001 - the library's own checks
        raise CheckpointError(f"cannot read safetensors file {path.name!r}: {first_line(error)}") from None
    # Keep the header's order (the library returns its own).
    ordered = {key: state[key] for key in header if key in state}
    meta: dict[str, JSON] = {}
    raw = (header.get("__metadata__") or {}).get("lstmviz")
    if raw is not None:
        meta = parse_json_object(raw, f"{path.name!r} __metadata__['lstmviz']")
    return ordered, meta


def load_torchscript(path: Path, dev: str) -> tuple[torch.jit.ScriptModule, dict[str, torch.Tensor], dict[str, JSON]]:
    extra = {"lstmviz.json": ""}
    try:
        with quiet():  # jit.load is deprecated, and still the only reader of these archives
            read: Callable[..., torch.jit.ScriptModule] = torch.jit.load  # (unannotated in torch)
            scripted = read(str(path), map_location="cpu", _extra_files=extra)
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"cannot load TorchScript archive {path.name!r}: {first_line(error)}") from None
    scripted.eval()
    meta = parse_json_object(extra["lstmviz.json"], f"{path.name!r} lstmviz.json") if extra["lstmviz.json"] else {}
    state = dict(scripted.state_dict())
    return scripted.to(dev), state, meta
