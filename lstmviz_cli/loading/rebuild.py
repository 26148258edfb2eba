"""A model rebuilt from a bare state dict: the plan (`loading.rebuildplan`) made real, or refused.

A rebuild whose recurrent layers would see a made-up input (unplaced modules that may run before
them) is refused with one line, unless `--recurrent-only`; what was placed and assumed becomes the
`ModelInfo`'s tensor accounting and head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmviz_cli.errors import CheckpointError, first_line
from lstmviz_cli.loading.metadata import known_task
from lstmviz_cli.loading.rebuildplan import RebuildPlan, plan_rebuild
from lstmviz_cli.loading.records import HeadInfo, Metadata, TensorAccounting


# -- building the model ----------------------------------------------------------------------------
def rebuild_from_state(
    state: dict[str, torch.Tensor], meta: Metadata, path: Path, *, torchscript: bool, head: str | None,
    recurrent_only: bool, ordered: bool = True,
) -> tuple[RebuiltModel, RebuildPlan]:
    """The model rebuilt from the state dict, and the plan that says what was placed.

    Refuses (CheckpointError, one line) when unplaced modules may run before the recurrent layers:
    tracing them on the raw sample would show a model that does not exist.
    """
    config = meta.get("config") or {}
    vocab = meta.get("vocab")
    plan = plan_rebuild(state, config, len(vocab) if vocab else None, head=head,
                                   recurrent_only=recurrent_only, task=known_task(meta), ordered=ordered)
    if plan.front and not recurrent_only:
        raise CheckpointError(front_refusal(path.name, plan, torchscript=torchscript))
    try:
        return build_model(state, plan), plan
    except (ValueError, RuntimeError) as error:  # torch's own checks on sizes the plan missed
        raise CheckpointError(f"cannot rebuild {plan.rnn.name!r} from the state dict: {first_line(error)}") from None


def front_refusal(name: str, plan: RebuildPlan, *, torchscript: bool = False) -> str:
    """The one line that refuses a rebuild whose recurrent layers would see a made-up input."""
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


def plan_facts(plan: RebuildPlan) -> dict[str, Any]:
    """ModelInfo fields from a rebuild plan: the tensor accounting and the head."""
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
        "embedding": plan.embedding,
    }


class RebuiltModel(nn.Module):
    """Embedding (optional) -> recurrent stack (batch_first) -> Linear head (optional).

    Submodules keep the checkpoint's own names (nested prefixes stay nested), so trace keys read
    like the user's model. Without a head the output is the last recurrent layer's output at every
    step (batch, time, width): hidden states, not a prediction.
    """

    def __init__(
        self, rnn_name: str, embedding_name: str | None, head_name: str | list[str] | None,
        head_on: str = "all", head_activation: str | None = None,
    ) -> None:
        super().__init__()
        self.lstmviz_rnn: str = rnn_name
        self.lstmviz_embedding: str | None = embedding_name
        names = [head_name] if isinstance(head_name, str) else list(head_name or [])
        self.lstmviz_head_modules: list[str] = names
        self.lstmviz_head: str | list[str] | None = names[0] if len(names) == 1 else (names or None)
        # "all": the head reads every step; "last": each sequence's last step; "final-states": the
        # last layer's final hidden states (both directions concatenated, as cat(h_n[-2], h_n[-1])).
        self.lstmviz_head_on: str = head_on
        self.lstmviz_head_activation: str | None = head_activation

    # Callers (the tracer) may pass `lengths=` for a padded batch of unequal sequences.
    lstmviz_accepts_lengths = True

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time[, features]) -> head outputs, or per-step RNN outputs without a head.

        With `lengths`, the RNN sees a PackedSequence and "last" reads each sequence's own last step.
        """
        steps = int(x.shape[1])
        if self.lstmviz_embedding is not None:
            x = self.get_submodule(self.lstmviz_embedding)(x)
        rnn = self.get_submodule(self.lstmviz_rnn)
        if lengths is None:
            out, state = rnn(x)
        else:
            lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            packed_out, state = rnn(packed)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
        assert isinstance(out, torch.Tensor)
        if not self.lstmviz_head_modules:
            return out
        if self.lstmviz_head_on == "last":  # each sequence's own last step
            rows = torch.arange(out.shape[0], device=out.device)
            out = out[rows, lengths.to(out.device) - 1] if lengths is not None else out[:, -1]
        elif self.lstmviz_head_on == "final-states":
            h_n = state[0] if isinstance(state, tuple) else state
            out = torch.cat([h_n[-2], h_n[-1]], dim=-1) if rnn.bidirectional else h_n[-1]
        for k, name in enumerate(self.lstmviz_head_modules):
            if k:
                out = _activate(out, self.lstmviz_head_activation)
            out = self.get_submodule(name)(out)
        assert isinstance(out, torch.Tensor)
        return out


