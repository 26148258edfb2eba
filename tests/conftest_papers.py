"""Helpers for the papers-and-CI tests (figures, check, diff, batch): sample models and broken copies."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
DATA = Path(__file__).resolve().parent / "data_papers"
JUNIT_XSD = DATA / "junit.xsd"


def sample(name: str) -> Path:
    """A trained sample model, or skip when it has not been trained into this checkout."""
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample model {name} is not in sample_models/ (run sample_models/train.py)")
    return path


def write_pinned_forget(source: Path, target: Path, *, bias: float = 20.0) -> Path:
    """A copy of an LSTM state-dict checkpoint whose forget-gate biases are +`bias`: f is pinned at 1."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    params = state.get("model_state_dict", state)
    for key, value in params.items():
        if ".bias_ih_l" in key or ".bias_hh_l" in key:
            hidden = value.shape[0] // 4
            value[hidden : 2 * hidden] = bias  # PyTorch's gate order is i, f, g, o
    torch.save(state, target)
    return target


def write_scaled(source: Path, target: Path, *, scale: float) -> Path:
    """A copy with every recurrent weight multiplied by `scale` (same architecture, different values)."""
    import torch

    state = torch.load(source, map_location="cpu", weights_only=True)
    params = state.get("model_state_dict", state)
    for key in params:
        if "weight_hh" in key or "weight_ih" in key:
            params[key] = params[key] * scale
    torch.save(state, target)
    return target


def junit_schema():  # noqa: ANN201 - xmlschema.XMLSchema
    xmlschema = pytest.importorskip("xmlschema")
    return xmlschema.XMLSchema(str(JUNIT_XSD))
