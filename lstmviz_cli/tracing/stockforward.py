"""The traced forward of nn.LSTM / nn.GRU / nn.RNN: same arguments, same checks, same return value.

While tracing, each stock recurrent instance runs its layers one at a time through a kernel route
(`tracing.kernels`: the fused op its own forward calls, or oneDNN's workspace), chosen once per
module call, so the intermediate layers' h sequences come out of the kernel at no extra cost. The
gates of both directions are then rebuilt from [x_t, h_(t-1)] in batched matmuls, or taken from the
route, and verified against the layer's outputs (`tracing.gates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmviz_cli.loading.modules import recurrent_config
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing.kernels import LayerCall, LayerRun, direction_weights, select_routes
from lstmviz_cli.tracing.recorder import Recorder, Segment

Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _record_layer(module: nn.RNNBase, name: str, layer: int, recorder: Recorder, x: torch.Tensor,
                  out: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor | None, c_n: torch.Tensor | None,
                  lengths: torch.Tensor | None, gates: list[torch.Tensor] | None, route: str) -> None:
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
        if cfg.family == "lstm":
            series, err = _gates.trace_lstm(d, w, recorder.spec, verify=recorder.verify, chunk=recorder.chunk,
                                            lengths=lengths_np, gates=None if gates is None else gates[k])
        elif cfg.family == "gru":
            series, err = _gates.trace_gru(d, w, recorder.spec, verify=recorder.verify, chunk=recorder.chunk,
                                           lengths=lengths_np)
        else:
            series, err = _gates.trace_rnn(d, w, recorder.spec, verify=recorder.verify, chunk=recorder.chunk,
                                           lengths=lengths_np, nonlinearity=cfg.nonlinearity)
        recorder.add((name, layer, "bwd" if reverse else "fwd"),
                     Segment(series, err, w.to_numpy(), lengths_np, route=route))


@dataclass
class TracedForward:
    """A stand-in for one module's forward while it is traced: same arguments, checks and return value.

    Installed on the instance by `tracing.hooks`; every call runs the module layer by layer through
    the routes `select_routes` picks for that call, records each layer, and returns exactly what
    the module's own forward returns.
    """

    module: nn.RNNBase
    name: str
    recorder: Recorder

    @property
    def _is_lstm(self) -> bool:
        return isinstance(self.module, nn.LSTM)

    def _initial_state(self, hx: Hidden | None, batch: int, like: torch.Tensor, batched: bool
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        module = self.module
        directions = 2 if module.bidirectional else 1
        out_size = (module.proj_size if self._is_lstm else 0) or module.hidden_size
        if hx is None:
            h0 = torch.zeros(module.num_layers * directions, batch, out_size, dtype=like.dtype, device=like.device)
            c0 = (torch.zeros(module.num_layers * directions, batch, module.hidden_size, dtype=like.dtype,
                              device=like.device) if self._is_lstm else None)
            return h0, c0
        if isinstance(hx, tuple):
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        if not batched:
            h0 = h0.unsqueeze(1)
            c0 = None if c0 is None else c0.unsqueeze(1)
        return h0, c0

    def __call__(self, input: torch.Tensor | PackedSequence, hx: Hidden | None = None
                 ) -> tuple[torch.Tensor | PackedSequence, Hidden]:
        module = self.module
        module._update_flat_weights()
        batch_sizes = sorted_idx = unsorted_idx = None
        batched = True
        if isinstance(input, PackedSequence):
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
        h0, c0 = self._initial_state(hx, batch, like, batched)
        checked = data if batch_sizes is not None else input
        assert isinstance(checked, torch.Tensor)
        if isinstance(module, nn.LSTM):
            assert c0 is not None
            module.check_forward_args(checked, (h0, c0), batch_sizes)
        else:
            module.check_forward_args(checked, h0, batch_sizes)

        total = None
        if isinstance(input, PackedSequence):
            assert batch_sizes is not None
            total = self.recorder.padded_length(batch, int(batch_sizes.shape[0]))
            # Time-major, the caller's batch order, as long as the padded input (NaN past each length).
            padded, lengths = pad_packed_sequence(input, total_length=total)
            layer_in = data
        else:
            padded = input.transpose(0, 1) if module.batch_first else input
            lengths = None
            layer_in = padded
        routes = select_routes(module, layer_in, packed=batch_sizes is not None, kernel=self.recorder.kernel)
        directions = 2 if module.bidirectional else 1
        h_n, c_n = [], []
        for layer in range(module.num_layers):
            span = slice(layer * directions, (layer + 1) * directions)
            h0_l, c0_l = h0[span], None if c0 is None else c0[span]
            if sorted_idx is not None:  # the kernel sees sequences sorted by length
                h0_k = h0_l.index_select(1, sorted_idx)
                c0_k = None if c0_l is None else c0_l.index_select(1, sorted_idx)
            else:
                h0_k, c0_k = h0_l, c0_l
            call = LayerCall(module, layer, layer_in, batch_sizes, h0_k, c0_k)
            run: LayerRun | None = None
            route = routes[-1].name
            for candidate in routes:  # the last route (the fused kernel) never declines
                run = candidate.run(call)
                if run is not None:
                    route = candidate.name
                    break
            assert run is not None
            h_n.append(run.h_n)
            if run.c_n is not None:
                c_n.append(run.c_n)
            if batch_sizes is not None:
                out_padded, _ = pad_packed_sequence(
                    PackedSequence(run.output, batch_sizes, sorted_idx, unsorted_idx), total_length=total)
                cn_orig = None
                if run.c_n is not None:
                    cn_orig = run.c_n if unsorted_idx is None else run.c_n.index_select(1, unsorted_idx)
            else:
                out_padded, cn_orig = run.output, run.c_n
            _record_layer(module, self.name, layer, self.recorder, padded, out_padded, h0_l, c0_l,
                          cn_orig, lengths, run.gates, route)
            layer_in = run.output
            padded = out_padded
        hidden: Hidden = (torch.cat(h_n), torch.cat(c_n)) if self._is_lstm else torch.cat(h_n)
        if batch_sizes is not None:
            packed_hidden = module.permute_hidden(hidden, unsorted_idx)  # type: ignore[arg-type]
            return PackedSequence(layer_in, batch_sizes, sorted_idx, unsorted_idx), packed_hidden
        # A fresh tensor for the model: the trace keeps views of the kernel's own output, which
        # code after the module might otherwise change in place (nn.ReLU(inplace=True)).
        output = layer_in.clone()
        output = output.transpose(0, 1) if module.batch_first else output
        if not batched:
            output = output.squeeze(0 if module.batch_first else 1)
            hidden = (hidden[0].squeeze(1), hidden[1].squeeze(1)) if isinstance(hidden, tuple) else hidden.squeeze(1)
        return output, hidden