def _activate(x: torch.Tensor, name: str | None) -> torch.Tensor:
    """The activation between a head chain's Linears (config 'head_activation', `HEAD_ACTIVATIONS`)."""
    if name in (None, "none"):
        return x
    fn: Callable[[torch.Tensor], torch.Tensor] = (getattr(torch, name) if name in ("tanh", "sigmoid")
                                                  else getattr(functional, str(name)))
    return fn(x)


def build_model(state: Mapping[str, torch.Tensor], plan: RebuildPlan) -> RebuiltModel:
    """Instantiate the planned modules and load their weights (strictly)."""
    spec = plan.rnn
    head = plan.head
    model = RebuiltModel(
        spec.name, plan.embedding, head.modules if head else None, head.wiring if head else "all",
        head.activation if head else None,
    )
    cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[spec.kind]
    kwargs: dict[str, Any] = dict(
        input_size=spec.input_size, hidden_size=spec.hidden_size, num_layers=spec.num_layers,
        bias=spec.bias, batch_first=True, bidirectional=spec.bidirectional,
    )
    if spec.kind == "LSTM":
        kwargs["proj_size"] = spec.proj_size
    if spec.kind == "RNN":
        kwargs["nonlinearity"] = spec.nonlinearity
    # Built in float32 whatever the saved dtype (load_state_dict casts): inputs are float32.
    rnn = cls(**kwargs)
    _load_sub(rnn, state, spec.prefix)
    if plan.embedding is not None:  # registered first, so named_modules() reads in data-flow order
        weight = state[f"{plan.embedding}.weight"]
        embedding = nn.Embedding(int(weight.shape[0]), int(weight.shape[1]))
        _load_sub(embedding, state, plan.embedding)
        _attach(model, plan.embedding, embedding)
    _attach(model, spec.name, rnn)
    for name in head.modules if head else []:
        weight = state[f"{name}.weight"]
        linear = nn.Linear(int(weight.shape[1]), int(weight.shape[0]), bias=f"{name}.bias" in state)
        _load_sub(linear, state, name)
        _attach(model, name, linear)
    return model


def _load_sub(module: nn.Module, state: Mapping[str, torch.Tensor], prefix: str) -> None:
    dot = f"{prefix}." if prefix else ""
    own = set(module.state_dict())
    sub = {k[len(dot):]: v for k, v in state.items() if k.startswith(dot) and k[len(dot):] in own}
    module.load_state_dict(sub, strict=True)


def _attach(root: nn.Module, name: str, module: nn.Module) -> None:
    """Register `module` at a dotted path, creating empty containers for the parents.

    Any name a state dict can hold works (an nn.ModuleDict key such as "rnn-1" is not an
    identifier, and `get_submodule` reaches it all the same); only a name that is already taken
    (another module, or an attribute of nn.Module such as "training") is refused.
    """
    parts = name.split(".")
    parent = root
    try:
        for part in parts[:-1]:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        if parts[-1] in parent._modules:
            raise KeyError(parts[-1])
        parent.add_module(parts[-1], module)
    except KeyError:
        raise CheckpointError(
            f"cannot rebuild module {name!r}: its name clashes with another module or a torch attribute; "
            "pass --model-class module:Class (or file.py:Class) to build your model"
        ) from None
