"""Find the model's weights in whatever torch.load returned: a state dict under any key, one level down.

Training scripts save ``{"epoch": 3, "model_state": sd, "optimizer_state": ..., "loss": ...}``,
``{"net": sd}``, ``{"checkpoint": {"model": sd}}`` or a PyTorch Lightning ``.ckpt`` (``state_dict``
whose keys carry the LightningModule's attribute, ``model.lstm.weight_ih_l0``). A *state dict* is a
mapping of parameter names to tensors holding at least one weight matrix; an optimizer's state
(``{"state": {0: {...}}, "param_groups": [...]}``) is not one. Among the state dicts found, the one
with recurrent weights is taken; when several qualify the user chooses with ``--weights-key``.
Prefixes that wrappers add to every key (DataParallel's ``module.``, torch.compile's ``_orig_mod.``)
are stripped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import torch
from torch import nn

from lstmviz_cli.errors import CheckpointError
from lstmviz_cli.loading.standins import StandIn, is_plain, plain_state
from lstmviz_cli.loading.statedict import find_recurrent_prefixes

# Keys every PyTorch Lightning checkpoint carries beside "state_dict".
_LIGHTNING_KEYS = ("pytorch-lightning_version", "lightning_version")
_LIGHTNING_HINTS = ("hyper_parameters", "optimizer_states", "lr_schedulers", "global_step", "callbacks")
# A loss registered on the model (`self.criterion = nn.CrossEntropyLoss(weight=w)`, common in a
# LightningModule) saves its class weights beside the network's; the forward never reads them.
_LOSS_COMPONENT = re.compile(r"criterion|loss|loss_?fn|loss_?func(tion)?|\w+_(loss|criterion)", re.IGNORECASE)


def is_loss_module(name: str) -> bool:
    """`criterion`, `loss_fn`, `model.ce_loss`: a module name with a component that names a loss."""
    return any(_LOSS_COMPONENT.fullmatch(part) for part in name.split("."))


@dataclass
class Unpacked:
    """The weights (a state dict or a module), where they were, and the metadata beside them."""

    format: str  # "state_dict" | "dict-checkpoint" | "pickled-module"
    state: dict[str, Any] | None
    module: nn.Module | None
    key: str | None = None  # path of the weights in the file ("model_state", "checkpoint/model"); None: the file itself
    meta: dict[str, object] = field(default_factory=dict)  # plain entries beside the weights (`standins.is_plain`)
    lightning: bool = False  # a PyTorch Lightning checkpoint (its keys may carry an attribute prefix)
    # Objects of the user's classes (a trusted pickle: --trust-pickle) whose plain attributes were read
    # as metadata: (where, class), e.g. ("vocab", "vocab_mod.Vocab").
    objects: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Candidate:
    path: tuple[str, ...]  # () for the tensors at the top level of a mixed dict
    state: dict[str, Any] | None
    module: nn.Module | None
    recurrent: bool

    @property
    def key(self) -> str:
        return "/".join(self.path)

    def describe(self) -> str:
        if self.module is not None:
            return f"{self.key!r} (a {type(self.module).__name__} module)"
        where = repr(self.key) if self.path else "the top level"
        return f"{where} ({len(self.state or {})} tensors)"


def unpack(obj: object, name: str, weights_key: str | None = None) -> Unpacked:
    """Find the weights in `obj` (what torch.load returned for the file `name`).

    Raises CheckpointError naming what was found when there are no weights, or several sets of
    weights and no `weights_key` ("model" or "checkpoint/model") to choose between them.
    """
    if isinstance(obj, nn.Module):
        _no_key(weights_key, name, "a whole pickled module")
        return Unpacked("pickled-module", None, obj)
    if isinstance(obj, torch.Tensor):
        raise CheckpointError(
            f"{name!r} holds a single tensor, not a model or state dict (pass input tensors with --input)"
        )
    if isinstance(obj, StandIn):
        raise CheckpointError(f"{name!r} holds a {type(obj).lstmviz_global} object, not a model or state dict")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name!r} holds a {type(obj).__name__}, not a model or state dict")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        _no_key(weights_key, name, "a bare state dict")
        return Unpacked("state_dict", _as_state(obj, name), None)

    candidate = _choose(_candidates(obj), obj, name, weights_key)
    lightning = any(key in obj for key in _LIGHTNING_KEYS) or (
        "state_dict" in obj and sum(key in obj for key in _LIGHTNING_HINTS) >= 2
    )
    objects: list[tuple[str, str]] = []
    meta = _meta_beside(obj, candidate.path, objects)
    if lightning and meta.get("config") is None and isinstance(obj.get("hyper_parameters"), Mapping):
        # Lightning's save_hyperparameters(): the constructor arguments, as a saved `config` is.
        meta["config"] = {k: v for k, v in obj["hyper_parameters"].items() if isinstance(k, str) and is_plain(v)}
    return Unpacked(
        "dict-checkpoint", candidate.state, candidate.module, key=candidate.key or None, meta=meta,
        lightning=lightning, objects=objects,
    )


def _no_key(weights_key: str | None, name: str, what: str) -> None:
    if weights_key is not None:
        raise CheckpointError(f"--weights-key {weights_key!r}: {name!r} is {what}, not a dict of several entries")


def _candidates(obj: Mapping[object, object]) -> list[_Candidate]:
    """State dicts and modules at the top level and one level down, in the file's order."""
    found: list[_Candidate] = []
    top = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if _is_state_dict(top):
        found.append(_make((), top))
    for key, value in obj.items():
        if not isinstance(key, str):
            continue
        candidate = _as_candidate((key,), value)
        if candidate is not None:
            found.append(candidate)
        elif isinstance(value, Mapping):
            for inner_key, inner in value.items():
                if isinstance(inner_key, str) and (candidate := _as_candidate((key, inner_key), inner)) is not None:
                    found.append(candidate)
    return found


