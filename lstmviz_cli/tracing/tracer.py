"""One hooked forward pass that records every gate of every recurrent layer into a `Trace`.

How it stays about as fast as the forward itself: while tracing, each nn.LSTM/GRU/RNN instance runs
its layers one at a time through the same fused op its own forward uses (so the intermediate layers'
h sequences come out of the kernel, at no extra cost), and returns exactly what its forward returns.
Gates are then rebuilt from [x_t, h_{t-1}] in batched matmuls (`_gates.py`). Cells are recorded by
forward hooks, one step per call. Everything is undone in `finally`: the per-instance forward,
every hook handle, and the model's training mode.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmviz_cli.errors import InputError, LstmvizError, ModelError, VerificationError
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing.records import SERIES, LayerTrace, Trace

# Above this max |recorded - real| the trace is refused (unless verify=False).
VERIFY_TOLERANCE = 1e-4

_LAYERS = (nn.LSTM, nn.GRU, nn.RNN)
_CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
_ALL_RECURRENT = _LAYERS + _CELLS
RECURRENT_TYPES = _LAYERS + _CELLS


@dataclass
class _Segment:
    """One call's recording of one layer direction (a module called twice yields two segments)."""

    series: dict[str, np.ndarray]
    error: float | None
    weights: dict[str, np.ndarray]
    lengths: np.ndarray | None = None


@dataclass
class _CellCall:
    x: torch.Tensor
    h_prev: torch.Tensor
    c_prev: torch.Tensor | None
    h: torch.Tensor
    c: torch.Tensor | None


@dataclass
class _Recorder:
    """Collects segments per (module, layer, direction) in call order, and the model's path."""

    spec: _gates.StoreSpec
    verify: bool
    chunk: int | None
    segments: dict[tuple[str, int, str], list[_Segment]] = field(default_factory=dict)
    cells: dict[str, list[_CellCall]] = field(default_factory=dict)
    path: list[dict[str, Any]] = field(default_factory=list)
    path_index: dict[str, int] = field(default_factory=dict)  # module name -> its entry in `path`
    # Packed sequences are padded back to this many steps (the padded input's length, which a
    # PackedSequence does not carry): given by the caller, or read from the model call's input.
    total_length: int | None = None
    input_dims: tuple[int, ...] = ()  # the first two sizes of the call's first input tensor

    def add(self, key: tuple[str, int, str], segment: _Segment) -> None:
        self.segments.setdefault(key, []).append(segment)

    def padded_length(self, batch: int, longest: int) -> int | None:
        """Steps to pad a packed batch of `batch` sequences to (None: its longest, `longest`).

        The caller's `total_length`, else the call input's other axis when one of its first two
        sizes is the batch (both readings agree when they are equal); never shorter than `longest`.
        """
        steps = self.total_length
        if steps is None and len(self.input_dims) >= 2:
            first, second = self.input_dims[:2]
            steps = second if first == batch else first if second == batch else None
        return steps if steps is not None and steps >= longest else None


def _config(module: nn.Module) -> RecurrentConfig:
    kind = type(module).__name__
    for base in RECURRENT_TYPES:  # subclasses of nn.LSTM etc. are traced as their base kind
        if isinstance(module, base):
            kind = base.__name__
            break
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    if isinstance(module, _LAYERS):
        return RecurrentConfig(
            kind=kind, input_size=module.input_size, hidden_size=module.hidden_size,
            num_layers=module.num_layers, bidirectional=module.bidirectional,
            proj_size=getattr(module, "proj_size", 0), batch_first=module.batch_first,
            bias=module.bias, nonlinearity=nonlinearity,
        )
    return RecurrentConfig(kind=kind, input_size=module.input_size, hidden_size=module.hidden_size,
                           bias=module.bias, nonlinearity=nonlinearity)


def _module_name(name: str, module: nn.Module) -> str:
    """named_modules() name; the model itself (name "") is called after its kind: "lstm", "gru"."""
    if name or not isinstance(module, RECURRENT_TYPES):
        return name
    return _config(module).kind.lower()


def _family(module: nn.Module) -> str:
    return _config(module).family


# -- the traced forward of nn.LSTM / nn.GRU / nn.RNN --------------------------------------------


def _direction_weights(module: nn.Module, layer: int, direction: int) -> _gates.Weights:
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    get = lambda n: getattr(module, n + suffix, None)  # noqa: E731
    return _gates.Weights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                          get("weight_hr"))


