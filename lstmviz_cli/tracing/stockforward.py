"""The traced forward of nn.LSTM / nn.GRU / nn.RNN: same arguments, same checks, same return value.

While tracing, each stock recurrent instance runs its layers one at a time through the fused kernel
(`tracing.kernels`), so the intermediate layers' h sequences come out of the kernel at no extra cost,
and the gates of both directions are rebuilt from [x_t, h_(t-1)] in batched matmuls (`tracing.gates`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmviz_cli.loading.modules import recurrent_config
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing import kernels
from lstmviz_cli.tracing.kernels import direction_weights, fused_layer, mkldnn_layer, mkldnn_usable
from lstmviz_cli.tracing.recorder import Recorder, Segment


def _record_layer(module: nn.Module, name: str, layer: int, recorder: Recorder,
                  x: torch.Tensor, out: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None,
                  c_n: torch.Tensor | None, lengths: torch.Tensor | None,
                  gates: list[torch.Tensor] | None = None) -> None:
    """Rebuild the gates of both directions of one layer; x/out are time-major, original order.

    h0, c0 and c_n hold this layer's directions only (shape (directions, batch, units)).
    """
    cfg = recurrent_config(module)
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
        w = direction_weights(module, layer, k)
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
                     Segment(series, err, w.to_numpy(), lengths_np))


def traced_forward(module: nn.Module, name: str, recorder: Recorder):
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
            # kernels.USE_WORKSPACE is read at call time: the benchmark and the tests switch it off.
            if kernels.USE_WORKSPACE and mkldnn_usable(module, layer_in, packed):
                result = mkldnn_layer(module, layer, layer_in, h0_k, c0_k)
            if result is not None:
                result, gates = result[:3], result[3]
            else:
                weights = module._flat_weights[layer * dirs * per:(layer + 1) * dirs * per]
                result = fused_layer(module, layer_in, batch_sizes, (h0_k, c0_k) if is_lstm else h0_k,
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
