"""Load any supported checkpoint into an eval-mode model: `load_checkpoint`, the loading stage's entry point.

Kinds are told apart by their bytes, not the extension (`loading.sniff`): a torch zip (``data.pkl``
inside), a TorchScript zip (``code/`` or ``constants.pkl`` inside), a legacy raw pickle, or safetensors.
Pickles are only ever read with ``torch.load(..., weights_only=True)`` (`loading.safeload`); plain
objects of classes that cannot be imported are opened as inert stand-ins (`loading.standins`);
``trust_pickle`` and ``trust_torchscript`` are the only ways to run code from a file. The state dict is
found under any key of a dict checkpoint, one level down, or in a Lightning ``.ckpt``
(`loading.findweights`). A bare state dict is rebuilt into a model (`loading.rebuild`), or loaded into
the user's own class (`loading.usermodel`). Metadata follows one convention (`loading.metadata`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lstmviz_cli.errors import CheckpointError, ModelError, UnsafeCheckpointError
from lstmviz_cli.loading import findweights, sniff
from lstmviz_cli.loading.device import place_model, refuse_non_finite, resolve_device
from lstmviz_cli.loading.findweights import strip_wrapper_prefixes
from lstmviz_cli.loading.formats import load_safetensors, load_torchscript
from lstmviz_cli.loading.metadata import TASKS, check_meta, infer_meta, known_task, read_sidecar
from lstmviz_cli.loading.rebuild import plan_facts, rebuild_from_state
from lstmviz_cli.loading.records import LoadedModel, ModelInfo, TensorAccounting
from lstmviz_cli.loading.safeload import (
    main_classes,
    require_safe_torch,
    torch_load_safe,
    torch_load_trusted,
)
from lstmviz_cli.loading.usermodel import UserClass, build_user_model


def load_checkpoint(
    path: str | Path,
    *,
    device: str = "cpu",
    trust_pickle: bool = False,
    trust_torchscript: bool = False,
    model_class: str | None = None,
    model_kwargs: str | None = None,
    weights_key: str | None = None,
    head: str | None = None,
    recurrent_only: bool = False,
) -> LoadedModel:
    """Load any supported checkpoint into an eval-mode model on `device`, refusing unsafe files.

    A model rebuilt from a state dict (or from a TorchScript archive's weights) accounts for every
    tensor (`info.accounting`); unplaced modules that may run before the recurrent layers are
    refused unless `recurrent_only` (trace the recurrent layers alone, no head). `head`
    ("all" | "last" | "final-states") wires a rebuilt Linear head, overriding config "head_on".
    `weights_key` picks the state dict of a dict checkpoint that holds several ("model" or
    "checkpoint/model"). Raises CheckpointError / UnsafeCheckpointError / ModelError with one-line messages.
    """
    path = Path(path)
    require_safe_torch(torch)
    dev = resolve_device(device)
    sniffed = sniff.sniff_checkpoint(path)
    raw: dict[str, object] = dict(read_sidecar(path))  # the file's plain entries, typed by check_meta
    unsafe = False
    scripted = None
    module: nn.Module | None = None
    model: nn.Module
    state: dict[str, torch.Tensor] | None = None
    skipped: list[Any] = []
    user_class = UserClass(model_class)
    unpacked = None

    if sniffed.kind == sniff.SAFETENSORS:
        fmt = "safetensors"
        state, file_meta = load_safetensors(path, sniffed.size)
        raw.update(file_meta)
    elif sniffed.kind == sniff.TORCHSCRIPT:
        if not trust_torchscript:
            raise UnsafeCheckpointError(
                f"{path.name!r} is a TorchScript archive, which is code: loading it would run code from "
                "the file; pass --trust-torchscript if you trust it, or re-save the weights as a "
                "state_dict or safetensors"
            )
        fmt, unsafe = "torchscript", True
        scripted, state, file_meta = load_torchscript(path, dev)
        raw.update(file_meta)
    else:
        try:
            obj, skipped = torch_load_safe(path, sniffed.kind, dev)
        except UnsafeCheckpointError:
            if not trust_pickle:
                raise
            main = main_classes(path, sniffed.kind, user_class)
            obj, unsafe = torch_load_trusted(path, dev, main), True
        unpacked = findweights.unpack(obj, path.name, weights_key)
        fmt, state, module = unpacked.format, unpacked.state, unpacked.module
        raw.update(unpacked.meta)
    if weights_key is not None and unpacked is None:
        raise CheckpointError(f"--weights-key {weights_key!r}: {path.name!r} is a {fmt} file, not a dict checkpoint")

    meta, vocab_found = check_meta(raw, path)
    if state is not None:
        state = strip_wrapper_prefixes(state)
    if state is None:
        assert module is not None  # a pickled module: its own tensors
        state = dict(module.state_dict())
    stored = _stored_dtypes(state)
    prefix: str | None = None
    rebuilt = False
    plan = None
    accounting: TensorAccounting | None = None
    if head is not None and recurrent_only:
        raise ModelError("--head wires a rebuilt output head, and --recurrent-only rebuilds none: pass one of them")
    if (model_class or module is not None) and (head is not None or recurrent_only):
        flag = "--head" if head is not None else "--recurrent-only"
        whose = "--model-class" if model_class else "the pickled module"
        raise ModelError(
            f"{flag} applies to a model rebuilt from weights; with {whose} your model's own forward runs "
            "(its head and the layers in front of its recurrent layers included)"
        )
    if model_class:
        cls = user_class.get()
        if module is not None and isinstance(cls, type) and isinstance(module, cls):
            model = module  # unpickled as the user's own class (torch.save(model) from a script)
        else:
            model, prefix, leftover = build_user_model(cls, model_class, model_kwargs, meta, state)
            if leftover:  # tensors of the file the class does not hold (a loss's weights): listed
                accounting = TensorAccounting(total=len(state), unused=tuple(leftover), into=model_class)
    elif module is not None:
        model = module
    else:
        assert state is not None
        if unpacked is not None and unpacked.lightning:
            state, prefix = findweights.strip_attribute_prefix(state)
            state = strip_wrapper_prefixes(state)  # model._orig_mod.lstm: compiled inside the LightningModule
        model, plan = rebuild_from_state(state, meta, path, torchscript=scripted is not None, head=head,
                               recurrent_only=recurrent_only, ordered=fmt != "safetensors")
        rebuilt = True
    model = place_model(model, dev, meta)
    refuse_non_finite(model, path.name)
    # Your own code (--model-class, a pickled module) reads the sample as it wants: only a model
    # lstmviz rebuilt says what its input must be.
    notes = list(vocab_found.notes) + infer_meta(model, meta, rebuilt=rebuilt)
    if meta.get("task") is not None and meta["task"] not in TASKS:
        notes.append(f"task {meta['task']!r} is not one of {', '.join(TASKS)}: ignored")
    head_width = plan.head.widths[-1] if plan is not None and plan.head is not None else None
    labels = meta.get("output_labels")
    if labels is not None and head_width is not None and len(labels) != head_width:
        notes.append(f"output_labels ({len(labels)}) do not match the head's {head_width} outputs: not used as class names")
    runs_in = next((str(p.dtype).removeprefix("torch.") for p in model.parameters() if p.is_floating_point()), None)
    info = ModelInfo(
        name=path.name,
        path=str(path),
        format=fmt,
        size_bytes=sniffed.size,
        n_params=sum(int(p.numel()) for p in model.parameters()),
        device=dev,
        unsafe=unsafe,
        rebuilt=rebuilt,
        task=known_task(meta),
        vocab=tuple(meta["vocab"]) if meta.get("vocab") is not None else None,
        output_labels=tuple(meta["output_labels"]) if meta.get("output_labels") is not None else None,
        description=meta.get("description"),
        weights_key=unpacked.key if unpacked is not None else None,
        key_prefix=prefix,
        lightning=bool(unpacked is not None and unpacked.lightning),
        stored_dtype=stored,
        run_dtype=runs_in,
        skipped=tuple((item.path, item.cls) for item in skipped),
        objects_read=tuple(unpacked.objects) if unpacked is not None else (),
        vocab_source=vocab_found.vocab.source if vocab_found.vocab is not None and meta.get("vocab") else None,
        labels_source=vocab_found.labels[1] if vocab_found.labels is not None and meta.get("output_labels") else None,
        load_notes=tuple(notes),
        model_class=model_class,
        **(plan_facts(plan) if plan is not None else {"accounting": accounting}),
    )
    # The archive is the reference only for its rebuild; with --model-class your class runs instead.
    return LoadedModel(model=model, info=info, meta=meta, device=dev, scripted=scripted if rebuilt else None)


def _stored_dtypes(state: Mapping[str, torch.Tensor]) -> str | None:
    """The floating dtypes the weights were saved in, e.g. "float16" or "bfloat16/float32"."""
    names = sorted({
        str(t.dtype).removeprefix("torch.") for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()
    })
    return "/".join(names) or None