def _fused(module: nn.Module, x: torch.Tensor, batch_sizes: torch.Tensor | None,
           hx: Any, weights: list[torch.Tensor], bidirectional: bool) -> tuple:
    """One layer (both directions) through the op nn.LSTM/GRU/RNN.forward itself calls."""
    if isinstance(module, nn.LSTM):
        op = _VF.lstm
    elif isinstance(module, nn.GRU):
        op = _VF.gru
    else:
        op = _VF.rnn_tanh if module.nonlinearity == "tanh" else _VF.rnn_relu
    if batch_sizes is None:
        return op(x, hx, weights, module.bias, 1, 0.0, False, bidirectional, False)
    return op(x, batch_sizes, hx, weights, module.bias, 1, 0.0, False, bidirectional)


# oneDNN's training-mode LSTM keeps the activated gates of every step in its workspace; reading
# them costs nothing, where rebuilding them costs about as much as the forward's own GEMMs. The
# workspace layout is oneDNN's, so it is only trusted after a spot check against rebuilt gates
# (and the full c/h verification after it); anything else falls back to rebuilding.
_WORKSPACE_LIMIT = 1 << 30  # bytes of workspace we accept to keep alive per direction
USE_WORKSPACE = True  # off: always rebuild gates (the benchmark compares both)


def _mkldnn_usable(module: nn.Module, x: torch.Tensor, packed: bool) -> bool:
    return (isinstance(module, nn.LSTM) and not packed and module.proj_size == 0 and module.bias
            and x.device.type == "cpu" and x.dtype == torch.float32
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
            and hasattr(torch, "mkldnn_rnn_layer"))


