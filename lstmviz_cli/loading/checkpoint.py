"""Sniff and load a checkpoint safely; rebuild recurrent layers from a bare state dict.

Kinds are told apart by their bytes, not the extension: a torch zip (``data.pkl`` inside), a
TorchScript zip (``code/`` or ``constants.pkl`` inside), a legacy raw pickle, or safetensors.
Pickles are only ever read with ``torch.load(..., weights_only=True)``; plain objects of classes
that cannot be imported are opened as inert stand-ins (``_unpickle``); ``trust_pickle`` and
``trust_torchscript`` are the only ways to run code from a file. The state dict is found under any
key of a dict checkpoint, one level down, or in a Lightning ``.ckpt`` (``_findweights``).

Metadata convention (every key optional) that the sample models follow::

    config         dict       constructor kwargs / hyper-parameters of the model; a rebuilt model
                              reads "nonlinearity" (RNN: tanh|relu), "head_on" (how the Linear
                              head is wired: "all" every step, "last" the last step,
                              "final-states" the last layer's h_n, both directions concatenated;
                              without it "all" is assumed and the page says so) and
                              "head_activation" (between the Linears of an nn.Sequential head:
                              none|relu|tanh|sigmoid|gelu|elu|leaky_relu|silu)
    vocab          list[str]  token id -> token (a {token: id} dict is accepted too; without it,
                              itos / char_to_int / word2idx / chars ... are found, see ``_vocab``)
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
from pathlib import Path
from typing import Any

from lstmviz_cli.errors import CheckpointError, LstmvizError, ModelError, UnsafeCheckpointError
from lstmviz_cli.loading.records import LoadedModel, ModelInfo, RecurrentConfig

TASKS = ("char-lm", "classification", "regression")
INPUT_FORMATS = ("text", "tokens", "features")
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_ENV_DOWNGRADE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_SCAN_LIMIT = 64 * 1024 * 1024  # bytes of a raw pickle scanned for the globals it needs


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
    import torch

    from lstmviz_cli.loading import findweights as _findweights
    from lstmviz_cli.loading import sniff as _sniff

    path = Path(path)
    _require_safe_torch(torch)
    dev = resolve_device(device)
    sniffed = _sniff.sniff_checkpoint(path)
    meta = _read_sidecar(path)
    unsafe = False
    scripted = None
    module = None
    state: dict[str, Any] | None = None
    skipped: list[Any] = []
    user_class = _UserClass(model_class)
    unpacked = None

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
            obj, skipped = _torch_load_safe(path, sniffed.kind, dev)
        except UnsafeCheckpointError:
            if not trust_pickle:
                raise
            main = _main_classes(path, sniffed.kind, user_class)
            obj, unsafe = _torch_load_trusted(path, dev, main), True
        unpacked = _findweights.unpack(obj, path.name, weights_key)
        fmt, state, module = unpacked.format, unpacked.state, unpacked.module
        meta.update(unpacked.meta)
    if weights_key is not None and unpacked is None:
        raise CheckpointError(f"--weights-key {weights_key!r}: {path.name!r} is a {fmt} file, not a dict checkpoint")

    meta, vocab_found = _check_meta(meta, path)
    if state is not None:
        state = strip_wrapper_prefixes(state)
    stored = _stored_dtypes(state if state is not None else dict(module.state_dict()))
    prefix: str | None = None
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
        cls = user_class.get()
        if module is not None and isinstance(module, cls):
            model = module  # unpickled as the user's own class (torch.save(model) from a script)
        else:
            if state is None:
                state = dict(module.state_dict())
            model, prefix = _build_user_model(cls, model_class, model_kwargs, meta, state)
    elif module is not None:
        model = module
    else:
        assert state is not None
        if unpacked is not None and unpacked.lightning:
            state, prefix = _findweights.strip_attribute_prefix(state)
            state = strip_wrapper_prefixes(state)  # model._orig_mod.lstm: compiled inside the LightningModule
        model, plan = _rebuild(state, meta, path, torchscript=scripted is not None, head=head,
                               recurrent_only=recurrent_only)
        rebuilt = True
    model = _place(model, dev, meta)
    _infer_meta(model, meta)
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
        task=meta.get("task") if meta.get("task") in TASKS else None,
        vocab=tuple(meta["vocab"]) if meta.get("vocab") is not None else None,
        output_labels=tuple(meta["output_labels"]) if meta.get("output_labels") is not None else None,
        description=meta.get("description"),
        weights_key=unpacked.key if unpacked is not None else None,
        key_prefix=prefix,
        lightning=bool(unpacked is not None and unpacked.lightning),
        stored_dtype=stored,
        run_dtype=runs_in,
        skipped=tuple((item.path, item.cls) for item in skipped),
        vocab_source=vocab_found.vocab.source if vocab_found.vocab is not None else None,
        labels_source=vocab_found.labels[1] if vocab_found.labels is not None else None,
        load_notes=tuple(vocab_found.notes),
        model_class=model_class,
        **(_plan_facts(plan) if plan is not None else {}),
    )
    return LoadedModel(model=model, info=info, meta=meta, device=dev, scripted=scripted)


class _UserClass:
    """--model-class, imported once and only when needed (importing it runs the user's module)."""

    def __init__(self, spec: str | None) -> None:
        self.spec = spec
        self._cls: Any = None

    def get(self) -> Any:
        assert self.spec is not None
        if self._cls is None:
            self._cls = _import_target(self.spec)
        return self._cls


def _stored_dtypes(state: Mapping[str, Any]) -> str | None:
    """The floating dtypes the weights were saved in, e.g. "float16" or "bfloat16/float32"."""
    import torch

    names = sorted({
        str(t.dtype).removeprefix("torch.") for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()
    })
    return "/".join(names) or None


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


def _torch_load_safe(path: Path, kind: str, dev: str) -> tuple[Any, list[Any]]:
    """torch.load with weights_only=True passed explicitly; unsafe files raise UnsafeCheckpointError.

    A file that needs only plain classes lstmviz cannot import (a user's Vocab beside the weights)
    is opened again with those classes as inert stand-ins (`_unpickle`); the objects skipped so are
    returned beside the loaded object.
    """
    import pickle

    from lstmviz_cli.loading import standins as _unpickle

    try:
        return _weights_only_load(path, dev), []
    except pickle.UnpicklingError as error:
        needed = unsafe_globals(path, kind)
        reason = str(error).partition("WeightsUnpickler error:")[2].strip() or _first_line(error)
        standins = _unpickle.standins_for(needed) if needed else None
        if standins is not None:
            obj = _load_with_standins(path, dev, standins, needed)
            return obj, _unpickle.find_standins(obj)
        # A refused global the static scan could not name (e.g. built through the memo) is still
        # unsafe; anything else the weights-only unpickler rejects is a damaged file.
        if needed or "global" in reason.lower():
            raise UnsafeCheckpointError(_unsafe_message(path, needed)) from None
        raise CheckpointError(
            f"cannot read {path.name!r}: corrupted pickle data ({_first_line(ValueError(reason))})"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure inside torch's reader is a bad file
        raise _corrupted(path, error) from None


def _weights_only_load(path: Path, dev: str) -> Any:
    import torch

    with _no_downgrade_env(), _quiet(), open(path, "rb") as handle:
        # A handle, not the name: torch.load would treat a name ending in .safetensors specially.
        return torch.load(handle, map_location=dev, weights_only=True)


def _load_with_standins(path: Path, dev: str, standins: dict[str, type], needed: list[str]) -> Any:
    """The weights-only unpickler again, with each needed global mapped to its inert stand-in."""
    import pickle

    import torch

    from lstmviz_cli.loading.standins import StandInRefused

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
        f"cannot read {path.name!r}: the file is corrupted or not a PyTorch checkpoint ({_first_line(error)})"
    )


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

    from lstmviz_cli.loading.sniff import TORCH_ZIP, pickle_globals

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


def _main_classes(path: Path, kind: str, user_class: _UserClass) -> dict[str, Any]:
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


def _torch_load_trusted(path: Path, dev: str, main: Mapping[str, Any] | None = None) -> Any:
    """Full unpickling (the user opted in), with the checkpoint's folder importable.

    `main`: the user's classes that stand for `__main__.Name` (the file was saved from a script).
    """
    import torch

    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    extra = {"pickle_module": _main_pickle_module(main)} if main else {}
    try:
        with _quiet(), open(path, "rb") as handle:
            return torch.load(handle, map_location=dev, weights_only=False, **extra)
    except Exception as error:  # noqa: BLE001 - the file's own code failed
        if isinstance(error, AttributeError) and "__main__" in str(error):
            raise CheckpointError(
                f"cannot unpickle {path.name!r}: it was saved from a script and needs a class of that script "
                "(__main__); pass --model-class path/to/the_script.py:Class with --trust-pickle"
            ) from None
        hint = " (put the module that defines the class on PYTHONPATH)" if isinstance(error, ImportError) else ""
        raise CheckpointError(
            f"cannot unpickle {path.name!r}: {type(error).__name__}: {_first_line(error)}{hint}"
        ) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def _main_pickle_module(main: Mapping[str, Any]) -> Any:
    """A pickle module for torch.load whose Unpickler resolves `__main__.Name` to main[Name]."""
    import pickle
    import types

    class MainUnpickler(pickle.Unpickler):
        def find_class(self, module_name: str, name: str) -> Any:
            if module_name == "__main__" and name in main:
                return main[name]
            return super().find_class(module_name, name)

    module = types.ModuleType("lstmviz_main_pickle")
    module.Unpickler = MainUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: MainUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    return module


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# -- the kinds ---------------------------------------------------------------------------------
def _load_safetensors(path: Path, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors.torch import load_file

    from lstmviz_cli.loading.sniff import validate_safetensors

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


def _check_meta(meta: dict[str, Any], path: Path) -> tuple[dict[str, Any], Any]:
    """Normalise the convention's keys; a malformed value is an error naming the key.

    Also returns what `_vocab` found under other names (a `_vocab.Found`: used sources and notes).
    """
    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"metadata {key!r} of {path.name!r} must be {expected}, got {type(meta[key]).__name__}")

    if meta.get("config") is not None and not isinstance(meta["config"], Mapping):
        raise bad("config", "a dict")
    found = _resolve_vocabularies(meta, path)
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
    return meta, found


def _resolve_vocabularies(meta: dict[str, Any], path: Path) -> Any:
    """`vocab` as a token list, from the convention's key or the names people use (see `_vocab`).

    An explicit `vocab` list or {token: id} dict is used as given (ids must be 0..n-1). Otherwise
    `itos`, `char_to_int`, `word2idx`, ... are searched, also inside a `vocab` dict or object; output
    labels likewise when `output_labels` is absent. A character vocabulary makes the input format
    "text". Returns the `_vocab.Found` whose vocab/labels were used (None fields otherwise) and notes.
    """
    from lstmviz_cli.loading import vocab as _vocab

    vocab = meta.get("vocab")
    explicit: list[str] | None = None
    if isinstance(vocab, (list, tuple)):
        explicit = [str(token) for token in vocab]
    elif isinstance(vocab, Mapping) and vocab and all(isinstance(v, int) for v in vocab.values()):  # {token: id}
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise CheckpointError(f"metadata 'vocab' of {path.name!r} maps tokens to ids that are not 0..{len(vocab) - 1}")
        explicit = [str(token) for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    elif vocab is not None and not isinstance(vocab, Mapping):
        raise CheckpointError(f"metadata 'vocab' of {path.name!r} must be a list of tokens, got {type(vocab).__name__}")
    roles = tuple(role for role, given in (("input", explicit), ("output", meta.get("output_labels"))) if given is None)
    found = _vocab.find_vocabularies(meta, roles)
    if explicit is not None:
        meta["vocab"] = explicit
        level: str | None = _vocab.vocabulary_level(explicit)
    elif found.vocab is not None:
        meta["vocab"] = list(found.vocab.tokens)
        level = found.vocab.level
    else:
        if vocab is not None:  # a dict or object under "vocab" without a token list lstmviz knows
            found.notes.append("'vocab' holds no token list lstmviz recognises (itos, stoi, ...); it was not used")
        meta.pop("vocab", None)
        level = None
    if level is not None:
        meta["vocab_level"] = level
        if level == "char" and meta.get("input_format") is None:
            meta["input_format"] = "text"
    if found.labels is not None:
        meta["output_labels"] = list(found.labels[0])
    return found


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
    from lstmviz_cli.loading import statedict as _statedict

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
    from lstmviz_cli.loading.records import TensorAccounting

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
    from lstmviz_cli.loading.records import HeadInfo, TensorAccounting

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


def _build_user_model(
    cls: Any, spec: str, model_kwargs: str | None, meta: dict[str, Any], state: dict[str, Any]
) -> tuple[Any, str | None]:
    """The user's class built with its kwargs and loaded strictly; (model, attribute prefix removed).

    Keys carrying an attribute prefix the class does not have (a LightningModule's `model.`) are
    matched to the class's own state_dict() keys; tensors outside that prefix go to
    meta["ignored_keys"].
    """
    import torch
    from torch import nn

    from lstmviz_cli.loading.findweights import align_to_class

    kwargs = _user_kwargs(cls, model_kwargs, meta)
    try:
        model = cls(**kwargs)
    except Exception as error:  # noqa: BLE001 - the user's constructor
        raise ModelError(f"--model-class: {spec}(**{kwargs}) failed: {type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model-class: {spec} built a {type(model).__name__}, not a torch.nn.Module")
    own = model.state_dict()
    state, prefix, leftover = align_to_class(state, list(own))
    if leftover:
        meta["ignored_keys"] = leftover
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
    return model, prefix