def _as_candidate(path: tuple[str, ...], value: object) -> _Candidate | None:
    if isinstance(value, nn.Module):
        recurrent = any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in value.modules())
        return _Candidate(path, None, value, recurrent)
    if _is_state_dict(value):
        return _make(path, value)
    return None


def _make(path: tuple[str, ...], value: Mapping[str, torch.Tensor]) -> _Candidate:
    state = dict(value)
    return _Candidate(path, state, None, bool(find_recurrent_prefixes(state)))


def _is_state_dict(value: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    """Parameter names -> tensors, with at least one floating-point weight matrix."""
    if not isinstance(value, Mapping) or not value:
        return False
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        return False
    return any(v.is_floating_point() and v.dim() >= 2 for v in value.values())


def _choose(found: list[_Candidate], obj: Mapping[object, object], name: str, weights_key: str | None) -> _Candidate:
    listing = ", ".join(c.describe() for c in found)
    if weights_key is not None:
        chosen = [c for c in found if c.key == weights_key]
        if not chosen:
            where = f"state dicts found: {listing}" if found else "it holds no state dict"
            raise CheckpointError(f"--weights-key {weights_key!r} is not a state dict in {name!r} ({where})")
        return chosen[0]
    recurrent = [c for c in found if c.recurrent]
    pool = recurrent or found
    if len(pool) > 1:
        what = "sets of recurrent weights" if recurrent else "state dicts"
        shown = ", ".join(c.describe() for c in pool)
        raise CheckpointError(
            f"{name!r} holds {len(pool)} {what}: {shown}; choose one with --weights-key, e.g. "
            f"--weights-key {pool[0].key}"
        )
    if not pool:
        keys = ", ".join(repr(k) for k in list(obj)[:8]) + (", ..." if len(obj) > 8 else "")
        optimizers = [repr(k) for k, v in obj.items() if _is_optimizer_state(v)]
        hint = f"; {', '.join(optimizers)} is an optimizer's state, not the model's" if optimizers else ""
        raise CheckpointError(
            f"{name!r} holds a dict ({keys}) with no weights: no mapping of parameter names to tensors at its "
            f"top level or one level down{hint}"
        )
    return pool[0]


def _is_optimizer_state(value: object) -> bool:
    return isinstance(value, Mapping) and "state" in value and "param_groups" in value


def _meta_beside(obj: Mapping[object, object], path: tuple[str, ...], objects: list[tuple[str, str]]) -> dict[str, object]:
    """Plain metadata beside the weights: the top level's, then (nested weights) their container's."""
    meta = _plain_items(obj, skip=path[0] if path else None, where="", objects=objects)
    if len(path) == 2:
        container = obj[path[0]]
        assert isinstance(container, Mapping)
        meta.update(_plain_items(container, skip=path[1], where=f"{path[0]}/", objects=objects))
    return meta


def _plain_items(container: Mapping[object, object], skip: str | None, where: str,
                 objects: list[tuple[str, str]]) -> dict[str, object]:
    """JSON-like entries; an object opened as plain data (a stand-in) contributes its plain state.

    So does an object of the user's own class from a trusted pickle (a torchtext-style `Vocab` with
    `itos` and a `stoi` defaultdict): its instance attributes that are plain data, listed in `objects`.
    """
    items: dict[str, object] = {}
    for key, value in container.items():
        if not isinstance(key, str) or key == skip or isinstance(value, (torch.Tensor, nn.Module)):
            continue
        if isinstance(value, StandIn):
            state = plain_state(value)
            if state is not None:
                items[key] = state
        elif is_plain(value):
            items[key] = value
        elif isinstance(getattr(value, "__dict__", None), dict):
            attributes = {k: v for k, v in vars(value).items() if isinstance(k, str) and is_plain(v)}
            if attributes:
                items[key] = attributes
                cls = type(value)
                objects.append((f"{where}{key}", f"{cls.__module__}.{cls.__qualname__}"))
    return items


def strip_attribute_prefix(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Drop a LightningModule's attribute (`model.`, `net.`) when every key carries the same one.

    For a rebuild from weights, where no class says what the keys should be. A loss's weights
    registered on the LightningModule itself (`criterion.weight`) do not count against the prefix
    and stay as they are (listed as not used). Kept when it is the recurrent module's own name
    (`lstm.weight_ih_l0`): then nothing wraps the network.
    """
    network = [key for key in state if not is_loss_module(key.split(".", 1)[0])]
    firsts = {key.split(".", 1)[0] for key in network}
    if len(firsts) != 1 or not all("." in key for key in network):
        return state, None
    prefix = f"{next(iter(firsts))}."
    if not all("." in key[len(prefix):] for key in network):
        return state, None
    stripped = {(key[len(prefix):] if key in network else key): value for key, value in state.items()}
    return stripped, prefix


def align_to_class(state: dict[str, torch.Tensor], own: list[str]) -> tuple[dict[str, torch.Tensor], str | None, list[str]]:
    """Key `state` as a class's own state_dict() keys `own`: (state, prefix removed, keys left out).

    Unchanged when the keys already match. Otherwise the first attribute prefix (one or two dotted
    components, e.g. `model.` of a LightningModule or `model.net.`) under which the keys are exactly
    the class's is removed, and the tensors outside it are listed. No match: unchanged, so the
    caller reports the missing and unexpected keys.
    """
    wanted = set(own)
    if set(state) == wanted:
        return state, None, []
    prefixes: list[str] = []
    for key in state:
        parts = key.split(".")
        for depth in (1, 2):
            if len(parts) > depth and (prefix := ".".join(parts[:depth]) + ".") not in prefixes:
                prefixes.append(prefix)
    for prefix in prefixes:
        inner = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if set(inner) == wanted:
            return inner, prefix, [key for key in state if not key.startswith(prefix)]
    return state, None, []


def _as_state(value: Mapping[object, object], name: str) -> dict[str, torch.Tensor]:
    state: dict[str, Any] = {}
    for key, tensor in value.items():
        if not isinstance(key, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{name!r}: state dict entry {key!r} is a {type(tensor).__name__}, not a tensor")
        state[key] = tensor
    return state


# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def strip_wrapper_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop `module.` (DataParallel) or `_orig_mod.` (torch.compile) when every key carries it."""
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in state):
                state = {key[len(prefix):]: value for key, value in state.items()}
                changed = True
    return state
