"""The loader: every checkpoint kind gives a model whose outputs equal the original's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import loader_fixtures as fx
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lstmviz_cli.errors import CheckpointError, LstmvizError, ModelError
from lstmviz_cli.loading.checkpoint import load_checkpoint
from lstmviz_cli.loading.device import resolve_device
from lstmviz_cli.loading.inputs import load_sample
from lstmviz_cli.loading.metadata import check_meta, known_task
from lstmviz_cli.loading.modules import recurrent_configs
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing.precision import full_float32

META = {"vocab": fx.VOCAB, "task": "char-lm", "input_format": "text", "sample_input": "abc", "description": "tiny"}


def _same_outputs(loaded_model: nn.Module, original: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected = original(x)
        actual = loaded_model(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def _save(kind: str, model: nn.Module, path: Path) -> dict:
    """Write `model` as one checkpoint kind; return the load_checkpoint kwargs it needs."""
    state = model.state_dict()
    if kind == "state_dict":
        torch.save(state, path)
    elif kind in ("model_state_dict", "state_dict_key", "model_key"):
        key = {"model_state_dict": "model_state_dict", "state_dict_key": "state_dict", "model_key": "model"}[kind]
        torch.save({key: state, "optimizer_state_dict": {"state": {}, "param_groups": []}, "epoch": 3, **META}, path)
    elif kind == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif kind == "module_prefix":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif kind == "safetensors":
        save_file(dict(state), str(path), metadata={"lstmviz": json.dumps(META)})
    elif kind == "torchscript":
        torch.jit.script(model).save(str(path))
        return {"trust_torchscript": True}
    elif kind == "pickled_module":
        torch.save(model, path)
        return {"trust_pickle": True}
    return {}


KINDS = {
    "state_dict": ("state_dict", False),
    "model_state_dict": ("dict-checkpoint", False),
    "state_dict_key": ("dict-checkpoint", False),
    "model_key": ("dict-checkpoint", False),
    "legacy": ("state_dict", False),
    "module_prefix": ("state_dict", False),
    "safetensors": ("safetensors", False),
    "torchscript": ("torchscript", True),
    "pickled_module": ("pickled-module", True),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_loads_and_matches_the_original(kind: str, tmp_path: Path) -> None:
    model = fx.token_model()
    # The extension lies on purpose: kinds are told apart by their bytes.
    path = tmp_path / "model.bin"
    flags = _save(kind, model, path)
    loaded = load_checkpoint(path, **flags)
    fmt, unsafe = KINDS[kind]
    assert loaded.info.format == fmt
    assert loaded.info.unsafe is unsafe
    assert loaded.info.rebuilt is (kind != "pickled_module")
    assert loaded.info.n_params == sum(p.numel() for p in model.parameters()) == 1800
    assert loaded.info.size_bytes == path.stat().st_size
    assert loaded.info.name == "model.bin" and loaded.device == "cpu"
    assert not loaded.model.training
    _same_outputs(loaded.model, model, fx.token_batch())
    names = [name for name, _ in loaded.model.named_modules()]
    assert names[1:] == ["embed", "lstm", "fc"]
    assert loaded.meta["input_format"] in ("text", "tokens") and loaded.meta["vocab_size"] == 12
    if kind == "torchscript":
        assert loaded.scripted is not None
        _same_outputs(loaded.scripted, model, fx.token_batch())


def test_dict_checkpoint_metadata_fills_model_info(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    _save("model_state_dict", fx.token_model(), path)
    loaded = load_checkpoint(path)
    assert loaded.info.task == "char-lm"
    assert loaded.info.vocab == tuple(fx.VOCAB)
    assert loaded.info.description == "tiny"
    assert loaded.meta["other"]["epoch"] == 3 and loaded.meta["sample_input"] == "abc"
    assert "optimizer_state_dict" in loaded.meta["other"]  # plain dicts are kept, tensors are not
    assert loaded.meta["input_format"] == "text" and loaded.meta["input_size"] == 5


def test_metadata_sources_later_wins(tmp_path: Path) -> None:
    model = fx.token_model()
    path = tmp_path / "ck.pt"
    sidecar = {"description": "from the sidecar", "task": "classification", "output_labels": ["x", "y"]}
    (tmp_path / "ck.json").write_text(json.dumps(sidecar))
    torch.save({"state_dict": model.state_dict(), "description": "from the checkpoint"}, path)
    loaded = load_checkpoint(path)
    assert loaded.meta["description"] == "from the checkpoint"
    assert loaded.info.task == "classification" and loaded.info.output_labels == ("x", "y")


def test_safetensors_metadata_and_vocab_dict(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    meta = {"vocab": {tok: i for i, tok in enumerate(fx.VOCAB)}, "task": "char-lm"}
    save_file(dict(fx.token_model().state_dict()), str(path), metadata={"lstmviz": json.dumps(meta)})
    loaded = load_checkpoint(path)
    assert loaded.info.vocab == tuple(fx.VOCAB) and loaded.info.task == "char-lm"


def test_bad_metadata_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": fx.token_model().state_dict(), "input_format": "audio"}, path)
    with pytest.raises(CheckpointError, match="'input_format'.*text, tokens, features"):
        load_checkpoint(path)
    (tmp_path / "sd.json").write_text("{not json")
    torch.save(fx.token_model().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match="'sd.json' is not valid JSON"):
        load_checkpoint(tmp_path / "sd.pt")


def test_metadata_is_typed_once_where_the_file_becomes_metadata(tmp_path: Path) -> None:
    """`check_meta`: one type per key; what the file says that is not the convention stays under `other`."""
    raw = {
        "config": {"hidden": 4, 7: "an int key no constructor can take"}, "vocab": {"b": 1, "a": 0},
        "task": 5, "input_format": "tokens", "sample_input": [1, 0], "output_labels": ("x", 2),
        "description": "d", "batch_first": 0, "vocab_size": "12", "input_size": 3,
        "one_hot": True, "epoch": 3,  # a key lstmviz derives, given by the file: kept, not read
    }
    meta, found = check_meta(raw, tmp_path / "m.pt")
    assert meta == {
        "config": {"hidden": 4}, "vocab": ["a", "b"], "vocab_level": "char", "task": 5, "input_format": "tokens",
        "sample_input": [1, 0], "output_labels": ["x", "2"], "description": "d", "batch_first": False, "input_size": 3,
        "other": {"vocab_size": "12", "one_hot": True, "epoch": 3},
    }
    assert known_task(meta) is None and known_task({"task": "char-lm"}) == "char-lm" and found.notes == []
    with pytest.raises(CheckpointError, match="metadata 'description' of 'm.pt' must be a string, got int"):
        check_meta({"description": 1}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="metadata 'config' of 'm.pt' must be a dict, got list"):
        check_meta({"config": [1]}, tmp_path / "m.pt")
    # A vocabulary under another name is found in the raw entries, and its level makes the input text.
    meta, found = check_meta({"itos": ["a", "b", "c"], "epoch": 1}, tmp_path / "m.pt")
    assert meta == {"vocab": ["a", "b", "c"], "vocab_level": "char", "input_format": "text", "other": {"itos": ["a", "b", "c"], "epoch": 1}}
    assert found.vocab is not None and found.vocab.source == "itos"


def test_a_file_cannot_claim_what_the_loader_derives(tmp_path: Path) -> None:
    """'one_hot' in a checkpoint is the file's own entry, not lstmviz's inference: token ids stay ids."""
    path = tmp_path / "ck.pt"
    torch.save({"state_dict": fx.token_model().state_dict(), "one_hot": True, "reads_features": True}, path)
    loaded = load_checkpoint(path)
    assert "one_hot" not in loaded.meta and loaded.meta["other"] == {"one_hot": True, "reads_features": True}
    sample = load_sample(loaded, tokens="1,2,3")
    assert sample.kind == "tokens" and not sample.one_hot and sample.values.tolist() == [[1, 2, 3]]


# -- rebuilding from a bare state dict ---------------------------------------------------------------
REBUILD_CASES = {
    "lstm": (lambda: nn.LSTM(3, 4, batch_first=True), "lstm", {}),
    "gru_2layer_bidir": (lambda: nn.GRU(3, 4, num_layers=2, bidirectional=True, batch_first=True), "gru", {}),
    "rnn_relu": (lambda: nn.RNN(3, 4, nonlinearity="relu", batch_first=True), "rnn", {"nonlinearity": "relu"}),
    "lstm_proj_bidir": (lambda: nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True, batch_first=True), "lstm", {}),
    "lstm_nobias": (lambda: nn.LSTM(3, 4, bias=False, batch_first=True), "lstm", {}),
}


@pytest.mark.parametrize("case", sorted(REBUILD_CASES))
def test_rebuild_bare_recurrent_stack(case: str, tmp_path: Path) -> None:
    factory, name, config = REBUILD_CASES[case]
    torch.manual_seed(0)
    rnn = factory().eval()
    path = tmp_path / "sd.pt"
    torch.save({"model_state_dict": rnn.state_dict(), "config": config}, path)
    loaded = load_checkpoint(path)
    assert loaded.info.rebuilt
    module = loaded.model.get_submodule(name)
    assert type(module) is type(rnn)
    for attr in ("input_size", "hidden_size", "num_layers", "bidirectional", "bias"):
        assert getattr(module, attr) == getattr(rnn, attr)
    assert getattr(module, "proj_size", 0) == getattr(rnn, "proj_size", 0)
    x = fx.feature_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), rnn(x)[0], rtol=0, atol=1e-6)
    assert loaded.meta["input_format"] == "features" and loaded.meta["input_size"] == 3


def test_nested_prefix_stays_nested_and_head_is_found(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Module()
    model.encoder = nn.Module()
    model.encoder.rnn = nn.GRU(3, 4, batch_first=True)
    model.decoder = nn.Linear(4, 2)
    path = tmp_path / "nested.pt"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    names = [name for name, _ in loaded.model.named_modules()]
    assert "encoder.rnn" in names and "decoder" in names
    assert list(recurrent_configs(loaded.model)) == ["encoder.rnn"]
    x = fx.feature_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.decoder(model.encoder.rnn(x)[0]), rtol=0, atol=1e-6)


def test_bias_free_head_of_embedding_width_is_told_apart_by_key_order(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Module()
    model.emb = nn.Embedding(9, 4)
    model.lstm = nn.LSTM(4, 4, batch_first=True)
    model.out = nn.Linear(4, 9, bias=False)
    path = tmp_path / "sd.pt"
    torch.save(model.state_dict(), path)
    loaded = load_checkpoint(path)
    assert loaded.model.lstmviz_embedding == "emb" and loaded.model.lstmviz_head == "out"
    assert loaded.info.embedding == "emb"  # the page reads it from the ModelInfo, not the torch module
    x = torch.tensor([[0, 3, 8, 1]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.out(model.lstm(model.emb(x))[0]), rtol=0, atol=1e-6)


def test_unplaced_keys_are_reported(tmp_path: Path) -> None:
    state = dict(fx.token_model().state_dict())
    state["norm.weight"] = torch.ones(5)  # a LayerNorm(5): as wide as the LSTM's input, it may feed it
    state["norm.bias"] = torch.zeros(5)
    torch.save(state, tmp_path / "sd.pt")
    with pytest.raises(CheckpointError, match=r"norm \(LayerNorm\) may run before the recurrent layer 'lstm'"):
        load_checkpoint(tmp_path / "sd.pt")
    loaded = load_checkpoint(tmp_path / "sd.pt", recurrent_only=True)
    assert loaded.info.accounting.unused == ("fc.weight", "fc.bias", "norm.weight", "norm.bias")
    assert loaded.info.recurrent_only and loaded.info.embedding == "embed"


def test_half_precision_weights_are_upcast_on_cpu(tmp_path: Path) -> None:
    model = fx.token_model()
    torch.save(model.half().state_dict(), tmp_path / "half.pt")
    loaded = load_checkpoint(tmp_path / "half.pt")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}
    torch.save(model, tmp_path / "whole.pt")
    loaded = load_checkpoint(tmp_path / "whole.pt", trust_pickle=True)
    assert loaded.meta["upcast_from"] == "float16"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def test_several_recurrent_modules_need_a_model_class(tmp_path: Path) -> None:
    state = {**{f"enc.{k}": v for k, v in nn.GRU(3, 4).state_dict().items()},
             **{f"dec.{k}": v for k, v in nn.GRU(4, 4).state_dict().items()}}
    torch.save(state, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match=r"2 recurrent modules \('dec', 'enc'\).*--model-class"):
        load_checkpoint(tmp_path / "two.pt")


# -- --model-class ---------------------------------------------------------------------------------
USER_MODEL = '''
import torch
from torch import nn

class Seq2(nn.Module):
    def __init__(self, features=3, hidden=4):
        super().__init__()
        self.enc = nn.GRU(features, hidden, batch_first=True)
        self.dec = nn.LSTM(hidden, hidden, batch_first=True)

    def forward(self, x):
        return self.dec(self.enc(x)[0])[0]
'''


@pytest.fixture
def user_model_file(tmp_path: Path) -> Path:
    path = tmp_path / "usermodels.py"
    path.write_text(USER_MODEL)
    return path


def _seq2_state(hidden: int = 5) -> tuple[nn.Module, dict]:
    namespace: dict = {}
    exec(compile(USER_MODEL, "usermodels", "exec"), namespace)
    torch.manual_seed(0)
    model = namespace["Seq2"](features=3, hidden=hidden).eval()
    return model, model.state_dict()


def test_model_class_from_file_with_saved_config(tmp_path: Path, user_model_file: Path) -> None:
    model, state = _seq2_state()
    torch.save({"state_dict": state, "config": {"hidden": 5, "lr": 0.1}}, tmp_path / "ck.pt")
    loaded = load_checkpoint(tmp_path / "ck.pt", model_class=f"{user_model_file}:Seq2")
    assert not loaded.info.rebuilt and list(recurrent_configs(loaded.model)) == ["enc", "dec"]
    _same_outputs(loaded.model, model, fx.feature_batch())


def test_model_class_by_module_path_with_kwargs(
    tmp_path: Path, user_model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, state = _seq2_state(hidden=6)
    torch.save(state, tmp_path / "sd.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "usermodels", raising=False)
    loaded = load_checkpoint(tmp_path / "sd.pt", model_class="usermodels:Seq2", model_kwargs='{"hidden": 6}')
    _same_outputs(loaded.model, model, fx.feature_batch())


def test_model_class_errors_are_one_line(tmp_path: Path, user_model_file: Path) -> None:
    _model, state = _seq2_state(hidden=5)
    torch.save(state, tmp_path / "sd.pt")
    spec = f"{user_model_file}:Seq2"
    cases = [
        ({"model_class": "no_colon"}, "must look like 'package.module:Class'"),
        ({"model_class": f"{tmp_path}/missing.py:X"}, "does not exist"),
        ({"model_class": f"{user_model_file}:Nope"}, "has no attribute 'Nope'"),
        ({"model_class": "surely_no_such_module_x:Y"}, "ModuleNotFoundError"),
        ({"model_class": spec, "model_kwargs": "[1]"}, "must be a JSON object"),
        ({"model_class": spec, "model_kwargs": '{"bogus": 1}'}, "TypeError"),
        ({"model_class": spec}, r"'enc.weight_ih_l0' is \(15, 3\) in the file but \(12, 3\)"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(ModelError, match=fragment) as info:
            load_checkpoint(tmp_path / "sd.pt", **kwargs)
        assert "\n" not in str(info.value)
    torch.save({"enc.weight_ih_l0": torch.zeros(15, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ModelError, match=r"missing keys \['enc.weight_hh_l0'"):
        load_checkpoint(tmp_path / "partial.pt", model_class=spec, model_kwargs='{"hidden": 5}')


# -- devices ---------------------------------------------------------------------------------------
def test_device_resolution() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(LstmvizError, match="--device must be cpu, cuda, cuda:N or auto"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU is available"):
            resolve_device("cuda")


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path: Path) -> None:
    model = fx.token_model()
    torch.save(model.state_dict(), tmp_path / "cpu.pt")
    path = fx.cuda_saved_copy(tmp_path / "cpu.pt", tmp_path / "cuda.pt")
    if not torch.cuda.is_available():  # the file really does point at a GPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)
    loaded = load_checkpoint(path, device="cpu")
    _same_outputs(loaded.model, model, fx.token_batch())


@pytest.mark.gpu
def test_loads_onto_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    model = fx.token_model()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = load_checkpoint(tmp_path / "sd.pt", device="cuda")
    assert loaded.device == "cuda" and next(loaded.model.parameters()).is_cuda
    # In full float32: PyTorch's default lets cuDNN's LSTM use TF32 on Ampere and later (2e-5 off here).
    with torch.no_grad(), full_float32():
        torch.testing.assert_close(loaded.model(fx.token_batch().cuda()).cpu(), model(fx.token_batch()), atol=1e-5, rtol=0)


def test_recurrent_configs_cover_cells() -> None:
    model = nn.Module()
    model.cell = nn.GRUCell(3, 4)
    model.lstm = nn.LSTM(4, 5, num_layers=2, proj_size=3)
    configs = recurrent_configs(model)
    assert configs["cell"] == RecurrentConfig(kind="GRUCell", input_size=3, hidden_size=4)
    assert configs["lstm"] == RecurrentConfig(kind="LSTM", input_size=4, hidden_size=5, num_layers=2, proj_size=3,
                                                batch_first=False)


def test_pickled_module_inside_a_dict_needs_trust(tmp_path: Path) -> None:
    model = fx.token_model()
    torch.save({"model": model, "vocab": fx.VOCAB}, tmp_path / "ck.pt")
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        load_checkpoint(tmp_path / "ck.pt")
    loaded = load_checkpoint(tmp_path / "ck.pt", trust_pickle=True)
    assert loaded.info.format == "dict-checkpoint" and loaded.info.unsafe and not loaded.info.rebuilt
    assert loaded.info.vocab == tuple(fx.VOCAB)
    _same_outputs(loaded.model, model, fx.token_batch())


def test_safetensors_with_bad_lstmviz_metadata(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file(dict(fx.token_model().state_dict()), str(path), metadata={"lstmviz": "{oops"})
    with pytest.raises(CheckpointError, match=r"__metadata__\['lstmviz'\] is not valid JSON"):
        load_checkpoint(path)


# -- the committed sample models ---------------------------------------------------------------------
SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
SAMPLE_FILES = {
    "charlm.pt": {},
    "digitsum.pt": {},
    "gru_digitsum.safetensors": {},
    "sine.pt": {},
    "sine.ts.pt": {"trust_torchscript": True},
    "digitsum_module.pt": {"trust_pickle": True},
}


@pytest.mark.parametrize("name", list(SAMPLE_FILES))
def test_sample_models_load_and_match_their_classes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SAMPLES / name).is_file():
        pytest.skip(f"sample_models/{name} not built")
    from lstmviz_cli.loading.inputs import load_sample

    loaded = load_checkpoint(SAMPLES / name, **SAMPLE_FILES[name])
    sample = load_sample(loaded)
    monkeypatch.syspath_prepend(str(SAMPLES))
    import models

    config = loaded.meta["config"]
    cls = models.MODEL_CLASSES[config["model_class"]]
    params = list(cls.__init__.__code__.co_varnames[1 : cls.__init__.__code__.co_argcount])
    original = cls(**{k: config[k] for k in params if k in config}).eval()
    original.load_state_dict(loaded.model.state_dict())
    x = torch.as_tensor(sample.values)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x), rtol=0, atol=1e-6)


def test_config_head_on_last_applies_the_head_to_the_last_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Module()
    model.gru = nn.GRU(3, 4, batch_first=True)
    model.fc = nn.Linear(4, 2)
    torch.save({"model_state_dict": model.state_dict(), "config": {"head_on": "last"}}, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    x = fx.feature_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model.fc(model.gru(x)[0][:, -1]), rtol=0, atol=1e-6)
    torch.save({"model_state_dict": model.state_dict(), "config": {"head_on": "first"}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="'head_on' must be one of 'all', 'last', 'final-states'"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("head_on", ["all", "last"])
def test_rebuilt_model_packs_unequal_lengths(head_on: str, tmp_path: Path) -> None:
    model = fx.token_model()
    torch.save({"model_state_dict": model.state_dict(), "config": {"head_on": head_on}}, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    x = fx.token_batch()  # (2, 7)
    with torch.no_grad():
        got = loaded.model(x, lengths=torch.tensor([7, 3]))
        full = model(x[:1])  # the first sequence is unpadded
        short = model(x[1:, :3])  # the second, alone and cut to its length
    if head_on == "all":
        torch.testing.assert_close(got[:1], full, rtol=0, atol=1e-6)
        torch.testing.assert_close(got[1:, :3], short, rtol=0, atol=1e-6)
    else:
        torch.testing.assert_close(got[0], full[0, -1], rtol=0, atol=1e-6)
        torch.testing.assert_close(got[1], short[0, -1], rtol=0, atol=1e-6)


def test_model_class_through_the_cli(tmp_path: Path, user_model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    from lstmviz_cli.cli import main

    _model, state = _seq2_state(hidden=5)
    torch.save({"state_dict": state, "config": {"hidden": 5}, "sample_input": [[0.1, 0.2, 0.3]] * 4}, tmp_path / "s.pt")
    out = tmp_path / "t.npz"
    args = ["trace", str(tmp_path / "s.pt"), "--model-class", f"{user_model_file}:Seq2", "-o", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    with np.load(out) as arrays:
        assert arrays["enc/l0/fwd/r"].shape == (1, 4, 5) and arrays["dec/l0/fwd/i"].shape == (1, 4, 5)
    assert main([*args[:-2], "--model-kwargs", '{"hidden": 4}', "-o", str(out), "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstmviz: error: the checkpoint does not fit") and err.count("\n") == 1
