"""The committed sample models load in every format, carry full metadata and still do their task.

Accuracy is re-measured here on held-out data generated fresh (other seeds than train.py used), and
the char LM's "structure unit" is found again by stepping nn.LSTMCell copies of each layer.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
METRICS = json.loads((SAMPLES / "METRICS.json").read_text())
DIGIT_MODELS = ["digitsum", "gru_digitsum", "fused_cell_digitsum", "loop_lstm_digitsum"]


@pytest.fixture(scope="module")
def sm() -> Any:
    """sample_models/ on sys.path as train.py has it: `models` and `data` are top-level modules."""
    sys.path.insert(0, str(SAMPLES))
    try:
        models = importlib.import_module("models")
        data = importlib.import_module("data")
        yield type("SM", (), {"models": models, "data": data})
    finally:
        sys.path.remove(str(SAMPLES))


@pytest.fixture(autouse=True)
def _quiet_projection_warning() -> Any:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        warnings.filterwarnings("ignore", message=".*torch.jit.load. is deprecated")
        yield


def _dict_checkpoint(name: str) -> dict[str, Any]:
    return torch.load(SAMPLES / name, map_location="cpu", weights_only=True)


def _model(sm: Any, name: str) -> torch.nn.Module:
    """Rebuild a sample model from its file with plain torch, as a user would."""
    if name == "digitsum":
        meta = json.loads((SAMPLES / "digitsum.json").read_text())
        state = torch.load(SAMPLES / "digitsum.pt", map_location="cpu", weights_only=True)
    elif name == "gru_digitsum":
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(str(SAMPLES / "gru_digitsum.safetensors"), framework="pt") as handle:
            meta = json.loads(handle.metadata()["lstmviz"])
        state = load_file(str(SAMPLES / "gru_digitsum.safetensors"))
    else:
        meta = _dict_checkpoint(f"{name}.pt")
        state = meta["model_state_dict"]
    config = meta["config"]
    cls = sm.models.MODEL_CLASSES[config["model_class"]]
    kwargs = {k: config[k] for k in cls.__init__.__code__.co_varnames[1 : cls.__init__.__code__.co_argcount]}
    model = cls(**kwargs)
    model.load_state_dict(state)
    return model.eval()


# -- formats and metadata -------------------------------------------------------------------------
def test_every_file_is_small_and_has_its_sample() -> None:
    expected = [
        "charlm.pt", "charlm.txt", "digitsum.pt", "digitsum.json", "digitsum.npy", "digitsum_module.pt",
        "sine.pt", "sine.ts.pt", "sine.csv", "gru_digitsum.safetensors", "gru_digitsum.npy",
        "fused_cell_digitsum.pt", "loop_lstm_digitsum.pt", "METRICS.json",
    ]
    for name in expected:
        path = SAMPLES / name
        assert path.is_file(), name
        assert path.stat().st_size < 700_000, name


def test_charlm_dict_checkpoint_metadata() -> None:
    ckpt = _dict_checkpoint("charlm.pt")
    assert ckpt["task"] == "char-lm" and ckpt["input_format"] == "text"
    assert set(ckpt) >= {"model_state_dict", "config", "vocab", "sample_input", "description"}
    sample = ckpt["sample_input"]
    assert sample == (SAMPLES / "charlm.txt").read_text()
    assert 300 <= len(sample) <= 600 and sample.count('"') >= 4 and "(" in sample and "[" in sample
    assert set(sample) <= set(ckpt["vocab"])
    config = ckpt["config"]
    assert config["rnn"] == "lstm" and config["num_layers"] == 2 and config["head_on"] == "all"
    assert ckpt["model_state_dict"]["embedding.weight"].shape == (len(ckpt["vocab"]), config["embed_dim"])
    assert ckpt["model_state_dict"]["fc.weight"].shape == (len(ckpt["vocab"]), config["hidden_size"])


def test_digitsum_state_dict_with_sidecar() -> None:
    state = torch.load(SAMPLES / "digitsum.pt", map_location="cpu", weights_only=True)
    assert sorted(state) == sorted([
        "embedding.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
        "lstm.bias_hh_l0", "fc.weight", "fc.bias",
    ])
    meta = json.loads((SAMPLES / "digitsum.json").read_text())
    assert meta["vocab"] == [str(d) for d in range(10)]
    assert meta["output_labels"] == [str(s) for s in range(19)]
    assert meta["task"] == "classification" and meta["input_format"] == "tokens"
    assert meta["config"]["head_on"] == "last" and meta["config"]["batch_first"] is True
    sample = np.load(SAMPLES / "digitsum.npy")
    assert sample.dtype == np.int64 and sample.ndim == 1
    assert sample.tolist() == meta["sample_input"]


def test_gru_safetensors_metadata() -> None:
    from safetensors import safe_open

    with safe_open(str(SAMPLES / "gru_digitsum.safetensors"), framework="pt") as handle:
        meta = json.loads(handle.metadata()["lstmviz"])
        keys = sorted(handle.keys())
    assert "gru.weight_hh_l0" in keys and meta["config"]["rnn"] == "gru"
    assert meta["task"] == "classification" and len(meta["output_labels"]) == 19
    assert np.load(SAMPLES / "gru_digitsum.npy").tolist() == meta["sample_input"]


def test_sine_checkpoint_csv_and_torchscript_agree(sm: Any) -> None:
    ckpt = _dict_checkpoint("sine.pt")
    config = ckpt["config"]
    assert ckpt["task"] == "regression" and ckpt["input_format"] == "features"
    assert config["bidirectional"] and config["batch_first"] and config["proj_size"] == 16
    sample = np.asarray(ckpt["sample_input"], dtype=np.float32)
    assert sample.shape == (40, 1)
    csv = np.loadtxt(SAMPLES / "sine.csv", skiprows=1, dtype=np.float32).reshape(-1, 1)
    assert (SAMPLES / "sine.csv").read_text().splitlines()[0] == "x"
    np.testing.assert_allclose(csv, sample, atol=1e-5)
    eager = _model(sm, "sine")
    scripted = torch.jit.load(str(SAMPLES / "sine.ts.pt"), map_location="cpu")
    x = torch.from_numpy(sample)[None]
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), eager(x))


def test_pickled_module_needs_trust_and_matches_state_dict(sm: Any) -> None:
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        torch.load(SAMPLES / "digitsum_module.pt", map_location="cpu", weights_only=True)
    module = torch.load(SAMPLES / "digitsum_module.pt", map_location="cpu", weights_only=False)
    assert type(module).__module__ == "models" and type(module).__name__ == "DigitSum"
    x = torch.from_numpy(np.load(SAMPLES / "digitsum.npy"))[None]
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(x), _model(sm, "digitsum")(x))


@pytest.mark.parametrize("name", ["fused_cell_digitsum", "loop_lstm_digitsum"])
def test_custom_cell_checkpoints_name_their_class(name: str) -> None:
    ckpt = _dict_checkpoint(f"{name}.pt")
    path, cls = ckpt["model_class"].split(":")
    assert (ROOT / path).is_file() and cls == ckpt["config"]["model_class"]
    assert ckpt["model_kwargs"] == {"vocab_size": 10, "embed_dim": 16, "hidden_size": 64, "num_classes": 19}


# -- the models still do their task -----------------------------------------------------------------
@pytest.mark.parametrize("name", DIGIT_MODELS)
def test_digit_models_reach_claimed_accuracy(sm: Any, name: str) -> None:
    model = _model(sm, name)
    claimed = METRICS[name]["test_accuracy"]
    correct = total = 0
    for k, length in enumerate((10, 15, 20)):
        x, y = sm.data.digit_sequences(150, length, seed=90_000 + k)
        with torch.no_grad():
            correct += int((model(torch.from_numpy(x)).argmax(-1).numpy() == y).sum())
        total += len(y)
    assert claimed >= 0.97
    assert correct / total >= claimed - 0.03
    x = torch.tensor([[6, 7, 0, 0, 1, 0, 0, 0, 0, 0]])
    assert int(model(x).argmax(-1)) == 13


def test_sine_beats_last_value_baseline_as_claimed(sm: Any) -> None:
    model = _model(sm, "sine")
    x, y = sm.data.sine_windows(300, 40, seed=90_000)
    with torch.no_grad():
        mse = float(((model(torch.from_numpy(x)).numpy() - y) ** 2).mean())
    baseline = float(((x[:, -1] - y) ** 2).mean())
    claimed = METRICS["sine"]
    assert claimed["test_mse"] < claimed["baseline_last_value_mse"] / 2
    assert mse <= claimed["test_mse"] * 1.5
    assert mse < baseline / 2


def test_charlm_reaches_claimed_accuracy(sm: Any) -> None:
    ckpt = _dict_checkpoint("charlm.pt")
    model = _model(sm, "charlm")
    text = sm.data.generate_corpus(3001, seed=90_000)
    ids = torch.tensor([ckpt["vocab"].index(ch) for ch in text])
    with torch.no_grad():
        logits = model(ids[:-1].reshape(10, 300))
    acc = float((logits.argmax(-1) == ids[1:].reshape(10, 300)).float().mean())
    assert acc >= METRICS["charlm"]["test_accuracy"] - 0.03
    assert acc > 0.6


def _layer_states(lstm: torch.nn.LSTM, x: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """h and c per layer by stepping an nn.LSTMCell that holds each layer's weights."""
    out = []
    for k in range(lstm.num_layers):
        cell = torch.nn.LSTMCell(x.shape[-1], lstm.hidden_size)
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, part).data.copy_(getattr(lstm, f"{part}_l{k}"))
        h = c = torch.zeros(1, lstm.hidden_size)
        hs, cs = [], []
        with torch.no_grad():
            for t in range(x.shape[0]):
                h, c = cell(x[t : t + 1], (h, c))
                hs.append(h[0])
                cs.append(c[0])
        x = torch.stack(hs)
        out.append({"h": x.numpy(), "c": torch.stack(cs).numpy()})
    return out