def _workspace_gates(ws: torch.Tensor, x: torch.Tensor, h: torch.Tensor, h0: torch.Tensor,
                     w: _gates.Weights, reverse: bool) -> torch.Tensor | None:
    """The (T, B, 4H) activated gates inside a oneDNN workspace, or None if the layout is unknown."""
    steps, batch, _ = x.shape
    gates = 4 * w.w_hh.shape[1]
    flat = ws.view(torch.float32) if ws.dtype == torch.uint8 and ws.numel() % 4 == 0 else None
    if flat is None:
        return None
    probe = [0, steps - 1] if steps > 1 else [0]
    prev = [(h0 if (t == 0 and not reverse) or (t == steps - 1 and reverse)
             else h[t + 1] if reverse else h[t - 1]) for t in probe]
    want = torch.stack([torch.addmm(w.b_ih + w.b_hh, x[t], w.w_ih.t()).addmm_(p, w.w_hh.t())
                        for t, p in zip(probe, prev, strict=True)])
    i, f, g, o = want.split(gates // 4, dim=2)
    want = torch.cat([i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()], dim=2)
    aligned = -(-gates // 16) * 16  # oneDNN pads rows to 64 bytes, and off multiples of 256
    for stride in dict.fromkeys((aligned + 16 if aligned % 256 == 0 else aligned, aligned, gates)):
        if flat.numel() < steps * batch * stride:
            continue
        view = flat[: steps * batch * stride].view(steps, batch, stride)[..., :gates]
        if torch.allclose(view[probe], want, atol=1e-5, rtol=0):
            return view
    return None


def _mkldnn_layer(module: nn.Module, layer: int, x: torch.Tensor, h0: torch.Tensor,
                  c0: torch.Tensor) -> tuple | None:
    """One LSTM layer (each direction) through oneDNN in training mode, keeping its workspace."""
    dirs = 2 if module.bidirectional else 1
    steps, batch, _ = x.shape
    if steps * batch * 4 * module.hidden_size * 4 * 4 > _WORKSPACE_LIMIT:
        return None
    x = x.contiguous()
    outs, h_n, c_n, gates = [], [], [], []
    for k in range(dirs):
        w = _direction_weights(module, layer, k)
        with torch.enable_grad():  # the op returns its workspace only with grad mode on
            out, hn, cn, ws = torch.mkldnn_rnn_layer(
                x, w.w_ih.detach(), w.w_hh.detach(), w.b_ih.detach(), w.b_hh.detach(),
                h0[k], c0[k], k == 1, [], 2, module.hidden_size, 1, True, False, False, True)
        if ws is None:
            return None
        view = _workspace_gates(ws, x, out, h0[k], w, k == 1)
        if view is None:
            return None
        # A compact copy: a view would keep the whole workspace (about 4x the gates) alive.
        outs.append(out), h_n.append(hn), c_n.append(cn), gates.append(view.clone())
    out = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
    return out, torch.stack(h_n), torch.stack(c_n), gates


def _record_layer(module: nn.Module, name: str, layer: int, recorder: _Recorder,
                  x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None,
                  c_n: torch.Tensor | None, lengths: torch.Tensor | None,
                  gates: list[torch.Tensor] | None = None) -> None:
    """Rebuild the gates of both directions of one layer; x/out are time-major, original order.

    h0, c0 and c_n hold this layer's directions only (shape (directions, batch, units)).
    """
    cfg = _config(module)
    out_size = cfg.output_size
    steps = x.shape[0]
    valid = None
    lengths_np = None
    if lengths is not None:
        lengths = lengths.to(x.device)
        valid = torch.arange(steps, device=x.device)[:, None] < lengths[None, :]
        lengths_np = lengths.cpu().numpy().astype(np.int64)
    for k in range(2 if cfg.bidirectional else 1):
        reverse = k == 1
        h = out[..., k * out_size:(k + 1) * out_size]
        w = _direction_weights(module, layer, k)
        d = _gates.Direction(
            x=x, h=h, reverse=reverse, valid=valid,
            h_prev=_gates.shifted_prev(h, h0[k], reverse=reverse, lengths=lengths),
            c0=None if c0 is None else c0[k], c_real=None if c_n is None else c_n[k],
        )
        family = cfg.family
        common = {"verify": recorder.verify, "chunk": recorder.chunk, "lengths": lengths_np}
        if family == "lstm":
            series, err = _gates.trace_lstm(d, w, recorder.spec, gates=gates and gates[k],
                                            **common)
        elif family == "gru":
            series, err = _gates.trace_gru(d, w, recorder.spec, **common)
        else:
            series, err = _gates.trace_rnn(d, w, recorder.spec, nonlinearity=cfg.nonlinearity,
                                           **common)
        recorder.add((name, layer, "bwd" if reverse else "fwd"),
                     _Segment(series, err, w.to_numpy(), lengths_np))


def _traced_forward(module: nn.Module, name: str, recorder: _Recorder):
    """A stand-in for module.forward: same arguments, same checks, same return value."""
    is_lstm = isinstance(module, nn.LSTM)
    dirs = 2 if module.bidirectional else 1
    layers = module.num_layers
    out_size = (module.proj_size if is_lstm else 0) or module.hidden_size

    def forward(input: Any, hx: Any = None) -> Any:
        module._update_flat_weights()
        packed = isinstance(input, PackedSequence)
        batched = True
        batch_sizes = sorted_idx = unsorted_idx = None
        if packed:
            data, batch_sizes, sorted_idx, unsorted_idx = input
            batch = int(batch_sizes[0])
            like = data
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{type(module).__name__}: Expected input to be 2D or 3D, "
                                 f"got {input.dim()}D instead")
            batched = input.dim() == 3
            batch_dim = 0 if module.batch_first else 1
            if not batched:
                input = input.unsqueeze(batch_dim)
            batch = input.size(batch_dim)
            like = input
        if hx is None:
            h0 = torch.zeros(layers * dirs, batch, out_size, dtype=like.dtype, device=like.device)
            c0 = (torch.zeros(layers * dirs, batch, module.hidden_size, dtype=like.dtype,
                              device=like.device) if is_lstm else None)
        else:
            h0, c0 = hx if is_lstm else (hx, None)
            if not batched:
                h0 = h0.unsqueeze(1)
                c0 = None if c0 is None else c0.unsqueeze(1)
        check_hx = (h0, c0) if is_lstm else h0
        module.check_forward_args(data if packed else input, check_hx, batch_sizes)

        total = None
        if packed:
            total = recorder.padded_length(batch, batch_sizes.shape[0])
            # Time-major, the caller's batch order, as long as the padded input (NaN past each length).
            padded, lengths = pad_packed_sequence(input, total_length=total)
            layer_in = data
        else:
            padded = input.transpose(0, 1) if module.batch_first else input
            lengths = None
            layer_in = padded
        per = len(module._flat_weights) // (layers * dirs)
        h_n, c_n = [], []
        for layer in range(layers):
            sl = slice(layer * dirs, (layer + 1) * dirs)
            h0_l, c0_l = h0[sl], None if c0 is None else c0[sl]
            if sorted_idx is not None:  # the kernel sees sequences sorted by length
                h0_k = h0_l.index_select(1, sorted_idx)
                c0_k = None if c0_l is None else c0_l.index_select(1, sorted_idx)
            else:
                h0_k, c0_k = h0_l, c0_l
            result = gates = None
            if USE_WORKSPACE and _mkldnn_usable(module, layer_in, packed):
                result = _mkldnn_layer(module, layer, layer_in, h0_k, c0_k)
            if result is not None:
                result, gates = result[:3], result[3]
            else:
                weights = module._flat_weights[layer * dirs * per:(layer + 1) * dirs * per]
                result = _fused(module, layer_in, batch_sizes, (h0_k, c0_k) if is_lstm else h0_k,
                                weights, module.bidirectional)
            out = result[0]
            hn_l = result[1]
            cn_l = result[2] if is_lstm else None
            h_n.append(hn_l)
            if cn_l is not None:
                c_n.append(cn_l)
            if packed:
                out_padded, _ = pad_packed_sequence(
                    PackedSequence(out, batch_sizes, sorted_idx, unsorted_idx), total_length=total)
                cn_orig = None
                if cn_l is not None:
                    cn_orig = cn_l if unsorted_idx is None else cn_l.index_select(1, unsorted_idx)
            else:
                out_padded, cn_orig = out, cn_l
            _record_layer(module, name, layer, recorder, padded, out_padded, h0_l, c0_l,
                          cn_orig, lengths, gates)
            layer_in = out
            padded = out_padded
        hidden = torch.cat(h_n) if not is_lstm else (torch.cat(h_n), torch.cat(c_n))
        if packed:
            output = PackedSequence(layer_in, batch_sizes, sorted_idx, unsorted_idx)
            return output, module.permute_hidden(hidden, unsorted_idx)
        # A fresh tensor for the model: the trace keeps views of the kernel's own output, which
        # code after the module might otherwise change in place (nn.ReLU(inplace=True)).
        output = layer_in.clone()
        output = output.transpose(0, 1) if module.batch_first else output
        if not batched:
            output = output.squeeze(0 if module.batch_first else 1)
            hidden = hidden.squeeze(1) if not is_lstm else (hidden[0].squeeze(1), hidden[1].squeeze(1))
        return output, hidden

    return forward


# -- cells: one recorded step per call ----------------------------------------------------------


def _cell_hook(name: str, recorder: _Recorder):
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        x = args[0]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        batched = x.dim() == 2
        if not batched:
            x = x.unsqueeze(0)
        is_lstm = isinstance(module, nn.LSTMCell)
        h_out, c_out = output if is_lstm else (output, None)
        if hx is None:
            zeros = torch.zeros(x.shape[0], module.hidden_size, dtype=x.dtype, device=x.device)
            h_prev, c_prev = zeros, (zeros if is_lstm else None)
        else:
            h_prev, c_prev = hx if is_lstm else (hx, None)
        fix = (lambda t: t.unsqueeze(0)) if not batched else (lambda t: t)  # noqa: E731
        # Clones: a user loop may update its state tensors in place after the call.
        recorder.cells.setdefault(name, []).append(_CellCall(
            x=x.detach().clone(), h_prev=fix(h_prev).detach().clone(),
            c_prev=None if c_prev is None else fix(c_prev).detach().clone(),
            h=fix(h_out).detach().clone(), c=None if c_out is None else fix(c_out).detach().clone(),
        ))

    return hook


def _finish_cell(module: nn.Module, name: str, calls: list[_CellCall], recorder: _Recorder) -> None:
    batches = {call.x.shape[0] for call in calls}
    if len(batches) != 1:
        raise ModelError(f"{name}: the cell was called with varying batch sizes {sorted(batches)}; "
                         "lstmviz records one step per call and needs a fixed batch")
    stack = lambda attr: torch.stack([getattr(c, attr) for c in calls])  # noqa: E731
    x, h, h_prev = stack("x"), stack("h"), stack("h_prev")
    w = _gates.Weights(module.weight_ih, module.weight_hh, getattr(module, "bias_ih", None),
                       getattr(module, "bias_hh", None))
    family = _family(module)
    d = _gates.Direction(x=x, h=h, h_prev=_gates.explicit_prev(h_prev))
    common = {"verify": recorder.verify, "chunk": recorder.chunk}
    if family == "lstm":
        d.c_prev, d.c_real = stack("c_prev"), stack("c")
        series, err = _gates.trace_lstm(d, w, recorder.spec, **common)
    elif family == "gru":
        series, err = _gates.trace_gru(d, w, recorder.spec, **common)
    else:
        series, err = _gates.trace_rnn(d, w, recorder.spec, nonlinearity=module.nonlinearity,
                                       **common)
    recorder.add((name, 0, "fwd"), _Segment(series, err, w.to_numpy()))


# -- the architecture path ----------------------------------------------------------------------


def _shape(value: Any) -> list[int] | None:
    if isinstance(value, PackedSequence):
        return list(pad_packed_sequence(value, batch_first=True)[0].shape)
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)) and value:
        return _shape(value[0])
    if isinstance(value, dict) and value:
        return _shape(next(iter(value.values())))
    return None


