"""Gate reconstruction: every step of one layer direction from [x_t, h_{t-1}] in a few batched ops.

The fused kernel (oneDNN/cuDNN) has already produced the layer's h sequence. Given it, all gate
pre-activations of all steps are one matmul per time chunk; only the LSTM cell state needs a scan
(c_t = f_t * c_{t-1} + i_t * g_t), done step by step on NumPy views on CPU and as a log-depth
parallel scan on GPU. Work is chunked over time so that peak memory is the stored arrays plus one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lstmviz_cli.families import GATE_SERIES, GRU, LSTM, RNN

# Elements of one chunk's pre-activation matrix (time x batch x gates): ~32 MB of float32.
CHUNK_ELEMENTS = 1 << 23


@dataclass(frozen=True)
class StoreSpec:
    """What to keep on the host: dtype, which series, which units (None: all)."""

    dtype: np.dtype = np.dtype(np.float32)
    series: frozenset[str] | None = None
    units: np.ndarray | None = None  # sorted unit indices applied to every series

    def wants(self, name: str) -> bool:
        return self.series is None or name in self.series


@dataclass
class Weights:
    """One layer direction's parameters (tensors on the compute device)."""

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: torch.Tensor | None
    b_hh: torch.Tensor | None
    w_hr: torch.Tensor | None = None

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Host copies named as in nn.LSTM (weight_ih, ...), for weight figures without torch."""
        named = {"weight_ih": self.w_ih, "weight_hh": self.w_hh, "bias_ih": self.b_ih,
                 "bias_hh": self.b_hh, "weight_hr": self.w_hr}
        return {k: v.detach().to("cpu", torch.float32).numpy().copy()
                for k, v in named.items() if v is not None}


@dataclass
class Direction:
    """Everything one layer direction needs, time-major: x (T, B, I), h (T, B, Hout) from the kernel.

    `h_prev(t0, t1)` returns h_{t-1} for steps t0..t1-1 (h0 where a sequence starts). For cells the
    previous cell state is explicit (`c_prev`); for a scanned layer `c0` seeds the scan.
    """

    x: torch.Tensor
    h: torch.Tensor
    h_prev: Callable[..., torch.Tensor]  # (t0, t1, out=None) -> h_{t-1} for those steps
    reverse: bool = False
    valid: torch.Tensor | None = None  # (T, B) bool, False on padded steps of packed sequences
    c0: torch.Tensor | None = None  # (B, H)
    c_prev: torch.Tensor | None = None  # (T, B, H), cells only
    c_real: torch.Tensor | None = None  # cells: (T, B, H) outputs; layers: (B, H) final c_n


def shifted_prev(h: torch.Tensor, h0: torch.Tensor, *, reverse: bool,
                 lengths: torch.Tensor | None) -> Callable[..., torch.Tensor]:
    """h_{t-1} in the direction's own reading order for steps t0..t1-1, without copying h.

    With `out`, the values are written there (no temporary); otherwise a view (or a small cat).
    """
    steps = h.shape[0]
    last = None
    if reverse and lengths is not None:
        # A packed sequence read backwards starts at its own last valid step, from h0.
        t = torch.arange(steps, device=h.device)[:, None]
        last = t == (lengths.to(h.device)[None, :] - 1)

    def prev(t0: int, t1: int, out: torch.Tensor | None = None) -> torch.Tensor:
        if not reverse:
            pieces = [h[t0 - 1:t1 - 1]] if t0 > 0 else [h0[None], h[: t1 - 1]]
        else:
            pieces = [h[t0 + 1:t1 + 1]] if t1 < steps else [h[t0 + 1:steps], h0[None]]
        if out is None:
            value = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
        else:
            at = 0
            for piece in pieces:
                out[at:at + piece.shape[0]] = piece
                at += piece.shape[0]
            value = out
        if last is not None:
            mask = last[t0:t1, :, None]
            if out is None:
                value = torch.where(mask, h0[None], value)
            else:
                value.copy_(torch.where(mask, h0[None], value))
        return value

    return prev


def chunk_steps(batch: int, width: int, override: int | None = None) -> int:
    """Steps per chunk so that one chunk's gate matrix stays near CHUNK_ELEMENTS."""
    if override:
        return max(1, int(override))
    return max(16, CHUNK_ELEMENTS // max(1, batch * width))


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """x (n, B, I) @ w.T + b as one addmm over all steps and batch elements."""
    flat = x.reshape(-1, x.shape[-1])
    out = torch.addmm(b, flat, w.t()) if b is not None else flat @ w.t()
    return out.view(x.shape[0], x.shape[1], -1)


def _add_linear(acc: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    """acc += x @ w.T in place (no second gate-sized temporary)."""
    acc.view(-1, acc.shape[-1]).addmm_(x.reshape(-1, x.shape[-1]), w.t())


def _sum_bias(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    if a is None:
        return b
    return a if b is None else a + b


def scan_loop(f: torch.Tensor, u: torch.Tensor, c_init: torch.Tensor, reverse: bool) -> torch.Tensor:
    """c_t = f_t * c_{t-1} + u_t, written into u, one step at a time (CPU).

    The steps run on NumPy views of the same memory: a NumPy ufunc call costs well under a
    microsecond against several for a torch op, which decides the speed for small hidden sizes.
    """
    if u.dtype == torch.bfloat16:  # no NumPy dtype: one fused torch op per step instead
        prev_t = c_init
        for t in (range(len(u) - 1, -1, -1) if reverse else range(len(u))):
            u[t].addcmul_(f[t], prev_t)
            prev_t = u[t]
        return u
    fs, cs = f.detach().numpy(), u.detach().numpy()
    prev = c_init.detach().numpy()
    tmp = np.empty(cs.shape[1:], dtype=cs.dtype)
    order = range(len(cs) - 1, -1, -1) if reverse else range(len(cs))
    for t in order:
        np.multiply(fs[t], prev, out=tmp)
        cs[t] += tmp
        prev = cs[t]
    return u


def scan_parallel(f: torch.Tensor, u: torch.Tensor, c_init: torch.Tensor, reverse: bool) -> torch.Tensor:
    """The same recurrence as a Hillis-Steele scan: log2(T) vectorised steps, for GPUs (new tensor).

    Composition (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2) only multiplies gates in [0, 1], so it is
    as stable as the sequential loop.
    """
    if reverse:
        return scan_parallel(f.flip(0), u.flip(0), c_init, False).flip(0)
    a, b = f.clone(), u.clone()
    b[0].addcmul_(a[0], c_init)
    a[0] = 0
    shift = 1
    steps = a.shape[0]
    while shift < steps:
        b_new = torch.addcmul(b[shift:], a[shift:], b[:-shift])
        a_new = a[shift:] * a[:-shift]
        b[shift:] = b_new
        a[shift:] = a_new
        shift *= 2
    return b


class _Sink:
    """Host arrays (batch, time, units) filled chunk by chunk, in the requested dtype and units."""

    def __init__(self, spec: StoreSpec, batch: int, steps: int, widths: dict[str, int]) -> None:
        self.spec = spec
        self.arrays: dict[str, np.ndarray] = {}
        self._views: dict[str, torch.Tensor] = {}
        self._index: dict[str, torch.Tensor | None] = {}
        for name, width in widths.items():
            if not spec.wants(name):
                continue
            units = spec.units
            if units is not None and len(units) and units[-1] >= width:
                units = units[units < width]
            n = width if units is None else len(units)
            array = np.empty((batch, steps, n), dtype=spec.dtype)
            self.arrays[name] = array
            self._views[name] = torch.from_numpy(array)
            self._index[name] = None if units is None else torch.as_tensor(units, dtype=torch.long)

    def put(self, name: str, t0: int, t1: int, value: torch.Tensor) -> None:
        if name not in self._views:
            return
        index = self._index[name]
        if index is not None:
            value = value.index_select(2, index.to(value.device))
        target = self._views[name][:, t0:t1]
        if value.device.type != "cpu":
            # Select and narrow on the device, so only the stored bytes cross to the host.
            value = value.to(target.dtype)
        target.copy_(value.transpose(0, 1))

    def pad_nan(self, lengths: np.ndarray | None) -> dict[str, np.ndarray]:
        if lengths is not None:
            for array in self.arrays.values():
                for b, n in enumerate(lengths):
                    array[b, int(n):] = np.nan
        return self.arrays


def _chunks(steps: int, size: int, reverse: bool) -> list[tuple[int, int]]:
    spans = [(t0, min(steps, t0 + size)) for t0 in range(0, steps, size)]
    return spans[::-1] if reverse else spans


def _max_err(err: torch.Tensor, a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    diff = (a - b).abs()
    if valid is not None:
        diff = diff.masked_fill(~valid[..., None], 0.0)
    return torch.maximum(err, diff.amax()) if diff.numel() else err


def _direct(spec: StoreSpec, x: torch.Tensor) -> bool:
    """Full float32 storage on the CPU: compute straight into the arrays the Trace keeps."""
    return (spec.dtype == np.float32 and spec.units is None and spec.series is None
            and x.device.type == "cpu" and x.dtype == torch.float32)


def _host(t: torch.Tensor) -> np.ndarray:
    """A (time, batch, units) tensor as the contract's (batch, time, units) view, without a copy."""
    view: np.ndarray = t.detach().numpy().transpose(1, 0, 2)
    return view


def _pad_views(series: dict[str, np.ndarray], lengths: np.ndarray | None) -> dict[str, np.ndarray]:
    if lengths is not None:
        for array in series.values():
            for b, n in enumerate(lengths):
                array[b, int(n):] = np.nan
    return series


def _stacked_weights(w: Weights, bias: torch.Tensor | None) -> torch.Tensor:
    """[W_ih | W_hh | b] so that one GEMM of [x_t, h_{t-1}, 1] gives every pre-activation."""
    parts = [w.w_ih, w.w_hh] + ([bias[:, None]] if bias is not None else [])
    return torch.cat(parts, dim=1)


def _fill_gates(out: torch.Tensor, x: torch.Tensor, d: Direction, t0: int, t1: int,
                stacked: torch.Tensor, has_bias: bool) -> None:
    """out (n, B, 4H) = sigmoid/tanh(W [x_t, h_{t-1}, 1]): one GEMM written in place."""
    n, batch, inputs = x.shape
    operand = torch.empty(n, batch, stacked.shape[1], dtype=x.dtype, device=x.device)
    operand[..., :inputs] = x
    d.h_prev(t0, t1, operand[..., inputs:inputs + d.h.shape[2]])
    if has_bias:
        operand[..., -1] = 1.0
    torch.mm(operand.view(n * batch, -1), stacked.t(), out=out.view(n * batch, -1))
    for name, block in zip(LSTM.gates, torch.split(out, out.shape[-1] // 4, dim=2), strict=True):
        block.sigmoid_() if name in GATE_SERIES else block.tanh_()


def trace_lstm(d: Direction, w: Weights, spec: StoreSpec, *, verify: bool,
               chunk: int | None = None, lengths: np.ndarray | None = None,
               gates: torch.Tensor | None = None
               ) -> tuple[dict[str, np.ndarray], float | None]:
    """i, f, g, o, c, h (and m when projected) of one LSTM direction; returns series and max error.

    `gates` (T, B, 4H), already activated, comes from the oneDNN kernel's workspace when available;
    otherwise they are rebuilt here. c is always rebuilt by the scan, so the check below (c and
    o*tanh(c) against the kernel's c_n and h) also validates gates taken from the workspace.
    """
    steps, batch, _ = d.x.shape
    hidden = w.w_hh.shape[0] // 4
    proj = w.w_hr is not None
    direct = _direct(spec, d.x)
    given = gates is not None
    dev, dt = d.x.device, d.x.dtype
    if direct and not given:
        gates = torch.empty(steps, batch, 4 * hidden, dtype=dt, device=dev)
    c_all = torch.empty(steps, batch, hidden, dtype=dt, device=dev) if direct else None
    m_all = torch.empty(steps, batch, hidden, dtype=dt, device=dev) if direct and proj else None
    sink = None
    if not direct:
        widths = dict.fromkeys((*LSTM.gates, "c"), hidden)
        if proj:
            widths["m"] = hidden
        widths["h"] = d.h.shape[2]
        sink = _Sink(spec, batch, steps, widths)
    bias = _sum_bias(w.b_ih, w.b_hh)
    stacked = None if given else _stacked_weights(w, bias)
    scan = scan_parallel if d.x.is_cuda else scan_loop
    err = torch.zeros((), device=dev, dtype=dt)
    carry = d.c0
    for t0, t1 in _chunks(steps, chunk_steps(batch, 4 * hidden, chunk), d.reverse):
        if gates is not None:
            g4 = gates[t0:t1]
        else:
            g4 = torch.empty(t1 - t0, batch, 4 * hidden, dtype=dt, device=dev)
        if stacked is not None:  # no gates given: rebuild them
            _fill_gates(g4, d.x[t0:t1], d, t0, t1, stacked, bias is not None)
        i, f, g, o = torch.split(g4, hidden, dim=2)  # LSTM.gates, PyTorch's row order
        valid = None if d.valid is None else d.valid[t0:t1]
        c = c_all[t0:t1] if c_all is not None else torch.empty_like(i)
        torch.mul(i, g, out=c)
        if d.c_prev is not None:  # a cell: the previous state is known, no scan
            c.addcmul_(f, d.c_prev[t0:t1])
        else:
            f_scan = f if valid is None else f.masked_fill(~valid[..., None], 1.0)
            if valid is not None:
                c.masked_fill_(~valid[..., None], 0.0)
            assert carry is not None
            scanned = scan(f_scan, c, carry, d.reverse)
            if scanned is not c:  # the parallel scan returns a new tensor
                c.copy_(scanned)
            carry = c[0] if d.reverse else c[-1]
        m = None
        if verify or (proj and (direct or spec.wants("m"))):
            m = torch.tanh(c, out=m_all[t0:t1]) if m_all is not None else torch.tanh(c)
            m.mul_(o)
        if verify:
            assert m is not None
            h_rec = _linear(m, w.w_hr, None) if w.w_hr is not None else m.clone() if m_all is not None else m
            h_rec.sub_(d.h[t0:t1]).abs_()
            if valid is not None:
                h_rec.masked_fill_(~valid[..., None], 0.0)
            err = torch.maximum(err, h_rec.amax())
            if d.c_prev is not None and d.c_real is not None:
                err = _max_err(err, c, d.c_real[t0:t1], valid)
        if sink is not None:
            for name, value in (("i", i), ("f", f), ("g", g), ("o", o), ("c", c), ("m", m),
                                ("h", d.h[t0:t1])):
                if value is not None:
                    sink.put(name, t0, t1, value)
    if verify and d.c_prev is None and d.c_real is not None and carry is not None:
        err = torch.maximum(err, (carry - d.c_real).abs().amax())
    error = float(err) if verify else None
    if sink is not None:
        return sink.pad_nan(lengths), error
    assert gates is not None and c_all is not None
    series = {name: _host(block) for name, block in zip(LSTM.gates, torch.split(gates, hidden, dim=2), strict=True)}
    series["c"] = _host(c_all)
    if m_all is not None:
        series["m"] = _host(m_all)
    series["h"] = _host(d.h)
    return _pad_views(series, lengths), error


def trace_gru(d: Direction, w: Weights, spec: StoreSpec, *, verify: bool,
              chunk: int | None = None, lengths: np.ndarray | None = None
              ) -> tuple[dict[str, np.ndarray], float | None]:
    """r, z, n, h of one GRU direction: n = tanh(W_in x + b_in + r * (W_hn h + b_hn))."""
    steps, batch, _ = d.x.shape
    hidden = w.w_hh.shape[0] // 3
    sink = _Sink(spec, batch, steps, dict.fromkeys(GRU.series, hidden))
    err = torch.zeros((), device=d.x.device, dtype=d.x.dtype)
    for t0, t1 in _chunks(steps, chunk_steps(batch, 6 * hidden, chunk), d.reverse):
        prev = d.h_prev(t0, t1)
        gi = _linear(d.x[t0:t1], w.w_ih, w.b_ih)
        gh = _linear(prev, w.w_hh, w.b_hh)
        gi_r, gi_z, n = torch.split(gi, hidden, dim=2)  # GRU.gates, PyTorch's row order
        gh_r, gh_z, gh_n = torch.split(gh, hidden, dim=2)
        r = gi_r.add_(gh_r).sigmoid_()
        z = gi_z.add_(gh_z).sigmoid_()
        n = n.addcmul_(r, gh_n).tanh_()
        if verify:
            h_rec = torch.addcmul(n, z, prev - n)  # (1 - z) * n + z * h_prev
            err = _max_err(err, h_rec, d.h[t0:t1], None if d.valid is None else d.valid[t0:t1])
        for name, value in (("r", r), ("z", z), ("n", n), ("h", d.h[t0:t1])):
            sink.put(name, t0, t1, value)
    return sink.pad_nan(lengths), (float(err) if verify else None)


def trace_rnn(d: Direction, w: Weights, spec: StoreSpec, *, verify: bool, nonlinearity: str,
              chunk: int | None = None, lengths: np.ndarray | None = None
              ) -> tuple[dict[str, np.ndarray], float | None]:
    """a (pre-activation) and h of one Elman RNN direction: h = tanh(a) or relu(a)."""
    steps, batch, _ = d.x.shape
    hidden = w.w_hh.shape[0]
    sink = _Sink(spec, batch, steps, dict.fromkeys(RNN.series, hidden))
    bias = _sum_bias(w.b_ih, w.b_hh)
    err = torch.zeros((), device=d.x.device, dtype=d.x.dtype)
    act = torch.relu if nonlinearity == "relu" else torch.tanh
    for t0, t1 in _chunks(steps, chunk_steps(batch, hidden, chunk), d.reverse):
        a = _linear(d.x[t0:t1], w.w_ih, bias)
        _add_linear(a, d.h_prev(t0, t1), w.w_hh)
        if verify:
            err = _max_err(err, act(a), d.h[t0:t1], None if d.valid is None else d.valid[t0:t1])
        sink.put("a", t0, t1, a)
        sink.put("h", t0, t1, d.h[t0:t1])
    return sink.pad_nan(lengths), (float(err) if verify else None)


def select_units(units: Sequence[int] | None) -> np.ndarray | None:
    """Validate a unit selection into sorted unique indices (None keeps every unit)."""
    if units is None:
        return None
    array = np.unique(np.asarray(list(units), dtype=np.int64))
    if array.size == 0 or array[0] < 0:
        raise ValueError("keep_units must be non-negative unit indices")
    return array


def explicit_prev(h_prev: torch.Tensor) -> Callable[..., torch.Tensor]:
    """The h_prev provider for cells, whose previous states were recorded call by call."""

    def prev(t0: int, t1: int, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is None:
            return h_prev[t0:t1]
        return out.copy_(h_prev[t0:t1])

    return prev
