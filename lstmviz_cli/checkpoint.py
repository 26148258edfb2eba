"""Sniff and load a checkpoint safely; rebuild recurrent layers from a bare state dict."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstmviz_cli.tracedata import ModelInfo


@dataclass
class LoadedModel:
    """A ready-to-run model (torch nn.Module in eval mode on `device`) and what we know of it."""

    model: Any  # torch.nn.Module
    info: ModelInfo
    meta: dict[str, Any] = field(default_factory=dict)  # vocab, task, sample_input, config, ...
    device: str = "cpu"