def test_charlm_has_a_quote_or_bracket_unit(sm: Any) -> None:
    ckpt = _dict_checkpoint("charlm.pt")
    model = _model(sm, "charlm")
    text = ckpt["sample_input"]
    with torch.no_grad():
        emb = model.embedding(torch.tensor([ckpt["vocab"].index(ch) for ch in text]))
    states = _layer_states(model.lstm, emb)
    # Reference signals computed here, not with data.structure_signals.
    inside = np.cumsum([ch == '"' for ch in text]) % 2
    depth = np.cumsum([(ch in "([") - (ch in ")]") for ch in text])
    best = 0.0
    for layer in states:
        for acts in layer.values():
            for target in (inside, depth):
                r = np.nan_to_num(np.corrcoef(np.c_[target, acts].T)[0, 1:])
                best = max(best, float(np.abs(r).max()))
    assert best >= 0.7
    claimed = max(abs(u["r"]) for u in METRICS["charlm"]["structure_units"].values())
    assert best == pytest.approx(claimed, abs=1e-3)


# -- through lstmviz's own loader ----------------------------------------------------------------
LOADER_CASES = [
    ("charlm.pt", {}),
    ("digitsum.pt", {}),
    ("sine.pt", {}),
    ("gru_digitsum.safetensors", {}),
    ("sine.ts.pt", {"trust_torchscript": True}),
    ("digitsum_module.pt", {"trust_pickle": True}),
]


