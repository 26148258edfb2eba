"""Untrusted checkpoints: no code runs without a trust flag, and every bad file is one clean error."""

from __future__ import annotations

import io
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import loader_fixtures as fx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as save_safetensors
from torch import nn

from lstmviz_cli.cli import main
from lstmviz_cli.errors import CheckpointError, LstmvizError, UnsafeCheckpointError
from lstmviz_cli.loading.checkpoint import load_checkpoint

ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


# -- pickles that would run code -------------------------------------------------------------------
@pytest.mark.parametrize("downgrade_env", [False, True], ids=["plain-env", "env-downgrade"])
@pytest.mark.parametrize("container", ["raw", "torch-zip"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_code_running_pickles_are_refused(
    protocol: int, container: str, downgrade_env: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    if container == "raw":
        fx.write_raw_pickle(path, fx.Marker(marker), protocol)
    else:
        fx.write_torch_zip(path, {"state_dict": fx.Marker(marker)}, protocol)
    if downgrade_env:
        monkeypatch.setenv(ENV, "1")
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "io.open" in message  # the global it needs
    assert "would run code from the file" in message and "--trust-pickle" in message
    assert "state_dict" in message and "safetensors" in message and "\n" not in message
    assert not marker.exists()
    assert os.environ.get(ENV) == ("1" if downgrade_env else None)  # restored after loading


def test_load_always_passes_weights_only_explicitly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(dict(kwargs, env=os.environ.get(ENV)))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")  # both set: torch itself would raise
    torch_path = tmp_path / "sd.pt"
    torch.save(fx.token_model().state_dict(), torch_path)
    load_checkpoint(torch_path)
    assert calls == [{"map_location": "cpu", "weights_only": True, "env": None}]


def test_whole_pickled_module_is_refused_then_loads_with_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = "from torch import nn\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.gru = nn.GRU(3, 4, batch_first=True)\n\n    def forward(self, x):\n        return self.gru(x)[0]\n"
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "ckmodels.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    import ckmodels

    torch.manual_seed(0)
    net = ckmodels.Net().eval()
    path = folder / "net.pt"
    torch.save(net, path)
    # The class's module is importable only because lstmviz puts the checkpoint's folder on sys.path.
    monkeypatch.delitem(sys.modules, "ckmodels")
    sys.path.remove(str(folder))
    with pytest.raises(UnsafeCheckpointError, match=r"\(ckmodels\.Net, torch\.nn\.modules\.rnn\.GRU\).*--trust-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust_pickle=True)
    assert loaded.info.unsafe and loaded.info.format == "pickled-module" and not loaded.info.rebuilt
    assert str(folder) not in sys.path
    x = fx.feature_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), net(x), rtol=0, atol=0)


def test_trust_flag_on_a_safe_file_is_not_unsafe(tmp_path: Path) -> None:
    torch.save(fx.token_model().state_dict(), tmp_path / "sd.pt")
    assert load_checkpoint(tmp_path / "sd.pt", trust_pickle=True).info.unsafe is False


def test_torchscript_needs_its_own_flag(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.script(fx.token_model()).save(str(path))
    for kwargs in ({}, {"trust_pickle": True}):
        with pytest.raises(UnsafeCheckpointError, match="TorchScript archive.*--trust-torchscript"):
            load_checkpoint(path, **kwargs)
    assert load_checkpoint(path, trust_torchscript=True).info.unsafe


# -- the bad-file matrix ---------------------------------------------------------------------------
def _good(tmp: Path) -> Path:
    path = tmp / "good.pt"
    torch.save(fx.token_model().state_dict(), path)
    return path


def _write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _save(tmp: Path, name: str, obj: object) -> Path:
    torch.save(obj, tmp / name)
    return tmp / name


def _directory(tmp: Path) -> Path:
    (tmp / "ckpt.pt").mkdir()
    return tmp / "ckpt.pt"


def _corrupted_zip(tmp: Path) -> Path:
    data = bytearray(_good(tmp).read_bytes())
    for i in range(200, 600):  # inside data.pkl
        data[i] ^= 0x5A
    return _write(tmp, "corrupt.pt", bytes(data))


def _random_bytes(tmp: Path) -> Path:
    rng = random.Random(0)
    return _write(tmp, "random.pt", b"\x07" + bytes(rng.randrange(256) for _ in range(4096)))


def _lstm_state(**kwargs: object) -> dict:
    torch.manual_seed(0)
    return dict(nn.LSTM(3, 4, **kwargs).state_dict())


def _inconsistent(tmp: Path) -> Path:
    state = _lstm_state(num_layers=2)
    state["weight_hh_l1"] = torch.zeros(16, 5)
    return _save(tmp, "inconsistent.pt", state)


def _layer_gap(tmp: Path) -> Path:
    state = _lstm_state(num_layers=3)
    return _save(tmp, "gap.pt", {k: v for k, v in state.items() if "_l1" not in k})


def _partial_reverse(tmp: Path) -> Path:
    state = _lstm_state(num_layers=2, bidirectional=True)
    return _save(tmp, "partial.pt", {k: v for k, v in state.items() if not k.endswith("_l1_reverse")})


def _typed(tmp: Path, dtype: torch.dtype) -> Path:
    state = _lstm_state()
    state["weight_ih_l0"] = state["weight_ih_l0"].to(dtype)
    return _save(tmp, f"{dtype}.pt".replace("torch.", ""), state)


def _safetensors_long_header(tmp: Path) -> Path:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    return _write(tmp, "long.safetensors", fx.safetensors_bytes(header, bytes(8), length=10_000))


def _safetensors_overlap(tmp: Path) -> Path:
    header = {
        "weight_ih_l0": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
        "weight_hh_l0": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]},
    }
    return _write(tmp, "overlap.safetensors", fx.safetensors_bytes(header, bytes(24)))


def _unsafe_module(tmp: Path) -> Path:
    return _save(tmp, "whole.pt", nn.LSTM(3, 4))


BAD_FILES: dict[str, tuple[Callable[[Path], Path], type[Exception], str]] = {
    "missing file": (lambda t: t / "missing.pt", CheckpointError, "does not exist"),
    "directory": (_directory, CheckpointError, "is a directory"),
    "empty file": (lambda t: _write(t, "empty.pt", b""), CheckpointError, "is empty"),
    "truncated zip": (lambda t: _write(t, "cut.pt", _good(t).read_bytes()[:3000]), CheckpointError, "truncated or corrupted zip"),
    "corrupted zip": (_corrupted_zip, CheckpointError, "corrupted or not a PyTorch checkpoint"),
    "random bytes": (_random_bytes, CheckpointError, "not a checkpoint lstmviz can read"),
    "pt holding a tensor": (lambda t: _save(t, "t.pt", torch.zeros(3)), CheckpointError, "holds a single tensor"),
    "pt holding a list": (lambda t: _save(t, "l.pt", [1, 2, 3]), CheckpointError, "holds a list, not a model"),
    "dict without weights": (lambda t: _save(t, "d.pt", {"epoch": 3}), CheckpointError, "with no weights"),
    "no recurrent layer": (lambda t: _save(t, "lin.pt", nn.Linear(3, 4).state_dict()), CheckpointError, "holds no recurrent layer"),
    "inconsistent shapes": (_inconsistent, CheckpointError, r"inconsistent shapes: 'weight_hh_l1' is \(16, 5\)"),
    "zip without data.pkl": (lambda t: fx.rewrite_zip(_good(t), t / "nodata.pt", drop="data.pkl"), CheckpointError, "has no data.pkl"),
    "png renamed .pt": (lambda t: _write(t, "image.pt", fx.tiny_png()), CheckpointError, "is a PNG image"),
    "safetensors header too long": (_safetensors_long_header, CheckpointError, "header length 10000 exceeds the file size"),
    "safetensors overlapping offsets": (_safetensors_overlap, CheckpointError, "'weight_ih_l0' and 'weight_hh_l0' have overlapping"),
    "layer gap": (_layer_gap, CheckpointError, "skip layer 1"),
    "partial reverse": (_partial_reverse, CheckpointError, "weight_ih_l1_reverse is missing"),
    "integer weights": (lambda t: _typed(t, torch.int64), CheckpointError, "'weight_ih_l0' has dtype int64"),
    "complex weights": (lambda t: _typed(t, torch.complex64), CheckpointError, "'weight_ih_l0' has dtype complex64"),
    "pickled module": (_unsafe_module, UnsafeCheckpointError, "torch.nn.modules.rnn.LSTM"),
    "zero input size": (lambda t: _save(t, "zero.pt", {**_lstm_state(), "weight_ih_l0": torch.zeros(16, 0)}),
                        CheckpointError, r"'weight_ih_l0' has shape \(16, 0\): the input size is 0"),
    "zip holding a .npz": (lambda t: _write(t, "arrays.pt", _npz_bytes()), CheckpointError, "a .npz\\? pass arrays with --input"),
}


def _npz_bytes() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros(3))
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_checkpoint_is_one_clear_error(case: str, tmp_path: Path) -> None:
    build, error, fragment = BAD_FILES[case]
    path = build(tmp_path)
    with pytest.raises(error, match=fragment) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_checkpoint_through_the_cli(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, _error, fragment = BAD_FILES[case]
    path = build(tmp_path)
    out = tmp_path / "t.npz"
    assert main(["trace", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstmviz: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not out.exists()


# -- fuzzing ---------------------------------------------------------------------------------------
FUZZ_EXAMPLES = int(os.environ.get("LSTMVIZ_FUZZ_EXAMPLES", "20"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, derandomize="LSTMVIZ_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _seeds() -> dict[str, bytes]:
    """Small valid files of each kind for the mutation fuzzer to damage."""
    torch.manual_seed(0)
    state = nn.GRU(2, 3).state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    return {
        "zip": fx.torch_bytes(state),
        "legacy": buffer.getvalue(),
        "safetensors": save_safetensors(dict(state), metadata={"lstmviz": json.dumps({"task": "regression"})}),
    }


SEEDS = _seeds()


def _load_or_clean_error(path: Path) -> None:
    try:
        loaded = load_checkpoint(path)
    except LstmvizError as error:
        assert "\n" not in error.message
        return
    assert loaded.model is not None


@FUZZ
@given(data=st.binary(min_size=0, max_size=1024))
def test_fuzz_random_bytes(tmp_path: Path, data: bytes) -> None:
    _load_or_clean_error(_write(tmp_path, "fuzz.pt", data))


@FUZZ
@given(
    seed=st.sampled_from(sorted(SEEDS)),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(min_value=1),
)
def test_fuzz_mutated_checkpoints(tmp_path: Path, seed: str, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(SEEDS[seed])
    for offset, value in edits:
        data[offset % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data) + 1]
    _load_or_clean_error(_write(tmp_path, "mutant.bin", bytes(data)))
