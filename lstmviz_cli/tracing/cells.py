"""Gates of hand-written recurrent cells, recorded from their own sigmoid/tanh calls: no code changes.

While the model runs, a `TorchFunctionMode` sees every `torch.sigmoid`, `torch.tanh`, `Tensor.sigmoid`,
`F.sigmoid`, `nn.Sigmoid()`, `torch.special.expit` (and in-place variants) and files each result under
the innermost user-written module that is running and the call site in the user's source. Calls from
one site across time steps form one series, named after the variable the user assigns it to.

A module whose sites repeat (a cell called once per step, or a layer that loops inside) is then
matched to a structure by its arithmetic, not by its names: an LSTM when three sigmoids and a
candidate tanh satisfy c_t = f*c_{t-1} + i*g and h = o*tanh(c) reproduces what the module returned;
a GRU when h_t = z*h_{t-1} + (1-z)*n (either convention) does. Names only break ties and label the
series. The result is the same `LayerTrace` contract as stock layers.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lstmviz_cli.errors import ModelError, VerificationError
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing import cellsource as _cellsource
from lstmviz_cli.tracing.cellsource import Site
from lstmviz_cli.tracing.records import SERIES, LayerTrace, Trace

VERIFY_TOLERANCE = 1e-4  # the stock tracer's tolerance: max |recorded - returned|

_KINDS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "special_expit": "sigmoid", "expit": "sigmoid",
          "tanh": "tanh", "tanh_": "tanh"}
_STOCK = (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell)


# -- what a recorded module looks like -----------------------------------------------------------


@dataclass
class SiteSeries:
    """Every result of one activation call site, stacked along time."""

    site: Site
    name: str  # the user's variable, or the stable fallback `sigmoid@file.py:42`
    values: np.ndarray  # (batch, time, units) float32
    inputs: np.ndarray | None = None  # the tanh's argument (the cell state, for h = o*tanh(c))
    part: int | None = None  # index when one call computed several gates at once (then split)


@dataclass
class CustomCell:
    """One opened-up module: its sites, what structure they form, and the LayerTrace built from it."""

    module: str
    class_name: str
    style: str  # "cell" (called once per step) | "loop" (loops over time inside one call)
    family: str | None  # "lstm" | "gru" | None when no structure was recognised
    sites: list[SiteSeries]
    names: dict[str, str] = field(default_factory=dict)  # standard series -> user's name
    where: dict[str, str] = field(default_factory=dict)  # standard series -> "file.py:42"
    mapping: str = "structure"  # "structure" (proved by the arithmetic) | "names" | "none"
    verify_error: float | None = None
    # What verify_error measures, in words (the page's verification level for this cell).
    check: str = ""
    layer: LayerTrace | None = None
    notes: list[str] = field(default_factory=list)

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready description for Trace.meta["custom_cells"]."""
        return {
            "class": self.class_name, "style": self.style, "family": self.family, "names": self.names,
            "where": self.where, "mapping": self.mapping, "verify_error": self.verify_error, "check": self.check,
            "sites": [{"name": s.name, "where": s.site.where, "kind": s.site.kind,
                       "shape": list(s.values.shape)} for s in self.sites],
            "notes": self.notes,
        }


# -- recording -------------------------------------------------------------------------------------


@dataclass
class _Event:
    module: str
    site: Site | None
    value: torch.Tensor
    arg: torch.Tensor | None


