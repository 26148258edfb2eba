"""The fast path: each layer of a stock nn.LSTM/GRU/RNN through the fused kernel its own forward calls.

Private torch entry points (`_VF.lstm` and friends, `torch.mkldnn_rnn_layer`) called with PyTorch's own
positional arguments. On CPU, an unprojected float32 LSTM runs through oneDNN in training mode, whose
workspace already holds the activated gates of every step; its layout is only trusted after a spot check
against rebuilt gates (and the full c/h verification after it), otherwise the gates are rebuilt.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import _VF, nn

from lstmviz_cli.tracing import gates as _gates


def direction_weights(module: nn.Module, layer: int, direction: int) -> _gates.Weights:
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    get = lambda n: getattr(module, n + suffix, None)  # noqa: E731
    return _gates.Weights(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                          get("weight_hr"))


def fused_layer(module: nn.Module, x: torch.Tensor, batch_sizes: torch.Tensor | None,
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


def mkldnn_usable(module: nn.Module, x: torch.Tensor, packed: bool) -> bool:
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


def mkldnn_layer(module: nn.Module, layer: int, x: torch.Tensor, h0: torch.Tensor,
                  c0: torch.Tensor) -> tuple | None:
    """One LSTM layer (each direction) through oneDNN in training mode, keeping its workspace."""
    dirs = 2 if module.bidirectional else 1
    steps, batch, _ = x.shape
    if steps * batch * 4 * module.hidden_size * 4 * 4 > _WORKSPACE_LIMIT:
        return None
    x = x.contiguous()
    outs, h_n, c_n, gates = [], [], [], []
    for k in range(dirs):
        w = direction_weights(module, layer, k)
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