def _path_hook(name: str, recorder: _Recorder):
    """Record `name` on the model's path once, at its first call; later calls only count.

    A loop (embedding → cell → head, 2,000 times) interleaves its modules' calls: collapsing by
    name keeps one entry per module, in first-call order, with its call count (the diagram's ×N).
    """
    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        index = recorder.path_index.get(name)
        if index is not None:
            recorder.path[index]["calls"] += 1
            return
        recorder.path_index[name] = len(recorder.path)
        recorder.path.append({"name": name, "type": type(module).__name__, "input": _shape(args),
                              "output": _shape(output), "calls": 1})

    return hook


@contextlib.contextmanager
def _hooked(model: nn.Module, recorder: _Recorder) -> Iterator[dict[str, nn.Module]]:
    """Install the per-instance forwards and hook handles; remove every one of them on exit."""
    found: dict[str, nn.Module] = {}
    handles = []
    replaced: list[tuple[nn.Module, bool, Any]] = []
    try:
        for raw, module in model.named_modules():
            name = _module_name(raw, module)
            recurrent = isinstance(module, RECURRENT_TYPES)
            if recurrent:
                found[name] = module
            if recurrent and isinstance(module, _LAYERS):
                had = "forward" in module.__dict__
                replaced.append((module, had, module.__dict__.get("forward")))
                module.__dict__["forward"] = _traced_forward(module, name, recorder)
            elif recurrent:
                handles.append(module.register_forward_hook(_cell_hook(name, recorder),
                                                            with_kwargs=True))
            if recurrent or not any(True for _ in module.children()):
                handles.append(module.register_forward_hook(_path_hook(raw or name, recorder)))
        yield found
    finally:
        for handle in handles:
            handle.remove()
        for module, had, previous in replaced:
            if had:
                module.__dict__["forward"] = previous
            else:
                module.__dict__.pop("forward", None)


