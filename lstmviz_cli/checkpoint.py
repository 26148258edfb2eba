"""Sniff and load a checkpoint safely; rebuild recurrent layers from a bare state dict.

Kinds are told apart by their bytes, not the extension: a torch zip (``data.pkl`` inside), a
TorchScript zip (``code/`` or ``constants.pkl`` inside), a legacy raw pickle, or safetensors.
Pickles are only ever read with ``torch.load(..., weights_only=True)``; ``trust_pickle`` and
``trust_torchscript`` are the only ways to run code from a file.

Metadata convention (every key optional) that the sample models follow::

    config         dict       constructor kwargs / hyper-parameters of the model; a rebuilt model
                              reads "nonlinearity" (RNN: tanh|relu), "head_on" (how the Linear
                              head is wired: "all" every step, "last" the last step,
                              "final-states" the last layer's h_n, both directions concatenated;
                              without it "all" is assumed and the page says so) and
                              "head_activation" (between the Linears of an nn.Sequential head:
                              none|relu|tanh|sigmoid|gelu|elu|leaky_relu|silu)
    vocab          list[str]  token id -> token (a {token: id} dict is accepted too)
    task           str        "char-lm" | "classification" | "regression"
    input_format   str        "text" | "tokens" | "features"
    sample_input   str text, list[int] token ids, or nested floats (time, features)
    output_labels  list[str]  class id -> label
    description    str        one sentence shown in the report

Sources, later wins: a sidecar JSON next to the checkpoint (``model.pt`` -> ``model.json``); the
keys of a dict checkpoint besides its weights; for safetensors, ``__metadata__["lstmviz"]`` holding
a JSON string of the same keys; for TorchScript, an extra file ``lstmviz.json``. When absent,
``input_format``, ``vocab_size`` and ``input_size`` are inferred from the model (first Embedding ->
tokens; else features of the first recurrent layer's input size) so inputs can be validated. A
text/tokens model without an Embedding whose input size equals len(vocab) reads one-hot rows
(``meta["one_hot"] = True``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstmviz_cli.errors import CheckpointError, LstmvizError, ModelError, UnsafeCheckpointError
from lstmviz_cli.tracedata import ModelInfo, RecurrentConfig

WEIGHT_KEYS = ("model_state_dict", "state_dict", "model")
TASKS = ("char-lm", "classification", "regression")
INPUT_FORMATS = ("text", "tokens", "features")
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ENV_DOWNGRADE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_SCAN_LIMIT = 64 * 1024 * 1024  # bytes of a raw pickle scanned for the globals it needs


@dataclass
class LoadedModel:
    """A ready-to-run model (torch nn.Module in eval mode on `device`) and what we know of it."""

    model: Any  # torch.nn.Module
    info: ModelInfo
    meta: dict[str, Any] = field(default_factory=dict)  # vocab, task, sample_input, config, ...
    device: str = "cpu"
    # The TorchScript module itself (hooks do not fire inside it; `model` is its eager rebuild).
    scripted: Any = None


def load_checkpoint(
    path: str | Path,
    *,
    device: str = "cpu",
    trust_pickle: bool = False,
    trust_torchscript: bool = False,
    model_class: str | None = None,
    model_kwargs: str | None = None,
    head: str | None = None,
    recurrent_only: bool = False,
) -> LoadedModel:
    """Load any supported checkpoint into an eval-mode model on `device`, refusing unsafe files.

    A model rebuilt from a state dict (or from a TorchScript archive's weights) accounts for every
    tensor (`info.accounting`); unplaced modules that may run before the recurrent layers are
    refused unless `recurrent_only` (trace the recurrent layers alone, no head). `head`
    ("all" | "last" | "final-states") wires a rebuilt Linear head, overriding config "head_on".
    Raises CheckpointError / UnsafeCheckpointError / ModelError with one-line messages.
    """
    import torch

    from lstmviz_cli import _sniff

    path = Path(path)
    _require_safe_torch(torch)
    dev = resolve_device(device)
    sniffed = _sniff.sniff_checkpoint(path)
    meta = _read_sidecar(path)
    unsafe = False
    scripted = None
    module = None
    state: dict[str, Any] | None = None

    if sniffed.kind == _sniff.SAFETENSORS:
        fmt = "safetensors"
        state, file_meta = _load_safetensors(path, sniffed.size)
        meta.update(file_meta)
    elif sniffed.kind == _sniff.TORCHSCRIPT:
        if not trust_torchscript:
            raise UnsafeCheckpointError(
                f"{path.name!r} is a TorchScript archive, which is code: loading it would run code from "
                "the file; pass --trust-torchscript if you trust it, or re-save the weights as a "
                "state_dict or safetensors"
            )
        fmt, unsafe = "torchscript", True
        scripted, state, file_meta = _load_torchscript(path, dev)
        meta.update(file_meta)
    else:
        try:
            obj = _torch_load_safe(path, sniffed.kind, dev)
        except UnsafeCheckpointError:
            if not trust_pickle:
                raise
            obj, unsafe = _torch_load_trusted(path, dev), True
        fmt, state, module, file_meta = _unpack(obj, path)
        meta.update(file_meta)

    meta = _check_meta(meta, path)
    if state is not None:
        state = strip_wrapper_prefixes(state)
    rebuilt = False
    plan = None
    if (model_class or module is not None) and (head is not None or recurrent_only):
        flag = "--head" if head is not None else "--recurrent-only"
        whose = "--model-class" if model_class else "the pickled module"
        raise ModelError(
            f"{flag} applies to a model rebuilt from weights; with {whose} your model's own forward runs "
            "(its head and the layers in front of its recurrent layers included)"
        )
    if model_class:
        if state is None:
            state = dict(module.state_dict())
        model = _build_user_model(model_class, model_kwargs, meta, state)
    elif module is not None:
        model = module
    else:
        assert state is not None
        model, plan = _rebuild(state, meta, path, torchscript=scripted is not None, head=head,
                               recurrent_only=recurrent_only)
        rebuilt = True
    model = _place(model, dev, meta)
    _infer_meta(model, meta)
    info = ModelInfo(
        name=path.name,
        path=str(path),
        format=fmt,
        size_bytes=sniffed.size,
        n_params=sum(int(p.numel()) for p in model.parameters()),
        device=dev,
        unsafe=unsafe,
        rebuilt=rebuilt,
        task=meta.get("task") if meta.get("task") in TASKS else None,
        vocab=tuple(meta["vocab"]) if meta.get("vocab") is not None else None,
        output_labels=tuple(meta["output_labels"]) if meta.get("output_labels") is not None else None,
        description=meta.get("description"),
        model_class=model_class,
        **(_plan_facts(plan) if plan is not None else {}),
    )
    return LoadedModel(model=model, info=info, meta=meta, device=dev, scripted=scripted)


# -- safety ----------------------------------------------------------------------------------------
def _require_safe_torch(torch: Any) -> None:
    """torch < 2.6 let an environment variable turn weights_only off: refuse to run on it."""
    match = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if match and (int(match.group(1)), int(match.group(2))) < (2, 6):
        raise CheckpointError(f"lstmviz needs torch >= 2.6 for safe loading; this is torch {torch.__version__}")


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


def _torch_load_safe(path: Path, kind: str, dev: str) -> Any:
    """torch.load with weights_only=True passed explicitly; unsafe files raise UnsafeCheckpointError."""
    import pickle

    import torch

    try:
        with _no_downgrade_env(), _quiet(), open(path, "rb") as handle:
            # A handle, not the name: torch.load would treat a name ending in .safetensors specially.
            return torch.load(handle, map_location=dev, weights_only=True)
    except pickle.UnpicklingError as error:
        needed = unsafe_globals(path, kind)
        reason = str(error).partition("WeightsUnpickler error:")[2].strip() or _first_line(error)
        # A refused global the static scan could not name (e.g. built through the memo) is still
        # unsafe; anything else the weights-only unpickler rejects is a damaged file.
        if needed or "global" in reason.lower():
            raise UnsafeCheckpointError(_unsafe_message(path, needed)) from None
        raise CheckpointError(
            f"cannot read {path.name!r}: corrupted pickle data ({_first_line(ValueError(reason))})"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure inside torch's reader is a bad file
        raise CheckpointError(
            f"cannot read {path.name!r}: the file is corrupted or not a PyTorch checkpoint ({_first_line(error)})"
        ) from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch warns on stderr about pickle protocols and deprecations; the CLI prints one line only."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def unsafe_globals(path: Path, kind: str) -> list[str]:
    """The importable names a pickle needs that weights_only loading does not allow (no code runs)."""
    import torch

    from lstmviz_cli._sniff import TORCH_ZIP, pickle_globals

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
    try:
        from torch import _weights_only_unpickler as wou

        return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())
    except Exception:  # noqa: BLE001 - private API moved: then every global is reported
        return set()


def _unsafe_message(path: Path, needed: list[str]) -> str:
    shown = ", ".join(needed[:6]) + (f" and {len(needed) - 6} more" if len(needed) > 6 else "")
    what = f"needs unsafe globals ({shown})" if needed else "needs objects that weights-only loading refuses"
    return (
        f"{path.name!r} {what}: loading it would run code from the file; pass --trust-pickle only if "
        "you trust it, or re-save it as a state_dict (torch.save(model.state_dict(), ...)) or as safetensors"
    )


def _torch_load_trusted(path: Path, dev: str) -> Any:
    """Full unpickling (the user opted in), with the checkpoint's folder importable."""
    import torch

    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        with _quiet(), open(path, "rb") as handle:
            return torch.load(handle, map_location=dev, weights_only=False)
    except Exception as error:  # noqa: BLE001 - the file's own code failed
        hint = " (put the module that defines the class on PYTHONPATH)" if isinstance(error, ImportError) else ""
        raise CheckpointError(
            f"cannot unpickle {path.name!r}: {type(error).__name__}: {_first_line(error)}{hint}"
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# -- the kinds ---------------------------------------------------------------------------------
def _load_safetensors(path: Path, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    from lstmviz_cli._sniff import validate_safetensors

    header = validate_safetensors(path, size)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as error:  # noqa: BLE001 - the library's own checks
        raise CheckpointError(f"cannot read safetensors file {path.name!r}: {_first_line(error)}") from None
    # Keep the header's order (the library returns its own).
    ordered = {key: state[key] for key in header if key in state}
    meta: dict[str, Any] = {}
    raw = (header.get("__metadata__") or {}).get("lstmviz")
    if raw is not None:
        meta = _parse_json_object(raw, f"{path.name!r} __metadata__['lstmviz']")
    return ordered, meta


def _load_torchscript(path: Path, dev: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    import torch

    extra = {"lstmviz.json": ""}
    try:
        with _quiet():  # jit.load is deprecated, and still the only reader of these archives
            scripted = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"cannot load TorchScript archive {path.name!r}: {_first_line(error)}") from None
    scripted.eval()
    meta = _parse_json_object(extra["lstmviz.json"], f"{path.name!r} lstmviz.json") if extra["lstmviz.json"] else {}
    state = dict(scripted.state_dict())
    return scripted.to(dev), state, meta


def _unpack(obj: Any, path: Path) -> tuple[str, dict[str, Any] | None, Any, dict[str, Any]]:
    """(format, state dict, module, metadata) from whatever torch.load returned."""
    import torch
    from torch import nn

    if isinstance(obj, nn.Module):
        return "pickled-module", None, obj, {}
    if isinstance(obj, torch.Tensor):
        raise CheckpointError(
            f"{path.name!r} holds a single tensor, not a model or state dict (pass input tensors with --input)"
        )
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path.name!r} holds a {type(obj).__name__}, not a model or state dict")
    for key in WEIGHT_KEYS:
        value = obj.get(key)
        if isinstance(value, (Mapping, nn.Module)):
            meta = {k: v for k, v in obj.items() if k != key and isinstance(k, str) and _is_plain(v)}
            if isinstance(value, nn.Module):
                return "dict-checkpoint", None, value, meta
            return "dict-checkpoint", _as_state(value, path), None, meta
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) == len(obj):
        return "state_dict", _as_state(obj, path), None, {}
    if tensors:
        meta = {k: v for k, v in obj.items() if isinstance(k, str) and _is_plain(v)}
        return "dict-checkpoint", _as_state(tensors, path), None, meta
    keys = ", ".join(repr(k) for k in list(obj)[:8])
    raise CheckpointError(
        f"{path.name!r} holds a dict ({keys}) with no weights: expected tensors, or a state dict under "
        "'model_state_dict', 'state_dict' or 'model'"
    )


def _as_state(value: Mapping[Any, Any], path: Path) -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {}
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(
                f"{path.name!r}: state dict entry {key!r} is a {type(tensor).__name__}, not a tensor"
            )
        state[key] = tensor
    if not state:
        raise CheckpointError(f"{path.name!r} holds an empty state dict")
    return state


def _is_plain(value: Any) -> bool:
    """JSON-like metadata (optimizer states and other tensors stay out of `meta`)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, (str, int)) and _is_plain(v) for k, v in value.items())
    return False


def strip_wrapper_prefixes(state: dict[str, Any]) -> dict[str, Any]:
    """Drop `module.` (DataParallel) or `_orig_mod.` (torch.compile) when every key carries it."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix):]: value for key, value in state.items()}
                changed = True
    return state


# -- metadata ----------------------------------------------------------------------------------
def _parse_json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CheckpointError(f"metadata in {where} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"metadata in {where} must be a JSON object")
    return value


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    if sidecar == path or not sidecar.is_file():
        return {}
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read the metadata file {sidecar.name!r}: {error}") from None
    return _parse_json_object(text, repr(sidecar.name))


def _check_meta(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """Normalise the convention's keys; a malformed value is an error naming the key."""
    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"metadata {key!r} of {path.name!r} must be {expected}, got {type(meta[key]).__name__}")

    if meta.get("config") is not None and not isinstance(meta["config"], Mapping):
        raise bad("config", "a dict")
    vocab = meta.get("vocab")
    if vocab is not None:
        if isinstance(vocab, Mapping):  # {token: id}
            ids = sorted(vocab.values()) if all(isinstance(v, int) for v in vocab.values()) else None
            if ids != list(range(len(vocab))):
                raise CheckpointError(f"metadata 'vocab' of {path.name!r} maps tokens to ids that are not 0..{len(vocab) - 1}")
            vocab = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
        if not isinstance(vocab, (list, tuple)):
            raise bad("vocab", "a list of tokens")
        meta["vocab"] = [str(token) for token in vocab]
    if meta.get("input_format") is not None and meta["input_format"] not in INPUT_FORMATS:
        raise CheckpointError(
            f"metadata 'input_format' of {path.name!r} must be one of {', '.join(INPUT_FORMATS)}, got {meta['input_format']!r}"
        )
    labels = meta.get("output_labels")
    if labels is not None:
        if not isinstance(labels, (list, tuple)):
            raise bad("output_labels", "a list of strings")
        meta["output_labels"] = [str(label) for label in labels]
    if meta.get("description") is not None and not isinstance(meta["description"], str):
        raise bad("description", "a string")
    return meta


def _infer_meta(model: Any, meta: dict[str, Any]) -> None:
    """Fill input_format / vocab_size / input_size from the model where the metadata is silent."""
    from torch import nn

    embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
    configs = recurrent_configs(model)
    first = next(iter(configs.values()), None)
    if embedding is not None:
        # The embedding's rows bound valid ids, whatever the metadata claims.
        rows = int(embedding.num_embeddings)
        meta["vocab_size"] = min(int(meta.get("vocab_size") or rows), rows)
        meta.setdefault("input_format", "tokens")
    elif first is not None:
        meta.setdefault("input_format", "features")
        vocab = meta.get("vocab")
        # Text or tokens into a model without an Embedding: one-hot rows, when the widths agree.
        if meta["input_format"] in ("text", "tokens") and vocab and len(vocab) == first.input_size:
            meta["one_hot"] = True
            meta.setdefault("vocab_size", len(vocab))
    if first is not None:
        meta.setdefault("input_size", first.input_size)


def recurrent_configs(model: Any) -> dict[str, RecurrentConfig]:
    """Every nn.LSTM/GRU/RNN and cell of `model` by its name in named_modules(), in order."""
    from torch import nn

    configs: dict[str, RecurrentConfig] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            kind = "LSTM" if isinstance(module, nn.LSTM) else "GRU" if isinstance(module, nn.GRU) else "RNN"
            configs[name] = RecurrentConfig(
                kind=kind,
                input_size=int(module.input_size),
                hidden_size=int(module.hidden_size),
                num_layers=int(module.num_layers),
                bidirectional=bool(module.bidirectional),
                proj_size=int(getattr(module, "proj_size", 0) or 0),
                batch_first=bool(module.batch_first),
                bias=bool(module.bias),
                nonlinearity=str(getattr(module, "nonlinearity", "tanh")),
            )
        elif isinstance(module, (nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
            kind = (
                "LSTMCell" if isinstance(module, nn.LSTMCell) else "GRUCell" if isinstance(module, nn.GRUCell) else "RNNCell"
            )
            configs[name] = RecurrentConfig(
                kind=kind,
                input_size=int(module.input_size),
                hidden_size=int(module.hidden_size),
                bias=bool(module.bias),
                nonlinearity=str(getattr(module, "nonlinearity", "tanh")),
            )
    return configs


# -- building the model ----------------------------------------------------------------------------
def _rebuild(
    state: dict[str, Any], meta: dict[str, Any], path: Path, *, torchscript: bool, head: str | None,
    recurrent_only: bool,
) -> tuple[Any, Any]:
    """The model rebuilt from the state dict, and the plan that says what was placed.

    Refuses (CheckpointError, one line) when unplaced modules may run before the recurrent layers:
    tracing them on the raw sample would show a model that does not exist.
    """
    from lstmviz_cli import _statedict

    config = meta.get("config") or {}
    vocab = meta.get("vocab")
    task = meta.get("task") if meta.get("task") in TASKS else None
    plan = _statedict.plan_rebuild(state, config, len(vocab) if vocab else None, head=head,
                                   recurrent_only=recurrent_only, task=task)
    if plan.front and not recurrent_only:
        raise CheckpointError(front_refusal(path.name, plan, torchscript=torchscript))
    try:
        return _statedict.build_model(state, plan), plan
    except (ValueError, RuntimeError) as error:  # torch's own checks on sizes the plan missed
        raise CheckpointError(f"cannot rebuild {plan.rnn.name!r} from the state dict: {_first_line(error)}") from None


def front_refusal(name: str, plan: Any, *, torchscript: bool = False) -> str:
    """The one line that refuses a rebuild whose recurrent layers would see a made-up input."""
    from lstmviz_cli.provenance import TensorAccounting

    modules = [g.label() for g in plan.front]
    shown = ", ".join(modules[:5]) + (f" and {len(modules) - 5} more" if len(modules) > 5 else "")
    keys = [k for g in plan.front for k in g.keys]
    tensors = TensorAccounting(total=len(keys), unused=tuple(keys)).unused_text(limit=5)
    what = "TorchScript archive" if torchscript else "state dict"
    own = "--model-class with the eager class (file.py:Class)" if torchscript else "--model-class file.py:Class"
    return (
        f"{name!r}: {shown} may run before the recurrent layer {plan.rnn.name!r} and cannot be rebuilt from "
        f"the {what}'s weights ({tensors}), so {plan.rnn.name!r} would not see the input your model gives it; "
        f"pass {own} to run your own model, or --recurrent-only to trace the recurrent layers alone with the "
        "sample as their direct input"
    )


def _plan_facts(plan: Any) -> dict[str, Any]:
    """ModelInfo fields from a rebuild plan: the tensor accounting and the head."""
    from lstmviz_cli.provenance import HeadInfo, TensorAccounting

    head = plan.head
    return {
        "accounting": TensorAccounting(
            total=plan.total, unused=tuple(plan.unused), front=tuple(g.name for g in plan.front)
        ),
        "head": None if head is None else HeadInfo(
            modules=tuple(head.modules), widths=tuple(head.widths), wiring=head.wiring, source=head.source,
            activation=head.activation, bidirectional=plan.rnn.bidirectional,
        ),
        "head_note": plan.head_note,
        "recurrent_only": plan.recurrent_only,
    }


def _place(model: Any, dev: str, meta: dict[str, Any]) -> Any:
    """Eval mode on the device; half precision is upcast on CPU, where its kernels are missing."""
    import torch

    dtypes = {p.dtype for p in model.parameters()}
    if dev == "cpu" and dtypes & {torch.float16, torch.bfloat16}:
        meta["upcast_from"] = str(sorted(dtypes, key=str)[0]).removeprefix("torch.")
        model = model.float()
    try:
        model = model.to(dev)
    except Exception as error:  # noqa: BLE001 - out of GPU memory, driver problems
        raise ModelError(f"cannot move the model to {dev}: {_first_line(error)}") from None
    model.eval()
    return model


def resolve_device(device: str) -> str:
    """"cpu", "cuda[:N]" or "auto" -> a concrete device; asking for a missing GPU is an error."""
    import torch

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


def _import_target(spec: str) -> Any:
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
        raise ModelError(f"--model-class: importing {target!r} failed: {type(error).__name__}: {_first_line(error)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelError(f"--model-class: {target!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
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


def _user_kwargs(cls: Any, model_kwargs: str | None, meta: dict[str, Any]) -> dict[str, Any]:
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


def _build_user_model(spec: str, model_kwargs: str | None, meta: dict[str, Any], state: dict[str, Any]) -> Any:
    import torch
    from torch import nn

    cls = _import_target(spec)
    kwargs = _user_kwargs(cls, model_kwargs, meta)
    try:
        model = cls(**kwargs)
    except Exception as error:  # noqa: BLE001 - the user's constructor
        raise ModelError(f"--model-class: {spec}(**{kwargs}) failed: {type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model-class: {spec} built a {type(model).__name__}, not a torch.nn.Module")
    own = model.state_dict()
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
        raise ModelError(f"the checkpoint does not fit {spec}: {_first_line(error)}") from None
    return model
