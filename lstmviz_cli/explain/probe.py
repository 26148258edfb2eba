"""The memory-length probe: how long the first recurrent stack keeps a key placed at step 0."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lstmviz_cli.analysis.records import MemoryProbe
from lstmviz_cli.explain.saliency import RecurrentStack, first_embedding
from lstmviz_cli.loading.modules import LAYER_TYPES

PROBE_KEYS = 8  # distinct keys at step 0 in the memory-length probe


def _first_recurrent(model: nn.Module) -> tuple[str, RecurrentStack] | None:
    for name, module in model.named_modules():
        if isinstance(module, LAYER_TYPES):
            return name or module.__class__.__name__.lower(), module
    return None


def memory_probe(model: nn.Module, values: np.ndarray, *, max_length: int | None = None, device: str = "cpu") -> MemoryProbe:
    """Key-at-start recall through the model's first recurrent stack.

    Sequences of growing length L hold one of `PROBE_KEYS` different keys at step 0 followed by
    the sample's own steps as filler. The dependence at L is the spread of the last layer's final
    forward state (c for an LSTM, else h) across keys (RMS over units of the std across keys)
    over the state's RMS size: the share of the final state that the key still decides, 1 when
    it is all key, towards 0 as the stack forgets step 0.
    """
    found = _first_recurrent(model)
    if found is None:
        raise ValueError("the model has no nn.LSTM / nn.GRU / nn.RNN to probe")
    name, rnn = found
    sample = np.asarray(values)[0]
    steps = int(sample.shape[0])
    if np.issubdtype(sample.dtype, np.integer):
        embedding = first_embedding(model)
        if embedding is None or embedding.embedding_dim != rnn.input_size:
            raise ValueError("token inputs whose embedding does not feed the recurrent stack directly")
        vocab = int(embedding.num_embeddings)
        key_ids = np.unique(np.linspace(0, vocab - 1, min(PROBE_KEYS, vocab)).round().astype(np.int64))
        with torch.no_grad():
            keys = embedding(torch.as_tensor(key_ids, device=device))
            filler = embedding(torch.as_tensor(sample, device=device))
    else:
        rows = np.linspace(0, steps - 1, min(PROBE_KEYS, steps)).round().astype(np.int64)
        feats = np.asarray(sample, dtype=np.float32).reshape(steps, -1)
        keys = torch.as_tensor(feats[np.unique(rows)], device=device)
        filler = torch.as_tensor(feats, device=device)
    if keys.shape[0] < 2:
        raise ValueError("fewer than two distinct keys to compare")
    limit = max_length or min(512, max(64, 4 * steps))
    lengths = [1]
    while lengths[-1] * 2 <= limit:
        lengths.append(lengths[-1] * 2)
    filler_cycle = filler[1:] if steps > 1 else filler
    is_lstm = isinstance(rnn, torch.nn.LSTM)
    dirs = 2 if rnn.bidirectional else 1
    top = (rnn.num_layers - 1) * dirs  # last layer, forward direction
    spreads = []
    with torch.no_grad():
        for length in lengths:
            reps = -(-max(length - 1, 0) // filler_cycle.shape[0]) if length > 1 else 0
            tail = filler_cycle.repeat(reps, 1)[: length - 1] if reps else filler_cycle[:0]
            batch = torch.stack([torch.cat([key[None], tail], dim=0) for key in keys])  # (K, L, I)
            inp = batch if rnn.batch_first else batch.transpose(0, 1)
            _, state = rnn(inp)
            final = state[1] if is_lstm else state
            final = final[top].double()  # (K, H)
            spread = float(final.std(dim=0, unbiased=False).pow(2).mean().sqrt())
            size = float(final.pow(2).mean().sqrt())
            spreads.append(spread / size if size > 0 else 0.0)
    layer = rnn.num_layers - 1
    return MemoryProbe(
        prefix=f"{name}/l{layer}/fwd",
        lengths=lengths,
        dependence=spreads,
        state="c" if is_lstm else "h",
    )
