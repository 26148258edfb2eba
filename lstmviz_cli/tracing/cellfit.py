"""Recognise LSTM or GRU structure among a module's recorded series by their arithmetic, and verify it.

An LSTM when three sigmoids and a candidate tanh satisfy c_t = f*c_(t-1) + i*g and h = o*tanh(c)
reproduces what the module returned; a GRU when h_t = z*h_(t-1) + (1-z)*n (either convention) does. Names
only break ties and label the series; a mapping read from names alone is marked unverified.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from lstmviz_cli.families import GRU, LSTM
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing import cellsource
from lstmviz_cli.tracing.cellrecord import SiteSeries, split_fused
from lstmviz_cli.tracing.records import SERIES, CellInfo, LayerTrace, SiteInfo
from lstmviz_cli.tracing.verify import GATE_TOLERANCE


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

    def to_info(self) -> CellInfo:
        """The plain record of what was recognised (`Trace.meta.custom_cells[module]`)."""
        return CellInfo(
            class_name=self.class_name, style=self.style, family=self.family, names=dict(self.names),
            where=dict(self.where), mapping=self.mapping, verify_error=self.verify_error, check=self.check,
            sites=tuple(SiteInfo(s.name, s.site.where, s.site.kind, tuple(int(d) for d in s.values.shape))
                        for s in self.sites),
            notes=tuple(self.notes),
        )


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
        a: np.ndarray = t.detach().float().cpu().numpy()
        if a.shape == (batch, hidden):
            return a
        if a.shape == (1, batch, hidden):
            return np.asarray(a[0])
    return np.zeros((batch, hidden), dtype=np.float32)


def _max_abs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


def _hint_score(assign: dict[str, SiteSeries], allowed: tuple[str, ...]) -> int:
    """How many of an assignment's series the user's names agree with (breaks numeric ties)."""
    return sum(cellsource.name_hint(s.name.split("@")[0], allowed) == key for key, s in assign.items())


@dataclass(frozen=True)
class _LstmFit:
    assign: dict[str, SiteSeries]  # i, f, g, o
    c_site: SiteSeries  # the tanh applied to the cell state (or to `op` of it)
    c: np.ndarray  # the cell state, (batch, time, hidden)
    op: str | None  # the op between c and that tanh (h = o*tanh(layer_norm(c))), None: tanh(c) itself
    h_err: float | None
    state_err: float


def _cell_states(site: SiteSeries) -> list[tuple[np.ndarray, str | None]]:
    """What the cell state can be for `h = o * tanh(...)` at this site: the tanh's argument, or the
    argument of the op that made it (a layer-normalised LSTM: tanh(layer_norm(c)))."""
    found: list[tuple[np.ndarray, str | None]] = []
    if site.inputs is not None:
        found.append((site.inputs, None))
    if site.pre_inputs is not None:
        found.append((site.pre_inputs, site.pre_op))
    return found


def _fit_lstm(sig: list[SiteSeries], tanh: list[SiteSeries], returned: list[np.ndarray],
              scale: float) -> _LstmFit | None:
    """(i, f, g, o) and the tanh(c) site that satisfy the LSTM equations; the h and c errors."""
    best: tuple[tuple[float, int, float], _LstmFit] | None = None
    for c_site, (c, op) in ((site, state) for site in tanh for state in _cell_states(site)):
        for g_site in tanh:
            if g_site is c_site or g_site.values.shape != c.shape:
                continue
            for i_site, f_site, o_site in itertools.permutations(sig, 3):
                if not i_site.values.shape == f_site.values.shape == o_site.values.shape == c.shape:
                    continue
                state = c[:, 1:] - (f_site.values[:, 1:] * c[:, :-1] + i_site.values[:, 1:] * g_site.values[:, 1:])
                state_err = _max_abs(state)
                if state_err > GATE_TOLERANCE * scale:
                    continue
                h = o_site.values * c_site.values
                h_err, _ = _match(h, returned)
                assign = {"i": i_site, "f": f_site, "g": g_site, "o": o_site}
                key = (h_err if returned else 0.0, -_hint_score(assign, LSTM.gates), state_err)
                if best is None or key < best[0]:
                    best = (key, _LstmFit(assign, c_site, c, op, h_err if returned else None, state_err))
    return None if best is None else best[1]


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
                key = (err, -_hint_score(assign, GRU.gates))
                if best is None or key < best[0]:
                    best = (key, assign, h, convention, err)
    if best is None:
        return None
    return best[1], best[2], best[3], best[4]


def _by_names(sites: list[SiteSeries], allowed: tuple[str, ...]) -> dict[str, SiteSeries] | None:
    """A mapping read from the names alone, when every series of the family is named once."""
    found: dict[str, SiteSeries] = {}
    for s in sites:
        hint = cellsource.name_hint(s.name.split("@")[0], allowed)
        if hint:
            if hint in found:
                return None
            found[hint] = s
    return found if set(found) == set(allowed) else None


def analyse_cell(cell: CustomCell, calls: list[tuple[list[torch.Tensor], list[torch.Tensor]]],
                 config_input: int) -> None:
    """Recognise LSTM/GRU structure in `cell.sites`, verify it, and build `cell.layer`."""
    tanh = [s for s in cell.sites if s.site.kind == "tanh"]
    if not tanh:
        cell.notes.append("no tanh call: not an LSTM or GRU")
        return
    hidden = min(s.values.shape[2] for s in tanh)
    sites = split_fused(cell.sites, hidden)
    sig = [s for s in sites if s.site.kind == "sigmoid"]
    batch, steps = tanh[0].values.shape[:2]
    returned = _returned(calls, batch, steps, hidden)
    scale = 1.0 + max(float(np.abs(s.inputs).max()) for s in tanh if s.inputs is not None) if any(
        s.inputs is not None for s in tanh) else 1.0

    series: dict[str, np.ndarray] | None = None
    keeps = True  # the memory gate near 1 keeps the state (False: a GRU's z written the other way round)
    if len(sig) >= 3 and len(tanh) >= 2:
        fit = _fit_lstm(sig, tanh, returned, scale)
        if fit is not None:
            assign, c_site, c, h_err, state_err = fit.assign, fit.c_site, fit.c, fit.h_err, fit.state_err
            h = assign["o"].values * c_site.values
            of_c = f"{fit.op}(c_t)" if fit.op else "c_t"
            series = {k: assign[k].values for k in LSTM.gates} | {"c": c, "h": h}
            cell.family = "lstm"
            # h = o*tanh(c) against the returned h multiplies the very tensors the module multiplied:
            # it confirms which sigmoid is o, but it is exact by construction. The recurrence
            # c_t = f*c_(t-1) + i*g, recomputed from the captured gates, is the check that means something.
            has_h = h_err is not None and bool(np.isfinite(h_err))
            if steps > 1:
                cell.verify_error = max(state_err, h_err) if h_err is not None and has_h else state_err
                cell.check = "recurrence c_t = f·c_(t−1) + i·g recomputed from the captured gates" + (
                    f", and h_t = o·tanh({of_c}) vs the returned h" if has_h else "")
            else:
                cell.verify_error = h_err if has_h else None
                cell.check = f"h_t = o·tanh({of_c}) vs the returned h only (one step: no recurrence to check)"
            if fit.op:
                cell.notes.append(f"its cell state passes through {fit.op} before the tanh: h = o*tanh({fit.op}(c))")
            if not has_h:
                # Nothing returned looks like h (a model that loops inline and returns logits).
                cell.notes.append("the module returns no hidden state; verified c_t = f*c_(t-1) + i*g instead")
            c_err, _ = _match(c, returned)
            if returned and np.isfinite(c_err):
                cell.notes.append(f"returned cell state matches to {c_err:.1e}")
            cell.names = {k: assign[k].name for k in LSTM.gates}
            cell.names["c"] = (None if fit.op else cellsource.argument_name(c_site.site)) or "c"
            cell.names["h"] = c_site.name if "@" not in c_site.name else "h"
            cell.where = {k: assign[k].site.where for k in LSTM.gates} | {"c": c_site.site.where, "h": c_site.site.where}
    if series is None and len(sig) >= 2:
        h0 = _initial_state(calls, batch, hidden)
        fit_gru = _fit_gru(sig, tanh, returned, h0)
        if fit_gru is not None and fit_gru[3] <= GATE_TOLERANCE * 10:
            assign, h, convention, err = fit_gru
            series = {k: assign[k].values for k in GRU.gates} | {"h": h}
            cell.family = "gru"
            cell.verify_error = err
            formula = "h_t = z·h_(t−1) + (1−z)·n" if convention == "z*h_prev" else "h_t = (1−z)·h_(t−1) + z·n"
            cell.check = f"recurrence {formula} recomputed from the captured gates vs the returned h"
            cell.names = {k: assign[k].name for k in GRU.gates} | {"h": "h"}
            cell.where = {k: assign[k].site.where for k in GRU.gates}
            if convention == "z*n":
                keeps = False
                cell.notes.append("its update gate is written h = (1-z)*h_prev + z*n (PyTorch's nn.GRU: z*h_prev + "
                                  "(1-z)*n): a z near 1 replaces the state here, it does not keep it")
    if series is None:
        named = _by_names(sig + tanh, LSTM.gates)
        # What the module returned at every step, when that is one tensor of the hidden width: its h.
        whole = [cand for cand in returned if not np.isnan(cand).any()]
        if named is not None and len(whole) == 1:
            cell.family, cell.mapping = "lstm", "names"
            cell.names = {k: named[k].name for k in LSTM.gates} | {"h": "h"}
            cell.where = {k: named[k].site.where for k in LSTM.gates}
            cell.notes.append("gates mapped from their names only: the LSTM equations did not check out; "
                              "h is the hidden state the module returned")
            series = {k: named[k].values for k in LSTM.gates} | {"h": whole[0]}
        elif named is not None:
            cell.mapping = "none"
            cell.notes.append("gates named like an LSTM's, but the LSTM equations did not check out and the "
                              "module returns no hidden state to show")
            return
        else:
            cell.mapping = "none"
            cell.notes.append("no LSTM or GRU structure found among these calls")
            return
    assert cell.family is not None
    kind = cell.family.upper() + ("Cell" if cell.style == "cell" else "")
    config = RecurrentConfig(kind=kind, input_size=config_input, hidden_size=hidden)  # layout: `trace_sample`
    order = [s for s in SERIES[cell.family] if s in series]
    cell.layer = LayerTrace(module=cell.module, layer=0, direction="fwd", config=config,
                            series={s: np.ascontiguousarray(series[s], dtype=np.float32) for s in order},
                            keeps_when_high=keeps)
