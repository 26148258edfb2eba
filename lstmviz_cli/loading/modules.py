"""The recurrent module types lstmviz traces, and the one place a `RecurrentConfig` is read from a module.

Subclasses of nn.LSTM/GRU/RNN and of their cells count as their base kind (the kind decides the
gate equations). The loader uses this to size the trace budget and infer the input width; the
tracer to configure and name what it records.
"""

from __future__ import annotations

from torch import nn

from lstmviz_cli.loading.records import RecurrentConfig

# The one list of the stock types (isinstance narrows to exactly these).
LAYER_TYPES: tuple[type[nn.LSTM], type[nn.GRU], type[nn.RNN]] = (nn.LSTM, nn.GRU, nn.RNN)
CELL_TYPES: tuple[type[nn.LSTMCell], type[nn.GRUCell], type[nn.RNNCell]] = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
RECURRENT_TYPES: tuple[type[nn.Module], ...] = LAYER_TYPES + CELL_TYPES


def recurrent_config(module: nn.Module) -> RecurrentConfig:
    """The configuration of a stock recurrent module (an nn.LSTM, a GRUCell, ... or a subclass).

    A layer's `batch_first` is the module's own; a cell has no time axis (None). Raises TypeError
    for a module that is not recurrent.
    """
    kind = next((base.__name__ for base in RECURRENT_TYPES if isinstance(module, base)), None)
    if isinstance(module, nn.RNNBase) and kind is not None:
        return RecurrentConfig(
            kind=kind, input_size=int(module.input_size), hidden_size=int(module.hidden_size),
            num_layers=int(module.num_layers), bidirectional=bool(module.bidirectional),
            proj_size=int(module.proj_size), batch_first=bool(module.batch_first), bias=bool(module.bias),
            nonlinearity=str(module.nonlinearity) if isinstance(module, nn.RNN) else "tanh",
        )
    if isinstance(module, nn.RNNCellBase) and kind is not None:
        return RecurrentConfig(
            kind=kind, input_size=int(module.input_size), hidden_size=int(module.hidden_size),
            bias=bool(module.bias), batch_first=None,
            nonlinearity=str(module.nonlinearity) if isinstance(module, nn.RNNCell) else "tanh",
        )
    raise TypeError(f"{type(module).__name__} is not an nn.LSTM, nn.GRU, nn.RNN or one of their cells")


def recurrent_configs(model: nn.Module) -> dict[str, RecurrentConfig]:
    """Every recurrent layer and cell of `model` by its name in named_modules(), in order."""
    return {name: recurrent_config(module) for name, module in model.named_modules()
            if isinstance(module, RECURRENT_TYPES)}