# -- the public entry points --------------------------------------------------------------------


def _first_tensor(value: Any, total_length: int | None = None) -> torch.Tensor | None:
    """The first tensor in a (nested) value; a PackedSequence padded batch-first (to `total_length`)."""
    if isinstance(value, PackedSequence):
        longest = int(value.batch_sizes.shape[0])
        total = total_length if total_length is not None and total_length >= longest else None
        return pad_packed_sequence(value, batch_first=True, total_length=total)[0]
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item, total_length)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_tensor(list(value.values()), total_length)
    return None


def first_output(value: Any, steps: int, total_length: int | None = None) -> tuple[torch.Tensor | None, bool]:
    """The model's first output tensor, and whether it was stacked from a list of per-step tensors.

    A Python list of exactly `steps` tensors of one shape (d2l's `outputs.append(H)` per step) is
    stacked along a new leading time axis; anything else is `_first_tensor` (a PackedSequence is
    padded to `total_length`).
    """
    while isinstance(value, (tuple, list, dict)) and value:
        if isinstance(value, list) and len(value) == steps > 1 and all(
                isinstance(v, torch.Tensor) and v.shape == value[0].shape for v in value):
            return torch.stack(value), True
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return _first_tensor(value, total_length), False


def _device_of(model: nn.Module, inputs: Sequence[Any]) -> str:
    for p in model.parameters():
        return str(p.device)
    first = _first_tensor(list(inputs))
    return str(first.device) if first is not None else "cpu"


def _concat(segments: list[_Segment]) -> tuple[dict[str, np.ndarray], float | None]:
    if len(segments) == 1:
        return segments[0].series, segments[0].error
    names = segments[0].series.keys()
    batches = {s.series[n].shape[0] for s in segments for n in names}
    if len(batches) != 1:
        raise ModelError("a recurrent module was called several times with different batch "
                         f"sizes {sorted(batches)}; lstmviz concatenates calls along time")
    series = {n: np.concatenate([s.series[n] for s in segments], axis=1) for n in names}
    errors = [s.error for s in segments if s.error is not None]
    return series, (max(errors) if errors else None)


