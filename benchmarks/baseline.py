"""The peer baseline: the per-step Python loop people write by hand to see an LSTM's/GRU's gates."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def python_loop_trace(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every gate of every layer/direction of a batch-first nn.LSTM/nn.GRU, one step at a time.

    Straightforward on purpose (a matmul pair and the gate equations per step, lists stacked at
    the end): this is what lstmviz's batched reconstruction is measured against.
    """
    is_lstm = isinstance(module, nn.LSTM)
    dirs = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    proj = getattr(module, "proj_size", 0)
    batch, steps, _ = x.shape
    out: dict[str, torch.Tensor] = {}
    layer_in = x
    for layer in range(module.num_layers):
        outputs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = getattr(module, "weight_ih" + sfx), getattr(module, "weight_hh" + sfx)
            b_ih, b_hh = getattr(module, "bias_ih" + sfx), getattr(module, "bias_hh" + sfx)
            w_hr = getattr(module, "weight_hr" + sfx, None)
            h = torch.zeros(batch, proj or hidden)
            c = torch.zeros(batch, hidden)
            rec: dict[str, list[torch.Tensor]] = {}
            hs = [None] * steps
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                gi = layer_in[:, t] @ w_ih.t() + b_ih
                gh = h @ w_hh.t() + b_hh
                if is_lstm:
                    i, f, g, o = (gi + gh).chunk(4, 1)
                    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                    c = f * c + i * g
                    m = o * c.tanh()
                    h = m @ w_hr.t() if w_hr is not None else m
                    step = {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}
                else:
                    r = (gi[:, :hidden] + gh[:, :hidden]).sigmoid()
                    z = (gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden]).sigmoid()
                    n = (gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:]).tanh()
                    h = (1 - z) * n + z * h
                    step = {"r": r, "z": z, "n": n, "h": h}
                for name, value in step.items():
                    rec.setdefault(name, []).append(value)
                hs[t] = h
            order = slice(None, None, -1) if d else slice(None)
            for name, values in rec.items():
                out[f"l{layer}/{'bwd' if d else 'fwd'}/{name}"] = torch.stack(values[order], 1)
            outputs.append(torch.stack(hs, 1))
        layer_in = torch.cat(outputs, 2)
    return out
