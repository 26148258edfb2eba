"""On a GPU, every run of the user's model uses full float32 math: TF32 off while lstmviz runs it.

PyTorch lets cuDNN run float32 LSTM/GRU/RNN layers on TF32 tensor cores by default on Ampere and
later GPUs (`torch.backends.cudnn.rnn.fp32_precision == "tf32"`; the legacy flag is
`torch.backends.cudnn.allow_tf32`), and matrix products too when a script asks for it
(`torch.set_float32_matmul_precision("high")`). TF32 keeps about 10 bits of mantissa: layer
outputs then carry errors near 1e-3, and gates rebuilt in float32 cannot reproduce them to the 1e-4
tolerance (measured on an H200: 4.8e-4 on layer 0 and 4.7e-3 on layer 1 of the digit-sum LSTM). So
the traced run, the plain run that verifies it and the explanations run the model with both set to
full IEEE float32 (`full_float32`), and the caller's settings are restored afterwards. The page says
so when this process would otherwise have used TF32 for recurrent layers (`tf32_note`).

Source: PyTorch docs, "TensorFloat-32 (TF32) on Ampere (and later) devices" (notes/cuda.html).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

_IEEE = "ieee"
_FIELD = "fp32_precision"  # a property of torch's backend modules, absent from its type stubs


def _get(backend: object) -> str:
    return str(getattr(backend, _FIELD))


def _set(backend: object, value: str) -> None:
    setattr(backend, _FIELD, value)


def _rnn_precision() -> str:
    """The caller's precision for cuDNN's recurrent layers: "tf32", "ieee" (or "none": not TF32)."""
    cudnn = torch.backends.cudnn
    if hasattr(cudnn, "rnn"):  # torch >= 2.9: the per-operator API
        return _get(cudnn.rnn)
    return "tf32" if cudnn.allow_tf32 else _IEEE


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Run the block with TF32 off for cuDNN (recurrent layers, convolutions) and CUDA matrix products.

    Through torch's legacy switches (`cudnn.allow_tf32`, `cuda.matmul.allow_tf32`), which keep its
    per-operator settings consistent: torch's own `cudnn.flags()` (saliency uses it) refuses to run
    while they disagree. A caller who mixed the two APIs (torch then refuses to read the legacy
    switch) gets only the per-operator switch of recurrent layers turned off. The caller's settings
    are restored on exit; nothing changes on a CPU.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        legacy = (bool(cudnn.allow_tf32), bool(matmul.allow_tf32))
    except RuntimeError:  # mixed APIs: the per-operator switch alone
        rnn_before = _get(cudnn.rnn)
        _set(cudnn.rnn, _IEEE)
        try:
            yield
        finally:
            _set(cudnn.rnn, rnn_before)
        return
    per_operator = [(backend, _get(backend)) for backend in (cudnn.rnn, cudnn.conv, matmul)] if hasattr(  # type: ignore[attr-defined]
        cudnn, "rnn") else []
    cudnn.allow_tf32, matmul.allow_tf32 = False, False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = legacy
        for backend, value in per_operator:
            _set(backend, value)


def tf32_note(device: str) -> str | None:
    """The page's note when the model runs on a GPU whose recurrent layers this process lets use TF32."""
    if not device.startswith("cuda") or not torch.cuda.is_available() or _rnn_precision() != "tf32":
        return None
    index = torch.device(device).index
    major, _minor = torch.cuda.get_device_capability(index if index is not None else torch.cuda.current_device())
    if major < 8:  # TF32 exists from Ampere on
        return None
    return ("on this GPU PyTorch lets cuDNN run float32 recurrent layers in TF32 (about 3 significant digits); "
            "lstmviz ran the model in full float32 (TF32 off, the caller's setting restored), so the gates and "
            "states shown are float32's and verified to the tolerance; with TF32 the model's outputs differ from "
            "them at about the 1e-3 level")