def trace(model: nn.Module, *inputs: Any, verify: bool = True, store_dtype: str = "float32",
          keep_series: Iterable[str] | None = None, keep_units: Sequence[int] | None = None,
          chunk_steps: int | None = None, total_length: int | None = None, **kwargs: Any) -> Trace:
    """Run `model(*inputs, **kwargs)` once in eval mode and record every recurrent gate.

    Memory options for very long sequences (the arrays are what a trace costs):
    `store_dtype="float16"` halves them; `keep_series=("f", "c", "h")` keeps only those series;
    `keep_units=[0, 5, 9]` keeps only those units. Verification always runs on full precision.
    `chunk_steps` bounds the gate workspace (time steps per batched matmul; default ~32 MB).
    A module called several times (a decoder loop) has its calls concatenated along time.

    Packed sequences are recorded as long as the padded input they came from, NaN past each
    length: `total_length` steps, or else the other of the first two sizes of the first input
    tensor when one of them is the packed batch (a model that packs its padded (B, T) or (T, B)
    input inside); a PackedSequence passed in directly is as long as its longest sequence.
    """
    spec = _gates.StoreSpec(
        dtype=np.dtype(store_dtype),
        series=None if keep_series is None else frozenset(keep_series),
        units=_gates.select_units(keep_units),
    )
    if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)):
        raise ValueError(f"store_dtype must be float32, float16 or float64, not {store_dtype!r}")
    recorder = _Recorder(spec=spec, verify=verify, chunk=chunk_steps, total_length=total_length)
    first_input = next((v for v in inputs if isinstance(v, torch.Tensor)), None)
    if first_input is not None:
        recorder.input_dims = tuple(int(d) for d in first_input.shape[:2])
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings(), _hooked(model, recorder) as found:
            # cuDNN warns that one layer's weights are not one flat buffer; the copy is intended.
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            # Projected LSTMs run PyTorch's own kernel instead of oneDNN: expected, not news.
            warnings.filterwarnings("ignore", message=".*projections is not supported with oneDNN.*")
            if not found:
                raise ModelError(f"{type(model).__name__} has no nn.LSTM, nn.GRU, nn.RNN or "
                                 "cell module to trace")
            output = model(*inputs, **kwargs)
            for name, calls in recorder.cells.items():
                _finish_cell(found[name], name, calls, recorder)
    finally:
        model.train(was_training)
    return _assemble(model, inputs, found, recorder, output, verify)


def _assemble(model: nn.Module, inputs: Sequence[Any], found: dict[str, nn.Module],
              recorder: _Recorder, output: Any, verify: bool) -> Trace:
    layers: list[LayerTrace] = []
    lengths: dict[str, np.ndarray] = {}
    errors: dict[str, float | None] = {}
    modules = {name: _config(module) for name, module in found.items()}
    for (name, layer, direction), segments in recorder.segments.items():
        series, err = _concat(segments)
        order = [s for s in SERIES[modules[name].family] if s in series]
        if "m" in series:
            order.insert(order.index("h"), "m") if "h" in order else order.append("m")
        layers.append(LayerTrace(module=name, layer=layer, direction=direction,
                                 config=modules[name], series={s: series[s] for s in order},
                                 weights=segments[0].weights))
        errors[f"{name}/l{layer}/{direction}"] = err
        seg_lengths = segments[0].lengths
        steps = next(iter(series.values())).shape[1] if series else 0
        if len(segments) == 1 and seg_lengths is not None and (
                len(set(seg_lengths.tolist())) > 1 or int(seg_lengths.min()) < steps):
            lengths[name] = seg_lengths
    layers.sort(key=lambda lt: (list(found).index(lt.module), lt.layer, lt.direction != "fwd"))
    traced = {lt.module for lt in layers}
    first = _first_tensor(output, recorder.total_length)
    meta: dict[str, Any] = {
        "path": recorder.path,
        "device": _device_of(model, inputs),
        "store_dtype": recorder.spec.dtype.name,
        "not_called": sorted(set(found) - traced),
    }
    if recorder.spec.series is not None:
        meta["kept_series"] = sorted(recorder.spec.series)
    if recorder.spec.units is not None:
        meta["kept_units"] = recorder.spec.units.tolist()
    verify_error = None
    if verify:
        meta["verify_errors"] = errors
        known = [e for e in errors.values() if e is not None]
        verify_error = float(max(known)) if known else 0.0
        if not verify_error <= VERIFY_TOLERANCE:  # NaN fails too
            worst = max(errors, key=lambda k: -1.0 if errors[k] is None else
                        (np.inf if np.isnan(errors[k]) else errors[k]))
            raise VerificationError(
                f"the recorded gates of {worst} reproduce the module's outputs only to "
                f"{verify_error:.2e} (tolerance {VERIFY_TOLERANCE:.0e}); rerun with --no-verify "
                "to see the trace anyway")
    return Trace(layers=layers, modules=modules, lengths=lengths, verify_error=verify_error,
                 output=None if first is None else first.detach().to("cpu", torch.float32).numpy(),
                 meta=meta)


