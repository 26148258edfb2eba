"""The fast path as named routes: each layer of a stock nn.LSTM/GRU/RNN through a fused kernel.

A route runs one layer (both directions) of a module call and returns what the module's own forward
would compute for it, plus, when it has them, the activated gates of every step:

    FusedKernel             the op nn.LSTM/GRU/RNN.forward itself calls (`torch._VF.lstm`, `gru`,
                            `rnn_tanh`, `rnn_relu`), one layer at a time; gates are rebuilt afterwards
                            (`tracing.gates`) and verified against the layer's c/h.
    OneDnnWorkspaceKernel   on CPU, an unprojected float32 LSTM through oneDNN in training mode
                            (`torch.mkldnn_rnn_layer`), whose workspace already holds the activated
                            gates of every step: reading them costs nothing, where rebuilding them
                            costs about as much as the forward's own GEMMs. The layout is oneDNN's:
                            spot-checked against gates rebuilt at two steps, then verified with c/h
                            like any rebuild; when either fails the route declines the layer.

`select_routes` chooses the routes for one module call, in the order they are tried (a route that
declines a layer passes it to the next; the fused kernel never declines). The caller says which it
wants: `trace(..., kernel="auto" | "fused" | "onednn-workspace")`; the benchmark and the tests
compare them that way. Both private ops are called with keyword arguments, named as in their
schemas (`torch/_C/_VariableFunctions.pyi`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import _VF, nn

from lstmviz_cli.families import GATE_SERIES, LSTM
from lstmviz_cli.tracing import gates as _gates

KERNELS = ("auto", "fused", "onednn-workspace")


class LayerCall(NamedTuple):
    """One layer of one module call, as its kernel takes it (time-major, or a packed batch's data)."""

    module: nn.RNNBase
    layer: int
    x: torch.Tensor  # (T, B, I) time-major, or (sum of lengths, I) packed data
    batch_sizes: torch.Tensor | None  # a packed batch's, else None
    h0: torch.Tensor  # (directions, B, out) this layer's initial states, in the kernel's batch order
    c0: torch.Tensor | None  # (directions, B, H) for an LSTM


class LayerRun(NamedTuple):
    """What a route computed for one layer: exactly what the module's own forward computes."""

    output: torch.Tensor  # like x: (T, B, directions * out), or packed data
    h_n: torch.Tensor  # (directions, B, out)
    c_n: torch.Tensor | None  # (directions, B, H) for an LSTM
    gates: list[torch.Tensor] | None = None  # per direction (T, B, 4H), activated i f g o; None: rebuild


class KernelRoute(Protocol):
    """A way to run one layer; `run` returns None to decline it (the next route runs it)."""

    @property
    def name(self) -> str: ...

    def run(self, call: LayerCall) -> LayerRun | None: ...


def direction_weights(module: nn.RNNBase, layer: int, direction: int) -> _gates.Weights:
    """One direction's parameters of one layer (PyTorch's names: weight_ih_l0_reverse, ...)."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")

    def get(name: str) -> torch.Tensor | None:
        value = getattr(module, name + suffix, None)  # an attribute, so parametrized weights work too
        return value if isinstance(value, torch.Tensor) else None

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    assert w_ih is not None and w_hh is not None
    return _gates.Weights(w_ih, w_hh, get("bias_ih"), get("bias_hh"), get("weight_hr"))


def fused_layer(module: nn.RNNBase, x: torch.Tensor, batch_sizes: torch.Tensor | None,
                hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor], weights: list[torch.Tensor],
                bidirectional: bool) -> tuple[torch.Tensor, ...]:
    """One layer through the op nn.LSTM/GRU/RNN.forward itself calls, with `weights` (its flat weights
    of that layer, one or both directions): (output, h_n[, c_n]) as the op returns them."""
    has_biases = bool(module.bias)
    if isinstance(module, nn.LSTM):
        assert isinstance(hx, tuple)
        if batch_sizes is None:
            return tuple(_VF.lstm(input=x, hx=hx, params=weights, has_biases=has_biases, num_layers=1, dropout=0.0,
                                  train=False, bidirectional=bidirectional, batch_first=False))
        return tuple(_VF.lstm(data=x, batch_sizes=batch_sizes, hx=hx, params=weights, has_biases=has_biases,
                              num_layers=1, dropout=0.0, train=False, bidirectional=bidirectional))
    assert isinstance(hx, torch.Tensor)
    if isinstance(module, nn.GRU):
        op = _VF.gru
    elif module.nonlinearity == "tanh":
        op = _VF.rnn_tanh
    else:
        op = _VF.rnn_relu
    if batch_sizes is None:
        return tuple(op(input=x, hx=hx, params=weights, has_biases=has_biases, num_layers=1, dropout=0.0,
                        train=False, bidirectional=bidirectional, batch_first=False))
    return tuple(op(data=x, batch_sizes=batch_sizes, hx=hx, params=weights, has_biases=has_biases, num_layers=1,
                    dropout=0.0, train=False, bidirectional=bidirectional))


def _layer_weights(module: nn.RNNBase, layer: int) -> list[torch.Tensor]:
    """The flat weights of one layer, both directions, in the order the fused op takes them."""
    directions = 2 if module.bidirectional else 1
    per = len(module._flat_weights) // (module.num_layers * directions)
    flat = module._flat_weights[layer * directions * per:(layer + 1) * directions * per]
    assert all(w is not None for w in flat)
    return [w for w in flat if w is not None]


@dataclass(frozen=True)
class FusedKernel:
    """The op the module's own forward calls, for one layer (both directions): exact by construction."""

    name: str = "fused"

    def run(self, call: LayerCall) -> LayerRun:
        module = call.module
        weights = _layer_weights(module, call.layer)
        is_lstm = isinstance(module, nn.LSTM)
        if is_lstm:
            assert call.c0 is not None
            result = fused_layer(module, call.x, call.batch_sizes, (call.h0, call.c0), weights, module.bidirectional)
        else:
            result = fused_layer(module, call.x, call.batch_sizes, call.h0, weights, module.bidirectional)
        return LayerRun(result[0], result[1], result[2] if is_lstm else None)


# ideep::rnn_kind::LSTM (third_party/ideep/include/ideep/abstract_types.hpp), as torch's own
# decomposition of nn.LSTM into mkldnn_rnn_layer passes it (torch/_decomp/decompositions.py).
_ONEDNN_LSTM = 2
_WORKSPACE_LIMIT = 1 << 30  # bytes of workspace we accept to keep alive per direction


def onednn_gates_ld(gates: int, itemsize: int = 4) -> int:
    """oneDNN's leading dimension of the gates in its workspace (`rnn_utils::get_good_ld`): rows are
    padded to 64 bytes, and by another 64 bytes when that is a multiple of 256 elements (4K aliasing)."""
    per = 64 // itemsize
    ld = -(-gates // per) * per
    return ld + per if ld % 256 == 0 else ld


@dataclass(frozen=True)
class OneDnnWorkspaceKernel:
    """An unprojected float32 LSTM on CPU through oneDNN in training mode: the gates from its workspace."""

    name: str = "onednn-workspace"

    @staticmethod
    def usable(module: nn.RNNBase, x: torch.Tensor, packed: bool) -> bool:
        return bool(isinstance(module, nn.LSTM) and not packed and module.proj_size == 0 and module.bias
                    and x.device.type == "cpu" and x.dtype == torch.float32
                    and torch._C._has_mkldnn and torch._C._get_mkldnn_enabled()
                    and hasattr(torch, "mkldnn_rnn_layer"))

    def run(self, call: LayerCall) -> LayerRun | None:
        module = call.module
        if call.batch_sizes is not None or call.c0 is None:
            return None
        steps, batch, _ = call.x.shape
        if steps * batch * 4 * module.hidden_size * 4 * 4 > _WORKSPACE_LIMIT:
            return None
        x = call.x.contiguous()
        outs: list[torch.Tensor] = []
        h_n: list[torch.Tensor] = []
        c_n: list[torch.Tensor] = []
        gates: list[torch.Tensor] = []
        for k in range(2 if module.bidirectional else 1):
            w = direction_weights(module, call.layer, k)
            assert w.b_ih is not None and w.b_hh is not None
            with torch.enable_grad():  # the op returns its workspace only with grad mode on
                out, hn, cn, workspace = torch.mkldnn_rnn_layer(
                    input=x, weight0=w.w_ih.detach(), weight1=w.w_hh.detach(), weight2=w.b_ih.detach(),
                    weight3=w.b_hh.detach(), hx_=call.h0[k], cx_=call.c0[k], reverse=k == 1, batch_sizes=[],
                    mode=_ONEDNN_LSTM, hidden_size=module.hidden_size, num_layers=1, has_biases=True,
                    bidirectional=False, batch_first=False, train=True)
            view = _workspace_gates(workspace, x, out, call.h0[k], w, reverse=k == 1)
            if view is None:
                return None
            # A compact copy: a view would keep the whole workspace (about 4x the gates) alive.
            outs.append(out)
            h_n.append(hn)
            c_n.append(cn)
            gates.append(view if k == 1 else view.clone())
        output = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        return LayerRun(output, torch.stack(h_n), torch.stack(c_n), gates)


def _workspace_gates(workspace: torch.Tensor | None, x: torch.Tensor, h: torch.Tensor, h0: torch.Tensor,
                     w: _gates.Weights, *, reverse: bool) -> torch.Tensor | None:
    """The (T, B, 4H) activated gates inside a oneDNN workspace, in input order, or None when they are
    not where oneDNN's layout puts them (checked against gates rebuilt at the first and last step)."""
    if workspace is None or workspace.dtype != torch.uint8 or workspace.numel() % 4:
        return None
    flat = workspace.view(torch.float32)
    steps, batch, _ = x.shape
    gates = 4 * w.w_hh.shape[1]
    stride = onednn_gates_ld(gates)
    if flat.numel() < steps * batch * stride:
        return None
    probe = [0, steps - 1] if steps > 1 else [0]
    prev = [(h0 if (t == 0 and not reverse) or (t == steps - 1 and reverse)
             else h[t + 1] if reverse else h[t - 1]) for t in probe]
    assert w.b_ih is not None and w.b_hh is not None
    want = torch.stack([torch.addmm(w.b_ih + w.b_hh, x[t], w.w_ih.t()).addmm_(p, w.w_hh.t())
                        for t, p in zip(probe, prev, strict=True)])
    want = torch.cat([block.sigmoid() if name in GATE_SERIES else block.tanh()
                      for name, block in zip(LSTM.gates, torch.split(want, gates // 4, dim=2), strict=True)], dim=2)
    view = flat[: steps * batch * stride].view(steps, batch, stride)[..., :gates]
    if reverse:  # oneDNN keeps a reverse direction's steps in the order it reads them: last step first
        view = view.flip(0)  # a copy, in input order
    return view if torch.allclose(view[probe], want, atol=1e-5, rtol=0) else None


FUSED: KernelRoute = FusedKernel()
ONEDNN_WORKSPACE: KernelRoute = OneDnnWorkspaceKernel()


def select_routes(module: nn.RNNBase, x: torch.Tensor, *, packed: bool, kernel: str = "auto"
                  ) -> tuple[KernelRoute, ...]:
    """The routes for one module call, in the order tried: the workspace route where it can run and
    is wanted ("auto" or "onednn-workspace"), then the fused kernel (which runs any layer)."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
    if kernel != "fused" and OneDnnWorkspaceKernel.usable(module, x, packed):
        return (ONEDNN_WORKSPACE, FUSED)
    return (FUSED,)