@dataclass
class _Recorder:
    user: dict[str, bool]  # module name -> written outside torch (a place user activations live)
    stack: list[str] = field(default_factory=list)
    events: list[_Event] = field(default_factory=list)
    calls: dict[str, list[tuple[list[torch.Tensor], list[torch.Tensor]]]] = field(default_factory=dict)
    pending: dict[str, list[list[torch.Tensor]]] = field(default_factory=dict)

    def owner(self) -> str | None:
        for name in reversed(self.stack):
            if self.user[name]:
                return name
        return None


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) output, in order: the returned h, c, sequences."""
    if isinstance(value, torch.Tensor):
        return [value.detach().clone()]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


class _ActivationMode(TorchFunctionMode):
    """Sees every torch function call while active; keeps the results of sigmoid/tanh calls."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: Any = None) -> Any:
        kind = _KINDS.get(getattr(func, "__name__", ""))
        owner = self.recorder.owner() if kind else None
        arg = args[0] if args and isinstance(args[0], torch.Tensor) else None
        kept = arg.detach().clone() if owner is not None and kind == "tanh" and arg is not None else None
        result = func(*args, **(kwargs or {}))
        if owner is not None and isinstance(result, torch.Tensor):
            self.recorder.events.append(
                _Event(owner, _cellsource.user_site(kind), result.detach().clone(), kept))
        return result


def _display_name(raw: str, module: nn.Module) -> str:
    return raw or type(module).__name__