def _model_batch_first(loaded: Any) -> bool:
    """The model call's layout: the loader's word if it gave one, else the first recurrent module's."""
    if "batch_first" in loaded.meta:
        return bool(loaded.meta["batch_first"])
    for _, module in loaded.model.named_modules():
        if isinstance(module, _LAYERS):
            return bool(module.batch_first)
        if isinstance(module, _CELLS):
            return True
    return True


def _sample_tensor(model: nn.Module, sample: Any, device: str) -> torch.Tensor:
    """The sample's values as a batch-major tensor in the model's dtype (token ids stay int64)."""
    if sample.kind == "tokens":
        return torch.as_tensor(np.asarray(sample.values), dtype=torch.int64, device=device)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return torch.as_tensor(np.asarray(sample.values, dtype=np.float32), device=device).to(dtype)


def _layer_shapes(result: Trace) -> set[tuple[int, int]]:
    """The (batch, steps) of every recorded layer."""
    return {tuple(int(d) for d in next(iter(lt.series.values())).shape[:2]) for lt in result.layers
            if lt.series}


@dataclass
class _Attempt:
    """One run of the model in one layout: its trace, or the error it raised."""

    batch_first: bool
    result: Trace | None = None
    error: LstmvizError | None = None
    warnings: list[str] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)  # the model's return value (its first call)


def _transposed_input_error(sample: Any) -> InputError:
    b, t = sample.batch, sample.steps
    return InputError(
        f"the model steps through the first axis of its input: it ran {b} steps of {t} sequence(s), but "
        f"this input reads as {b} sequence(s) × {t} step(s) (lstmviz reads 3-D arrays as (batch, time, "
        "features) and 2-D token arrays as (batch, time), whatever the model's layout); save one sequence "
        "as (time, features) or a 1-D token array, and lstmviz feeds it in the model's own layout")


