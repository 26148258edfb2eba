"""Record the sigmoid/tanh calls of hand-written modules while the model runs, grouped into series per call site.

A `TorchFunctionMode` sees every activation call and files its result under the innermost user-written
module that is running and the call site in the user's source (`tracing.cellsource`); calls from one site
across time steps form one `SiteSeries`, named after the variable the user assigns it to.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from lstmviz_cli.loading.modules import RECURRENT_TYPES
from lstmviz_cli.tracing import cellsource
from lstmviz_cli.tracing.cellsource import Site

_KINDS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "special_expit": "sigmoid", "expit": "sigmoid",
          "tanh": "tanh", "tanh_": "tanh"}


_RECENT = 8  # ops remembered for what made a tanh's argument



@dataclass
class SiteSeries:
    """Every result of one activation call site, stacked along time."""

    site: Site
    name: str  # the user's variable, or the stable fallback `sigmoid@file.py:42`
    values: np.ndarray  # (batch, time, units) float32
    inputs: np.ndarray | None = None  # the tanh's argument (the cell state, for h = o*tanh(c))
    part: int | None = None  # index when one call computed several gates at once (then split)
    # When the tanh's argument was made by one op from another tensor (h = o*tanh(layer_norm(c))):
    # that op's name and its first argument, stacked (candidates for the cell state).
    pre_op: str | None = None
    pre_inputs: np.ndarray | None = None


@dataclass
class Event:
    module: str
    site: Site | None
    value: torch.Tensor
    arg: torch.Tensor | None
    pre: tuple[str, torch.Tensor] | None = None  # (op, its first argument) that made `arg`, if recent


@dataclass
class _Recorder:
    user: dict[str, bool]  # module name -> written outside torch (a place user activations live)
    stack: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    calls: dict[str, list[tuple[list[torch.Tensor], list[torch.Tensor]]]] = field(default_factory=dict)
    pending: dict[str, list[list[torch.Tensor]]] = field(default_factory=dict)

    def owner(self) -> str | None:
        for name in reversed(self.stack):
            if self.user[name]:
                return name
        return None


def tensors_in(value: object) -> list[torch.Tensor]:
    """Every tensor in a (nested) output, in order: the returned h, c, sequences."""
    if isinstance(value, torch.Tensor):
        return [value.detach().clone()]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in tensors_in(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in tensors_in(item)]
    return []


class _ActivationMode(TorchFunctionMode):
    """Sees every torch function call while active; keeps the results of sigmoid/tanh calls."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder
        # The last few other ops' (result, name, first argument): what made a tanh's argument, when the
        # cell state passes through one op first (h = o * tanh(layer_norm(c))).
        self.recent: deque[tuple[torch.Tensor, str, torch.Tensor]] = deque(maxlen=_RECENT)

    def __torch_function__(self, func: Callable[..., object], types: object, args: Sequence[object] = (),
                           kwargs: Mapping[str, object] | None = None) -> object:
        name = getattr(func, "__name__", "")  # a torch function or method
        kind = _KINDS.get(name)
        owner = self.recorder.owner()
        arg = args[0] if args and isinstance(args[0], torch.Tensor) else None
        kept = arg.detach().clone() if owner is not None and kind == "tanh" and arg is not None else None
        pre = None
        if kept is not None:
            made = next(((op, source) for result, op, source in self.recent if result is arg), None)
            pre = None if made is None else (made[0], made[1].detach().clone())
        result = func(*args, **(kwargs or {}))
        if owner is not None and kind and isinstance(result, torch.Tensor):
            self.recorder.events.append(
                Event(owner, cellsource.user_site(kind), result.detach().clone(), kept, pre))
        elif owner is not None and arg is not None and isinstance(result, torch.Tensor) and result is not arg:
            self.recent.append((result, name, arg))
        return result


def display_name(raw: str, module: nn.Module) -> str:
    return raw or type(module).__name__