@contextmanager
def _recording(model: nn.Module) -> Iterator[_Recorder]:
    """Hook every module (handles removed in `finally`) and activate the activation mode."""
    modules = {_display_name(raw, m): m for raw, m in model.named_modules()}
    recorder = _Recorder(user={
        name: not type(m).__module__.startswith("torch.") and not isinstance(m, _STOCK)
        for name, m in modules.items()
    })
    handles = []

    def pre(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            recorder.stack.append(name)
            # Only the first call's arguments are read (input width, the initial state).
            if not recorder.calls.get(name) and not recorder.pending.get(name):
                recorder.pending.setdefault(name, []).append(_tensors((args, kwargs)))
            else:
                recorder.pending.setdefault(name, []).append([])
        return hook

    def post(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            recorder.stack.pop()
            call_args = recorder.pending[name].pop()
            recorder.calls.setdefault(name, []).append((call_args, _tensors(output)))
        return hook

    def enter(name: str):  # stock modules (Linear, Dropout, ...) only mark where we are
        def hook(module: nn.Module, args: tuple) -> None:
            recorder.stack.append(name)
        return hook

    def leave(name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
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


# -- grouping events into series -------------------------------------------------------------------


def _as_rows(t: torch.Tensor) -> torch.Tensor | None:
    """(batch, units) for one step; an unbatched (units,) becomes (1, units); others are not steps."""
    if t.dim() == 1:
        return t.unsqueeze(0)
    return t if t.dim() == 2 else None


def _site_key(site: Site | None) -> tuple:
    return ("?",) if site is None else (site.filename, site.lineno, site.col, site.kind)


def _group(events: list[_Event]) -> tuple[list[SiteSeries], list[str]]:
    """Series per call site with the most common step count; other sites are noted and left out."""
    by_site: dict[tuple, list[_Event]] = {}
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
        rows = [_as_rows(e.value) for e in group]
        if len(group) != steps or any(r is None for r in rows) or len({r.shape for r in rows}) != 1:
            notes.append(f"left out {where}: {len(group)} calls, not {steps} steps of one shape")
            continue
        values = torch.stack(rows, dim=1).float().cpu().numpy()
        inputs = None
        if group[0].arg is not None and all(e.arg is not None and e.arg.shape == e.value.shape for e in group):
            inputs = torch.stack([_as_rows(e.arg) for e in group], dim=1).float().cpu().numpy()
        series.append(SiteSeries(site=site or Site("?", 0, None, None, None, "?", "sigmoid"),
                                 name="", values=values, inputs=inputs))
    _name_sites(series)
    return series, notes


def _name_sites(series: list[SiteSeries]) -> None:
    per_line = Counter((s.site.filename, s.site.lineno) for s in series)
    for s in series:
        s.name = _cellsource.source_name(s.site) or _cellsource.fallback_name(
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


def _split_fused(series: list[SiteSeries], hidden: int) -> list[SiteSeries]:
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


# -- what the module returned ------------------------------------------------------------------------


def _returned(calls: list[tuple[list[torch.Tensor], list[torch.Tensor]]], batch: int, steps: int,
              hidden: int) -> list[np.ndarray]:
    """Candidates for the module's returned h (or c): (batch, steps, hidden) with NaN where unknown.

    A cell called once per step returns one step per call; a looping layer returns a sequence
    (batch-first or time-first) and usually the final states, which fill the last step only.
    """
    per_call = steps // len(calls) if steps % len(calls) == 0 else None
    if per_call is None:
        return []
    n_out = min(len(out) for _, out in calls)
    candidates: list[np.ndarray] = []
    if len(calls) == 1 and per_call > 1:
        # A loop that returns its per-step states as a list (d2l's `outputs.append(H)`): the
        # whole sequence, one (batch, hidden) tensor per step.
        out = calls[0][1]
        for k in range(len(out) - per_call + 1):
            run = out[k:k + per_call]
            if all(tuple(t.shape) == (batch, hidden) for t in run):
                candidates.append(torch.stack(run, dim=1).float().cpu().numpy())
    for k in range(n_out):
        pieces: list[np.ndarray] = []
        for _, out in calls:
            piece = _as_steps(out[k], batch, per_call, hidden)
            if piece is None:
                break
            pieces.append(piece)
        else:
            candidates.append(np.concatenate(pieces, axis=1))
    return candidates


def _as_steps(t: torch.Tensor, batch: int, steps: int, hidden: int) -> np.ndarray | None:
    a = t.detach().float().cpu().numpy()
    if a.ndim == 3 and a.shape[0] == 1 and steps > 1 and a.shape[1:] == (batch, hidden):
        a = a[0]  # (1, batch, hidden): nn.LSTM-style final state
    out = np.full((batch, steps, hidden), np.nan, dtype=np.float32)
    if a.shape == (batch, hidden) or (batch == 1 and a.shape == (hidden,)):
        out[:, -1] = a.reshape(batch, hidden)
        return out
    if a.shape == (batch, steps, hidden):
        return a.astype(np.float32)
    if a.shape == (steps, batch, hidden):
        return np.ascontiguousarray(a.transpose(1, 0, 2)).astype(np.float32)
    return None


def _match(value: np.ndarray, candidates: list[np.ndarray]) -> tuple[float, int | None]:
    """Smallest max |value - candidate| over the steps each candidate knows; (inf, None) if none fit."""
    best, index = float("inf"), None
    for k, cand in enumerate(candidates):
        known = ~np.isnan(cand)
        if not known.any():
            continue
        err = float(np.max(np.abs(value[known] - cand[known])))
        if err < best:
            best, index = err, k
    return best, index


def _initial_state(calls: list[tuple[list[torch.Tensor], list[torch.Tensor]]], batch: int,
                   hidden: int) -> np.ndarray:
    """h_0 as the user passed it (a (batch, hidden) tensor after the input), else zeros."""
    args = calls[0][0]
    for t in args[1:]:
        a = t.detach().float().cpu().numpy()
        if a.shape == (batch, hidden):
            return a
        if a.shape == (1, batch, hidden):
            return a[0]
    return np.zeros((batch, hidden), dtype=np.float32)


# -- recognising the structure -----------------------------------------------------------------------


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _hint_score(assign: dict[str, SiteSeries], allowed: str) -> int:
    """How many of an assignment's series the user's names agree with (breaks numeric ties)."""
    return sum(_cellsource.name_hint(s.name.split("@")[0], allowed) == key for key, s in assign.items())


def _fit_lstm(sig: list[SiteSeries], tanh: list[SiteSeries], returned: list[np.ndarray],
              scale: float) -> tuple[dict[str, SiteSeries], SiteSeries, float | None, float] | None:
    """(i, f, g, o) and the tanh(c) site that satisfy the LSTM equations; the h and c errors."""
    best = None
    for c_site in tanh:
        if c_site.inputs is None:
            continue
        c = c_site.inputs
        for g_site in tanh:
            if g_site is c_site or g_site.values.shape != c.shape:
                continue
            for i_site, f_site, o_site in itertools.permutations(sig, 3):
                if not i_site.values.shape == f_site.values.shape == o_site.values.shape == c.shape:
                    continue
                state = c[:, 1:] - (f_site.values[:, 1:] * c[:, :-1] + i_site.values[:, 1:] * g_site.values[:, 1:])
                state_err = _max_abs(state)
                if state_err > VERIFY_TOLERANCE * scale:
                    continue
                h = o_site.values * c_site.values
                h_err, _ = _match(h, returned)
                assign = {"i": i_site, "f": f_site, "g": g_site, "o": o_site}
                key = (h_err if returned else 0.0, -_hint_score(assign, "ifgo"), state_err)
                if best is None or key < best[0]:
                    best = (key, assign, c_site, h_err if returned else None, state_err)
    if best is None:
        return None
    return best[1], best[2], best[3], best[4]


def _fit_gru(sig: list[SiteSeries], tanh: list[SiteSeries], returned: list[np.ndarray], h0: np.ndarray
             ) -> tuple[dict[str, SiteSeries], np.ndarray, str, float] | None:
    """(r, z, n) and the convention for which h_t = z*h_{t-1} + (1-z)*n matches the returned h."""
    if not returned:
        return None
    best = None
    for n_site in tanh:
        n = n_site.values
        for z_site, r_site in itertools.permutations(sig, 2):
            if not z_site.values.shape == r_site.values.shape == n.shape:
                continue
            for convention in ("z*h_prev", "z*n"):
                z = z_site.values if convention == "z*h_prev" else 1.0 - z_site.values
                h = np.empty_like(n)
                prev = h0.astype(np.float32)
                for t in range(n.shape[1]):
                    prev = z[:, t] * prev + (1.0 - z[:, t]) * n[:, t]
                    h[:, t] = prev
                err, _ = _match(h, returned)
                assign = {"r": r_site, "z": z_site, "n": n_site}
                key = (err, -_hint_score(assign, "rzn"))
                if best is None or key < best[0]:
                    best = (key, assign, h, convention, err)
    if best is None:
        return None
    return best[1], best[2], best[3], best[4]


def _by_names(sites: list[SiteSeries], allowed: str) -> dict[str, SiteSeries] | None:
    """A mapping read from the names alone, when every series of the family is named once."""
    found: dict[str, SiteSeries] = {}
    for s in sites:
        hint = _cellsource.name_hint(s.name.split("@")[0], allowed)
        if hint:
            if hint in found:
                return None
            found[hint] = s
    return found if set(found) == set(allowed) else None


def _analyse(cell: CustomCell, calls: list, config_input: int) -> None:
    """Recognise LSTM/GRU structure in `cell.sites`, verify it, and build `cell.layer`."""
    tanh = [s for s in cell.sites if s.site.kind == "tanh"]
    if not tanh:
        cell.notes.append("no tanh call: not an LSTM or GRU")
        return
    hidden = min(s.values.shape[2] for s in tanh)
    sites = _split_fused(cell.sites, hidden)
    sig = [s for s in sites if s.site.kind == "sigmoid"]
    batch, steps = tanh[0].values.shape[:2]
    returned = _returned(calls, batch, steps, hidden)
    scale = 1.0 + max(float(np.abs(s.inputs).max()) for s in tanh if s.inputs is not None) if any(
        s.inputs is not None for s in tanh) else 1.0

    series: dict[str, np.ndarray] | None = None
    if len(sig) >= 3 and len(tanh) >= 2:
        fit = _fit_lstm(sig, tanh, returned, scale)
        if fit is not None:
            assign, c_site, h_err, state_err = fit
            c = c_site.inputs
            h = assign["o"].values * c_site.values
            series = {k: assign[k].values for k in "ifgo"} | {"c": c, "h": h}
            cell.family = "lstm"
            # h = o*tanh(c) against the returned h multiplies the very tensors the module multiplied:
            # it confirms which sigmoid is o, but it is exact by construction. The recurrence
            # c_t = f*c_(t-1) + i*g, recomputed from the captured gates, is the check that means something.
            has_h = h_err is not None and bool(np.isfinite(h_err))
            if steps > 1:
                cell.verify_error = max(state_err, h_err) if has_h else state_err
                cell.check = "recurrence c_t = f·c_(t−1) + i·g recomputed from the captured gates" + (
                    ", and h_t = o·tanh(c_t) vs the returned h" if has_h else "")
            else:
                cell.verify_error = h_err if has_h else None
                cell.check = "h_t = o·tanh(c_t) vs the returned h only (one step: no recurrence to check)"
            if not has_h:
                # Nothing returned looks like h (a model that loops inline and returns logits).
                cell.notes.append("the module returns no hidden state; verified c_t = f*c_(t-1) + i*g instead")
            c_err, _ = _match(c, returned)
            if returned and np.isfinite(c_err):
                cell.notes.append(f"returned cell state matches to {c_err:.1e}")
            cell.names = {k: assign[k].name for k in "ifgo"}
            cell.names["c"] = _cellsource.argument_name(c_site.site) or "c"
            cell.names["h"] = c_site.name if "@" not in c_site.name else "h"
            cell.where = {k: assign[k].site.where for k in "ifgo"} | {"c": c_site.site.where, "h": c_site.site.where}
    if series is None and len(sig) >= 2:
        h0 = _initial_state(calls, batch, hidden)
        fit_gru = _fit_gru(sig, tanh, returned, h0)
        if fit_gru is not None and fit_gru[3] <= VERIFY_TOLERANCE * 10:
            assign, h, convention, err = fit_gru
            series = {k: assign[k].values for k in "rzn"} | {"h": h}
            cell.family = "gru"
            cell.verify_error = err
            cell.check = "recurrence h_t = z·h_(t−1) + (1−z)·n recomputed from the captured gates vs the returned h"
            cell.names = {k: assign[k].name for k in "rzn"} | {"h": "h"}
            cell.where = {k: assign[k].site.where for k in "rzn"}
            if convention == "z*n":
                cell.notes.append("update gate convention h = (1-z)*h_prev + z*n (PyTorch's is z*h_prev)")
    if series is None:
        named = _by_names(sig + tanh, "ifgo")
        if named is not None:
            cell.family, cell.mapping = "lstm", "names"
            cell.names = {k: named[k].name for k in "ifgo"}
            cell.where = {k: named[k].site.where for k in "ifgo"}
            cell.notes.append("gates mapped from their names only: the LSTM equations did not check out")
            series = {k: named[k].values for k in "ifgo"}
        else:
            cell.mapping = "none"
            cell.notes.append("no LSTM or GRU structure found among these calls")
            return
    kind = ("LSTM" if cell.family == "lstm" else "GRU") + ("Cell" if cell.style == "cell" else "")
    config = RecurrentConfig(kind=kind, input_size=config_input, hidden_size=hidden, batch_first=True)
    order = [s for s in SERIES[cell.family] if s in series]
    cell.layer = LayerTrace(module=cell.module, layer=0, direction="fwd", config=config,
                            series={s: np.ascontiguousarray(series[s], dtype=np.float32) for s in order})


# -- the public entry points --------------------------------------------------------------------------


def record_custom_cells(model: nn.Module, *inputs: Any, module: str | None = None, **kwargs: Any
                        ) -> tuple[list[CustomCell], Any]:
    """Run `model(*inputs)` once (eval, no grad) and open up hand-written recurrent modules.

    `module` names one module (as in `named_modules()`; the model itself by its class name) to
    open; by default every user-written module whose activation call sites repeat within one
    forward pass (a cell called per step, or a layer looping inside) is opened. Returns the
    cells and the model's output.
    """
    names = {_display_name(raw, m): m for raw, m in model.named_modules()}
    if module is not None and module not in names:
        available = ", ".join(n for n, m in names.items() if not isinstance(m, _STOCK)) or "none"
        raise ModelError(f"--module {module!r} is not a module of {type(model).__name__}; its modules: {available}")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _recording(model) as recorder:
            output = model(*inputs, **kwargs)
    finally:
        model.train(was_training)
    by_module: dict[str, list[_Event]] = {}
    for event in recorder.events:
        by_module.setdefault(event.module, []).append(event)
    if module is not None:
        inside = [m for m in by_module if m == module or m.startswith(module + ".")]
        if not inside:
            raise ModelError(f"module {module!r} made no sigmoid or tanh call in the forward pass")
        by_module = {module: [e for m in inside for e in by_module[m]]}
    cells: list[CustomCell] = []
    for name in names:  # named_modules() order: stable, parents first
        if name not in by_module:
            continue
        sites, notes = _group(by_module[name])
        if len(sites) < 2:
            continue
        calls = recorder.calls.get(name, [])
        steps = sites[0].values.shape[1]
        style = "cell" if len(calls) == steps else "loop"
        cell = CustomCell(module=name, class_name=type(names[name]).__name__, style=style,
                          family=None, sites=sites, notes=notes)
        first_in = calls[0][0][0] if calls and calls[0][0] else None
        _analyse(cell, calls, int(first_in.shape[-1]) if first_in is not None and first_in.dim() else 0)
        cells.append(cell)
    return cells, output


def trace_custom_cells(model: nn.Module, *inputs: Any, module: str | None = None, verify: bool = True,
                       **kwargs: Any) -> list[LayerTrace]:
    """The LayerTraces of every recognised hand-written LSTM/GRU cell (see `trace_custom`)."""
    return trace_custom(model, *inputs, module=module, verify=verify, **kwargs).layers


def trace_custom(model: nn.Module, *inputs: Any, module: str | None = None, verify: bool = True,
                 **kwargs: Any) -> Trace:
    """A complete `Trace` of the model's hand-written cells, shaped like the stock tracer's.

    `meta["custom_cells"][module]` holds, per cell, the user's name and source line of each
    standard series (e.g. {"f": "forget_gate"}), how the mapping was decided and any notes;
    `meta["series_names"][prefix]` repeats the names per LayerTrace prefix for headings.
    Raises ModelError when nothing recurrent was found and VerificationError (unless
    `verify=False`) when the recorded h misses what the module returned by more than 1e-4.
    """
    cells, output = record_custom_cells(model, *inputs, module=module, **kwargs)
    layers = [c.layer for c in cells if c.layer is not None]
    if not layers:
        detail = "; ".join(f"{c.module}: {c.notes[-1]}" for c in cells if c.notes) or \
            "no module calls sigmoid/tanh repeatedly in one forward pass"
        raise ModelError(f"no hand-written LSTM or GRU cell found in {type(model).__name__} ({detail})")
    errors = {c.layer.prefix: c.verify_error for c in cells if c.layer is not None}
    known = [e for e in errors.values() if e is not None]
    verify_error = max(known) if known else None
    if verify:
        unverified = [p for p, e in errors.items() if e is None]
        if unverified:
            raise VerificationError(
                f"{unverified[0]}: the module returns no hidden state lstmviz can compare with; "
                "rerun with --no-verify to see the trace anyway")
        if not verify_error <= VERIFY_TOLERANCE:
            worst = max(errors, key=lambda p: errors[p])
            raise VerificationError(
                f"the recorded gates of {worst} reproduce the module's returned hidden state only to "
                f"{verify_error:.2e} (tolerance {VERIFY_TOLERANCE:.0e}); rerun with --no-verify to "
                "see the trace anyway")
    first = next(iter(_tensors(output)), None)
    meta = {
        "custom_cells": {c.module: c.to_meta() for c in cells},
        "series_names": {c.layer.prefix: c.names for c in cells if c.layer is not None},
        "verify_errors": errors,
        "device": str(next((p.device for p in model.parameters()), "cpu")),
        "store_dtype": "float32",
        "not_called": [],
        "path": [],
    }
    return Trace(layers=layers, modules={layer.module: layer.config for layer in layers},
                 verify_error=verify_error,
                 output=None if first is None else first.float().cpu().numpy(), meta=meta)


def describe_site(site: Site) -> str:
    """`file.py:42 in forward`, for messages and the report."""
    return f"{os.path.basename(site.filename)}:{site.lineno} in {site.function}"