def trace_sample(
    loaded: Any, sample: Any, *, verify: bool = True, module: str | None = None,
    forward_args: Mapping[str, str] | None = None, **options: Any
) -> Trace:
    """Trace a LoadedModel on a SampleInput (always batch-major) the way its forward expects.

    Padded `sample.lengths` are packed when the model is a bare recurrent stack (padding would
    change its states); a model whose forward takes other arguments gets them from the sample
    (`_forwardargs`: its lengths, arrays of an .npz, `forward_args` {parameter: array}); every
    series is as long as the padded input, NaN past each length. A model with no stock recurrent
    layer, or a named `module`, is opened up by the hand-written-cell tracer (cells.py).

    The model is called in its own layout: the loader's word, else its first stock layer's
    `batch_first`. When that is unknown or wrong (a hand-written cell looping `for x in inputs`
    over a (time, batch, features) tensor, a model that fails in that layout) the other layout is
    tried too; the one whose recorded (batch, steps) are the sample's is kept (`meta
    ["model_batch_first"]`). The model's output is stored batch-major, (batch, time, ...) when it
    has a time axis (`_layout`; `meta["output_layout"]` names its own axes). Errors the model
    raises are one-line ModelErrors; `options` go to `trace`.
    """
    from lstmviz_cli._warncapture import captured_warnings
    from lstmviz_cli.tracing import forwardargs as _forwardargs
    from lstmviz_cli.tracing.layout import locate_output_axes, to_batch_major

    model, device = loaded.model, loaded.device
    x = _sample_tensor(model, sample, device)
    batch, steps = sample.batch, sample.steps
    bare = isinstance(model, _LAYERS)
    lengths = None if sample.lengths is None else np.asarray(sample.lengths, dtype=np.int64)
    padded = lengths is not None and int(lengths.min()) < steps
    notes: list[str] = []
    kwargs: dict[str, Any] = {}
    plan = None
    packed_input = None
    if bare:
        if forward_args:
            raise InputError("--forward-arg: a bare nn.LSTM/GRU/RNN takes only its input")
        if padded:
            if sample.kind != "features":
                raise InputError("a bare recurrent stack takes feature arrays, not token ids")
            packed_input = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                                enforce_sorted=False)
    else:
        plan = _forwardargs.plan_forward_args(model, sample, forward_args)
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        kwargs = _forwardargs.forward_kwargs(plan, sample, device=device, dtype=dtype)
        notes.extend(plan.notes)
    custom = module is not None or not any(isinstance(m, _ALL_RECURRENT) for m in model.modules())

    def attempt(batch_first: bool) -> _Attempt:
        tried = _Attempt(batch_first)
        if packed_input is not None:
            call_input: Any = packed_input
        else:
            call_input = x if batch_first or x.dim() < 2 else x.transpose(0, 1)
        # The model's whole return value (the tracers keep its first tensor only).
        handle = model.register_forward_hook(lambda _m, _a, out: tried.raw.append(out) if not tried.raw else None)
        with captured_warnings() as caught:
            try:
                if custom:
                    from lstmviz_cli.tracing.cells import trace_custom

                    tried.result = trace_custom(model, call_input, module=module, verify=verify, **kwargs)
                else:
                    tried.result = trace(model, call_input, verify=verify, total_length=steps, **kwargs,
                                         **options)
            except VerificationError:
                raise
            except LstmvizError as error:
                tried.error = error
            except (RuntimeError, ValueError, IndexError, TypeError, AttributeError, KeyError) as exc:
                text = str(exc).strip()
                first_line = text.splitlines()[0] if text else type(exc).__name__
                tried.error = ModelError(f"the model failed on the sample ({sample.description}): {first_line}")
                tried.error.__cause__ = exc
            finally:
                handle.remove()
        tried.warnings = caught
        return tried

    preferred = _model_batch_first(loaded)
    can_switch = packed_input is None and x.dim() >= 2 and "batch_first" not in loaded.meta and (batch, steps) != (1, 1)
    first = attempt(preferred)
    chosen = first
    shapes = _layer_shapes(first.result) if first.result is not None else set()
    transposed = bool(shapes) and shapes == {(steps, batch)} and batch != steps
    if can_switch and (first.error is not None or transposed):
        second = attempt(not preferred)
        if second.result is not None and _layer_shapes(second.result) == {(batch, steps)}:
            chosen = second
            layout = "(batch, time, …)" if second.batch_first else "(time, batch, …)"
            notes.append(f"the model reads its input as {layout}: lstmviz fed it in that layout "
                         f"({'it failed' if first.error is not None else 'it stepped over the wrong axis'} "
                         "in the other)")
        elif transposed:
            raise _transposed_input_error(sample)
    elif transposed:
        raise _transposed_input_error(sample)
    if chosen.error is not None:
        raise chosen.error
    result = chosen.result
    assert result is not None
    used_batch_first = True if packed_input is not None else (chosen.batch_first or x.dim() < 2)
    other = sorted({(lt.prefix, lt.steps) for lt in result.layers if lt.steps != steps})
    for prefix, count in other:
        notes.append(f"{prefix} ran {count} step{'s' if count != 1 else ''} on a {steps}-step input (the "
                     "model feeds it another sequence, or calls it repeatedly): its figures count its own steps")
    if custom and batch == steps > 1 and chosen is first:
        fed = "(batch, time, …)" if used_batch_first else "(time, batch, …)"
        notes.append(f"batch and time are both {batch}: the hand-written model was fed {fed}; lstmviz cannot "
                     "tell from shapes whether it steps over the other axis")
    stacked = False
    if chosen.raw:
        output, stacked = first_output(chosen.raw[0], steps, steps)
        result.output = None if output is None else output.detach().to("cpu", torch.float32).numpy()
    if result.output is not None:
        # A list of per-step tensors was stacked time first, whatever the call's layout.
        axes = locate_output_axes(result.output.shape, batch=batch, steps=steps,
                                  batch_first=used_batch_first and not stacked)
        result.output = np.ascontiguousarray(to_batch_major(result.output, axes, batch=batch, steps=steps))
        result.meta["output_layout"] = axes.layout
        if axes.note:
            notes.append(axes.note)
    result.meta.update({
        "sample": sample.description,
        "sample_kind": sample.kind,
        "batch": batch,
        "steps": steps,
        "packed": packed_input is not None,
        "model_batch_first": used_batch_first,
        "forward_args": None if plan is None else plan.to_meta(),
        "notes": notes,
        "model_warnings": chosen.warnings,
    })
    if sample.labels is not None:
        result.meta["labels"] = list(sample.labels)
    return result