@contextmanager
def recording(model: nn.Module) -> Iterator[_Recorder]:
    """Hook every module (handles removed in `finally`) and activate the activation mode."""
    modules = {display_name(raw, m): m for raw, m in model.named_modules()}
    recorder = _Recorder(user={
        name: not type(m).__module__.startswith("torch.") and not isinstance(m, RECURRENT_TYPES)
        for name, m in modules.items()
    })
    handles: list[RemovableHandle] = []

    def pre(name: str) -> Callable[[nn.Module, tuple[object, ...], dict[str, object]], None]:
        def hook(module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
            recorder.stack.append(name)
            # Only the first call's arguments are read (input width, the initial state).
            if not recorder.calls.get(name) and not recorder.pending.get(name):
                recorder.pending.setdefault(name, []).append(tensors_in((args, kwargs)))
            else:
                recorder.pending.setdefault(name, []).append([])
        return hook

    def post(name: str) -> Callable[[nn.Module, tuple[object, ...], dict[str, object], object], None]:
        def hook(module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], output: object) -> None:
            recorder.stack.pop()
            call_args = recorder.pending[name].pop()
            recorder.calls.setdefault(name, []).append((call_args, tensors_in(output)))
        return hook

    def enter(name: str) -> Callable[[nn.Module, tuple[object, ...]], None]:  # stock modules only mark where we are
        def hook(module: nn.Module, args: tuple[object, ...]) -> None:
            recorder.stack.append(name)
        return hook

    def leave(name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(module: nn.Module, args: tuple[object, ...], output: object) -> None:
            recorder.stack.pop()
        return hook

    try:
        for name, module in modules.items():
            if recorder.user[name]:
                handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
                handles.append(module.register_forward_hook(post(name), with_kwargs=True))
            else:
                handles.append(module.register_forward_pre_hook(enter(name)))
                handles.append(module.register_forward_hook(leave(name)))
        with _ActivationMode(recorder):
            yield recorder
    finally:
        for handle in handles:
            handle.remove()


def _as_rows(t: torch.Tensor) -> torch.Tensor | None:
    """(batch, units) for one step; an unbatched (units,) becomes (1, units); others are not steps."""
    if t.dim() == 1:
        return t.unsqueeze(0)
    return t if t.dim() == 2 else None


SiteKey = tuple[str, int, int | None, str] | tuple[str]


def _site_key(site: Site | None) -> SiteKey:
    return ("?",) if site is None else (site.filename, site.lineno, site.col, site.kind)


def _stacked_rows(tensors: list[torch.Tensor]) -> np.ndarray | None:
    """One (batch, units) row per call stacked along time: (batch, time, units) float32, or None when
    a call is not one step or the shapes differ."""
    rows = [_as_rows(t) for t in tensors]
    kept = [r for r in rows if r is not None]
    if len(kept) != len(rows) or len({r.shape for r in kept}) != 1:
        return None
    return torch.stack(kept, dim=1).float().cpu().numpy()


def group_sites(events: list[Event]) -> tuple[list[SiteSeries], list[str]]:
    """Series per call site with the most common step count; other sites are noted and left out."""
    by_site: dict[SiteKey, list[Event]] = {}
    for event in events:
        by_site.setdefault(_site_key(event.site), []).append(event)
    notes: list[str] = []
    counts = Counter(len(v) for v in by_site.values() if len(v) >= 2)
    if not counts:
        return [], notes
    steps = max(counts, key=lambda n: (counts[n], n))
    series: list[SiteSeries] = []
    for group in by_site.values():
        site = group[0].site
        where = site.where if site else "?"
        values = _stacked_rows([e.value for e in group]) if len(group) == steps else None
        if values is None:
            notes.append(f"left out {where}: {len(group)} calls, not {steps} steps of one shape")
            continue
        args = [e.arg for e in group if e.arg is not None and e.arg.shape == e.value.shape]
        inputs = _stacked_rows(args) if len(args) == len(group) else None
        pre_op, pre_inputs = None, None
        first_pre = group[0].pre
        made = [e.pre[1] for e in group if e.pre is not None and first_pre is not None and e.pre[0] == first_pre[0]
                and e.pre[1].shape == e.value.shape]
        if first_pre is not None and len(made) == len(group):
            pre_op, pre_inputs = first_pre[0], _stacked_rows(made)
        series.append(SiteSeries(site=site or Site("?", 0, None, None, None, "?", "sigmoid"),
                                 name="", values=values, inputs=inputs, pre_op=pre_op, pre_inputs=pre_inputs))
    _name_sites(series)
    return series, notes


def _name_sites(series: list[SiteSeries]) -> None:
    per_line = Counter((s.site.filename, s.site.lineno) for s in series)
    for s in series:
        s.name = cellsource.source_name(s.site) or cellsource.fallback_name(
            s.site, with_col=per_line[(s.site.filename, s.site.lineno)] > 1)
    taken = Counter(s.name for s in series)
    for s in series:  # the same variable assigned on two lines: say which line
        if taken[s.name] > 1 and "@" not in s.name:
            s.name = f"{s.name}@{s.site.where}"
    taken = Counter(s.name for s in series)
    for s in series:  # still the same (one line, no column information): number them in call order
        if taken[s.name] > 1:
            same = [t for t in series if t.name == s.name]
            for k, t in enumerate(same):
                t.name = f"{t.name}#{k}"


def split_fused(series: list[SiteSeries], hidden: int) -> list[SiteSeries]:
    """A sigmoid over k*hidden units (three gates in one call) becomes k sites of `hidden` units."""
    out: list[SiteSeries] = []
    for s in series:
        width = s.values.shape[2]
        if s.site.kind == "sigmoid" and width > hidden and width % hidden == 0:
            for k in range(width // hidden):
                part = s.values[:, :, k * hidden:(k + 1) * hidden]
                out.append(SiteSeries(s.site, f"{s.name}[{k}]", part, None, k))
        else:
            out.append(s)
    return out
