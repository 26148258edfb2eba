"""A model object passed from Python, as the loading stage's record: `module_loaded(model, ...) -> LoadedModel`.

The CLI loads a checkpoint into a `LoadedModel`; `lstmviz_cli.report` builds the same record around the
user's own `nn.Module`, so everything after loading (`commands.pipeline.trace_loaded`, the analysis,
the page) is the CLI's. The model is the user's code, run as written: end-to-end verification applies
(the traced run's output against the model run again plainly), and the page says that the model came
from memory. What a checkpoint's metadata would say (vocabulary, task, output labels) are arguments.

`preserved(model)` gives back everything a report changes while it runs: each module's train/eval
mode, the autograd mode and the random states (torch CPU and CUDA, NumPy, Python).
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lstmviz_cli.errors import InputError, ModelError
from lstmviz_cli.loading.device import resolve_device
from lstmviz_cli.loading.metadata import TASKS, check_meta, infer_meta
from lstmviz_cli.loading.records import LoadedModel, ModelInfo
from lstmviz_cli.tracing.provenance import IN_MEMORY

Vocab = Sequence[str] | Mapping[str, int]


def _device_of(model: nn.Module) -> str:
    tensors: list[torch.Tensor] = [*model.parameters(), *model.buffers()]
    return str(tensors[0].device) if tensors else "cpu"


def _same_device(wanted: str, here: str) -> bool:
    a, b = torch.device(wanted), torch.device(here)
    if a.type != b.type:
        return False
    current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def _vocab_list(vocab: Vocab) -> list[str]:
    """`vocab=`: id -> token (a list) or {token: id} with ids 0..n-1; anything else is an InputError."""
    if isinstance(vocab, str):
        raise InputError("vocab= must be a list of tokens (id -> token) or a {token: id} dict, not a string; "
                         "for characters pass list(text) or sorted(set(text))")
    if isinstance(vocab, Mapping):
        ids = sorted(vocab.values()) if all(isinstance(v, int) for v in vocab.values()) else None
        if ids != list(range(len(vocab))):
            raise InputError(f"vocab= maps tokens to ids that are not 0..{len(vocab) - 1}")
        return [str(token) for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    if not isinstance(vocab, Sequence):
        raise InputError(f"vocab= must be a list of tokens (id -> token) or a {{token: id}} dict, not a "
                         f"{type(vocab).__name__}")
    tokens = [str(token) for token in vocab]
    if len(set(tokens)) != len(tokens):
        twice = next(token for token in tokens if tokens.count(token) > 1)
        raise InputError(f"vocab= holds {twice!r} twice; tokens must be distinct")
    return tokens


def module_loaded(
    model: nn.Module,
    *,
    name: str | None = None,
    vocab: Vocab | None = None,
    task: str | None = None,
    output_labels: Sequence[str] | None = None,
    description: str | None = None,
    device: str | None = None,
) -> LoadedModel:
    """The loading stage's record of a model object: what lstmviz knows of it, ready to trace.

    The model stays where it is (`device`, when given, must be where it is) and is not copied, except
    a half-precision model on the CPU, which runs as a float32 copy (CPUs lack half kernels). Its
    train/eval mode is the caller's to keep (`preserved`). Raises ModelError / InputError (one line).
    """
    if not isinstance(model, nn.Module):
        raise ModelError(f"report() takes a torch.nn.Module or a checkpoint's path, not a {type(model).__name__}")
    label = name or type(model).__name__
    here = _device_of(model)
    if device is not None:
        wanted = resolve_device(device)
        if not _same_device(wanted, here):
            raise InputError(f"device={device!r}: the model is on {here}; move it there first (model.to({wanted!r})) "
                             "or leave device out to run it where it is")
    if task is not None and task not in TASKS:
        raise InputError(f"task={task!r} must be one of {', '.join(TASKS)}")
    meta: dict[str, object] = {}
    if vocab is not None:
        meta["vocab"] = _vocab_list(vocab)
    if task is not None:
        meta["task"] = task
    if output_labels is not None:
        if isinstance(output_labels, str) or not isinstance(output_labels, Sequence):
            raise InputError("output_labels= must be a list of labels (class id -> label)")
        meta["output_labels"] = [str(label) for label in output_labels]
    if description is not None:
        meta["description"] = str(description)
    checked, found = check_meta(meta, Path(label))
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    stored = "/".join(sorted(str(d).removeprefix("torch.") for d in dtypes)) or None
    runs = model
    half = dtypes & {torch.float16, torch.bfloat16}
    if here == "cpu" and half:
        runs = copy.deepcopy(model).float()  # the user's model keeps its own precision
        # The half-precision dtype(s) it is stored in (never empty here), as the loader records a checkpoint's.
        checked["upcast_from"] = "/".join(sorted(str(d).removeprefix("torch.") for d in half))
    infer_meta(runs, checked)
    run_dtype = next((str(p.dtype).removeprefix("torch.") for p in runs.parameters() if p.is_floating_point()), None)
    info = ModelInfo(
        name=label, path="", format=IN_MEMORY, size_bytes=0,
        n_params=sum(int(p.numel()) for p in model.parameters()), device=here,
        task=task, vocab=tuple(checked["vocab"]) if checked.get("vocab") is not None else None,
        output_labels=tuple(checked["output_labels"]) if checked.get("output_labels") is not None else None,
        description=description, stored_dtype=stored, run_dtype=run_dtype, load_notes=tuple(found.notes),
    )
    return LoadedModel(model=runs, info=info, meta=checked, device=here)


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Run the block, then give back each module's train/eval mode, the autograd mode and every random state.

    A report puts the model in eval mode and runs it; a training loop must not notice.
    """
    modes = [(module, module.training) for module in model.modules()]
    grad = torch.is_grad_enabled()
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    cuda_started: Callable[[], bool] = torch.cuda.is_initialized  # (unannotated in torch)
    devices = list(range(torch.cuda.device_count())) if cuda_started() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_grad_enabled(grad)
        for module, training in modes:
            module.training = training
