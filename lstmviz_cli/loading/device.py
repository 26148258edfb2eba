"""Where the model runs: `--device` resolved to a real device, the model placed there in eval mode."""

from __future__ import annotations

import re

import torch
from torch import nn

from lstmviz_cli.errors import (
    CheckpointError,
    LstmvizError,
    ModelError,
    first_line,
)
from lstmviz_cli.loading.records import Metadata


def place_model(model: nn.Module, dev: str, meta: Metadata) -> nn.Module:
    """Eval mode on the device; half precision is upcast on CPU, where its kernels are missing."""
    dtypes = {p.dtype for p in model.parameters()}
    if dev == "cpu" and dtypes & {torch.float16, torch.bfloat16}:
        meta["upcast_from"] = str(sorted(dtypes, key=str)[0]).removeprefix("torch.")
        model = model.float()
    try:
        model = model.to(dev)
    except Exception as error:  # noqa: BLE001 - out of GPU memory, driver problems
        raise ModelError(f"cannot move the model to {dev}: {first_line(error)}") from None
    model.eval()
    return model


def resolve_device(device: str) -> str:
    """"cpu", "cuda[:N]" or "auto" -> a concrete device; asking for a missing GPU is an error."""
    wanted = (device or "cpu").strip().lower()
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", wanted)
    if not match:
        raise LstmvizError(f"--device must be cpu, cuda, cuda:N or auto, not {device!r}")
    if not torch.cuda.is_available():
        raise ModelError("--device cuda was given but no CUDA GPU is available; use --device cpu or --device auto")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ModelError(f"--device {wanted}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return wanted


def refuse_non_finite(model: nn.Module, name: str) -> None:
    """Refuse a model whose weights hold NaN or Inf (a diverged run): every output would be NaN.

    Raises CheckpointError naming the tensors (parameters and buffers, as in its state dict).
    """
    bad: list[str] = []
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad.append(key)
    if bad:
        count = sum(int((~torch.isfinite(model.state_dict()[key])).sum()) for key in bad)
        shown = ", ".join(repr(key) for key in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"{name!r}: {shown} hold{'s' if len(bad) == 1 else ''} NaN or Inf ({count} value{'s' if count != 1 else ''}): "
            "a model with non-finite weights cannot produce finite outputs; use a checkpoint saved before training diverged"
        )