@pytest.mark.parametrize(("name", "flags"), LOADER_CASES)
def test_lstmviz_loader_reads_each_sample(sm: Any, name: str, flags: dict[str, bool]) -> None:
    from lstmviz_cli.loading.checkpoint import load_checkpoint

    loaded = load_checkpoint(SAMPLES / name, device="cpu", **flags)
    # Metadata travels with every format (dict keys, sidecar JSON, safetensors header, TorchScript
    # extra file), so `lstmviz report sample_models/X` needs no other argument.
    assert loaded.meta["sample_input"] and loaded.meta["task"] in ("char-lm", "classification", "regression")
    reference = _model(sm, name.split(".")[0].removesuffix("_module"))
    sample = loaded.meta["sample_input"]
    x = torch.tensor([sample]) if isinstance(sample, list) and not isinstance(sample[0], list) else None
    if isinstance(sample, str):
        x = torch.tensor([[list(loaded.meta["vocab"]).index(ch) for ch in sample]])
    elif x is None:
        x = torch.tensor([sample], dtype=torch.float32)
    with torch.no_grad():
        got = loaded.model(x)
        got = got[0] if isinstance(got, tuple) else got
        want = reference(x)
    if got.ndim == want.ndim + 1:
        # A rebuilt "head_on": "last" model may apply the head to every step (per-step predictions);
        # its last step must then be the model's real prediction.
        got = got[:, -1]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("name", "flag"), [("digitsum_module.pt", "--trust-pickle"), ("sine.ts.pt", "--trust-torchscript")])
def test_lstmviz_loader_refuses_code_without_trust(name: str, flag: str) -> None:
    from lstmviz_cli.errors import UnsafeCheckpointError
    from lstmviz_cli.loading.checkpoint import load_checkpoint

    with pytest.raises(UnsafeCheckpointError, match=flag):
        load_checkpoint(SAMPLES / name, device="cpu")


@pytest.mark.parametrize("name", ["fused_cell_digitsum", "loop_lstm_digitsum"])
def test_lstmviz_loader_builds_custom_cell_models_from_model_class(sm: Any, name: str) -> None:
    from lstmviz_cli.loading.checkpoint import load_checkpoint

    ckpt = _dict_checkpoint(f"{name}.pt")
    loaded = load_checkpoint(SAMPLES / f"{name}.pt", device="cpu", model_class=str(ROOT / ckpt["model_class"]))
    x = torch.tensor([ckpt["sample_input"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), _model(sm, name)(x))
    assert int(loaded.model(x).argmax(-1)) == 13
