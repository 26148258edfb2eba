"""Checkpoints saved the way public projects save them (issue 14, loading): each opens, or gets one line.

Every file is built here with random weights, with the key names, nesting and neighbours (optimizer
state, Lightning bookkeeping, a user's Vocab object) that real training scripts write.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from lstmviz_cli.cli import main
from lstmviz_cli.errors import CheckpointError, InputError, UnsafeCheckpointError
from lstmviz_cli.loading import standins as _unpickle
from lstmviz_cli.loading.checkpoint import load_checkpoint
from lstmviz_cli.loading.inputs import load_sample
from lstmviz_cli.page.sections.summary import loading_rows

CHARS = list("abcdefgh ")  # 9 tokens


class CharLSTM(nn.Module):
    """The common char model: Embedding -> LSTM -> Linear on every step."""

    def __init__(self, vocab_size: int = 9, embed_dim: int = 4, hidden_size: int = 6) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(self.embedding(x))[0])


USER_FILE = '''
import torch
from torch import nn


class CharLSTM(nn.Module):
    def __init__(self, vocab_size=9, embed_dim=4, hidden_size=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, vocab_size)

    def forward(self, x):
        return self.fc(self.lstm(self.embedding(x))[0])


class StockLSTM(nn.Module):
    def __init__(self, features=3, hidden=5):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


if __name__ == "__main__":
    raise SystemExit("training would start here")
'''


def _model(seed: int = 0, **kwargs: int) -> CharLSTM:
    torch.manual_seed(seed)
    return CharLSTM(**kwargs).eval()


def _tokens() -> torch.Tensor:
    return torch.tensor([[0, 3, 2, 8, 1, 5, 7], [4, 4, 0, 1, 2, 6, 8]])


def _adam_state(model: nn.Module) -> dict[str, Any]:
    """A real optimizer state after one step (the step changes the model's weights too)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    model(_tokens()).sum().backward()
    optimizer.step()
    model.eval()
    return optimizer.state_dict()


def _same_output(loaded: Any, original: nn.Module, x: torch.Tensor | None = None) -> None:
    x = _tokens() if x is None else x
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x).float(), rtol=0, atol=1e-5)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI; no Python warning may be raised on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(args)
    out, err = capsys.readouterr()
    assert not [str(w.message) for w in caught]
    assert "Traceback" not in err
    return code, out, err


def _trace(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    text = tmp_path / "sample.txt"
    text.write_text("bad cafe")
    sample = [] if "--tokens" in extra else ["-i", str(text)]
    code, _out, err = _cli(["trace", str(path), *sample, "-o", str(tmp_path / "t.npz"), "--force", *extra], capsys)
    # A rebuild's tensor accounting (issue 13) is its own line: every model here places all its tensors.
    accounting = re.compile(r"^lstmviz: [^:]+: rebuilt from weights: all \d+ tensors placed\n", re.M)
    return code, accounting.sub("", err)


def _error(err: str) -> str:
    assert err.startswith("lstmviz: error: ") and err.count("\n") == 1, err
    return err.removeprefix("lstmviz: error: ").rstrip("\n")


# -- weights under other keys ------------------------------------------------------------------------
def test_model_state_beside_optimizer_state_epoch_and_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model()
    optimizer_state = _adam_state(model)
    path = tmp_path / "ckpt_epoch3.pt"
    torch.save({"epoch": 3, "model_state": model.state_dict(), "optimizer_state": optimizer_state,
                "loss": 0.731, "chars": CHARS}, path)
    loaded = load_checkpoint(path)
    assert loaded.info.weights_key == "model_state" and loaded.info.format == "dict-checkpoint"
    assert loaded.info.vocab == tuple(CHARS) and loaded.info.vocab_source == "chars"
    _same_output(loaded, model)
    assert ("weights", "'model_state' of the checkpoint dict") in loading_rows(loaded.info)
    code, err = _trace(path, tmp_path, capsys)
    assert code == 0 and err == ""


def test_net_key_and_nesting_one_level_down(tmp_path: Path) -> None:
    model = _model(1)
    torch.save({"net": model.state_dict(), "iteration": 500}, tmp_path / "net.pth")
    loaded = load_checkpoint(tmp_path / "net.pth")
    assert loaded.info.weights_key == "net"
    _same_output(loaded, model)
    torch.save({"checkpoint": {"model": model.state_dict(), "vocab": CHARS, "step": 9}, "args": {"lr": 0.1}},
               tmp_path / "nested.pt")
    loaded = load_checkpoint(tmp_path / "nested.pt")
    assert loaded.info.weights_key == "checkpoint/model" and loaded.info.vocab == tuple(CHARS)
    assert loaded.meta["other"]["step"] == 9 and loaded.meta["other"]["args"] == {"lr": 0.1}
    _same_output(loaded, model)
    assert load_checkpoint(tmp_path / "nested.pt", weights_key="checkpoint/model").info.weights_key == "checkpoint/model"


def test_several_weight_sets_are_named_and_chosen_with_weights_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, ema = _model(2), _model(3)
    path = tmp_path / "ema.pt"
    torch.save({"model": model.state_dict(), "ema_model": ema.state_dict(), "head_only": nn.Linear(6, 9).state_dict(),
                "chars": CHARS}, path)
    code, err = _trace(path, tmp_path, capsys)
    assert code == 2
    assert _error(err) == (
        "'ema.pt' holds 2 sets of recurrent weights: 'model' (7 tensors), 'ema_model' (7 tensors); "
        "choose one with --weights-key, e.g. --weights-key model"
    )
    _same_output(load_checkpoint(path, weights_key="ema_model"), ema)
    code, err = _trace(path, tmp_path, capsys, "--weights-key", "ema_model")
    assert code == 0 and err == ""
    code, err = _trace(path, tmp_path, capsys, "--weights-key", "optimizer")
    assert _error(err) == (
        "--weights-key 'optimizer' is not a state dict in 'ema.pt' (state dicts found: 'model' (7 tensors), "
        "'ema_model' (7 tensors), 'head_only' (2 tensors))"
    )
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="^--weights-key 'model': 'bare.pt' is a bare state dict"):
        load_checkpoint(tmp_path / "bare.pt", weights_key="model")


def test_an_optimizer_state_is_not_a_model_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "opt.pt"
    torch.save({"epoch": 3, "optimizer_state": _adam_state(_model()), "loss": torch.tensor(0.5)}, path)
    code, err = _trace(path, tmp_path, capsys)
    assert code == 2
    assert _error(err) == (
        "'opt.pt' holds a dict ('epoch', 'optimizer_state', 'loss') with no weights: no mapping of parameter "
        "names to tensors at its top level or one level down; 'optimizer_state' is an optimizer's state, not the model's"
    )


# -- PyTorch Lightning ---------------------------------------------------------------------------------
def _lightning(
    model: nn.Module, tmp_path: Path, *, extra: dict[str, torch.Tensor] | None = None, prefix: str = "model."
) -> Path:
    """A .ckpt as Lightning 2.x writes it for a LightningModule holding the network as `self.model`."""
    optimizer_state = _adam_state(model)
    state = {f"{prefix}{k}": v for k, v in model.state_dict().items()}
    state.update(extra or {})
    checkpoint = {
        "epoch": 4,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 5, "completed": 4}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0}": {
                "monitor": "val_loss", "best_model_score": torch.tensor(0.83), "best_model_path": "ckpts/best.ckpt",
                "current_score": torch.tensor(0.83), "dirpath": "ckpts", "best_k_models": {"ckpts/best.ckpt": torch.tensor(0.83)},
                "kth_best_model_path": "ckpts/best.ckpt", "kth_value": torch.tensor(0.83), "last_model_path": "",
            }
        },
        "optimizer_states": [optimizer_state],
        "lr_schedulers": [{"step_size": 10, "gamma": 0.5, "base_lrs": [0.001], "last_epoch": 4, "_step_count": 5}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"vocab_size": 9, "embed_dim": 4, "hidden_size": 6, "lr": 0.001},
    }
    path = tmp_path / "epoch=4-step=120.ckpt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("prefix", ["model.", "net._orig_mod."])  # the second: torch.compile inside the module
def test_lightning_checkpoint_rebuilt_without_its_attribute_prefix(prefix: str, tmp_path: Path) -> None:
    model = _model(4)
    loaded = load_checkpoint(_lightning(model, tmp_path, prefix=prefix))
    assert loaded.info.lightning and loaded.info.weights_key == "state_dict"
    assert loaded.info.key_prefix == prefix.split(".")[0] + "."
    assert [name for name, _ in loaded.model.named_children()] == ["embedding", "lstm", "fc"]
    assert loaded.meta["config"] == {"vocab_size": 9, "embed_dim": 4, "hidden_size": 6, "lr": 0.001}
    assert ("weights", "PyTorch Lightning checkpoint: 'state_dict' of the checkpoint dict, keys without "
            f"the LightningModule's attribute prefix {loaded.info.key_prefix!r}") in loading_rows(loaded.info)
    _same_output(loaded, model)


def test_lightning_checkpoint_with_the_inner_model_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(5, hidden_size=7)
    user = tmp_path / "nets.py"
    user.write_text(USER_FILE)
    # A class-weighted loss registers a buffer beside the network: kept out, and listed.
    path = _lightning(model, tmp_path, extra={"criterion.weight": torch.ones(9)})
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["hidden_size"] = 7
    torch.save(checkpoint, path)
    loaded = load_checkpoint(path, model_class=f"{user}:CharLSTM")  # kwargs from hyper_parameters
    assert not loaded.info.rebuilt and loaded.info.key_prefix == "model."
    assert loaded.model.lstm.hidden_size == 7 and loaded.info.accounting.unused == ("criterion.weight",)
    _same_output(loaded, model)
    code, err = _trace(path, tmp_path, capsys, "--model-class", f"{user}:CharLSTM", "--tokens", "1,0,3,3,8")
    # The loss's weights are accounted for (issue QA D7): listed on stderr, the page and the JSON.
    assert code == 0 and err == ("lstmviz: epoch=4-step=120.ckpt: loaded into nets.py:CharLSTM: placed 7 of 8 tensors; "
                                 "not used (1): criterion.weight\n")


# -- a custom object beside plain weights -------------------------------------------------------------
VOCAB_MODULE = '''
class Vocab:
    """A user's vocabulary: plain attributes, no __reduce__."""

    def __init__(self, tokens):
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.freqs = {t: 1 for t in self.itos}
'''


def _throwaway_module(name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module that exists while the file is saved, and is gone (not importable) when it is loaded."""
    module = types.ModuleType(name)
    exec(compile(source, name, "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_user_vocab_object_opens_as_plain_data_without_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vocab_mod = _throwaway_module("vocab_mod", VOCAB_MODULE, monkeypatch)
    model = _model(6)
    path = tmp_path / "char_rnn.pt"
    torch.save({"model_state_dict": model.state_dict(), "vocab": vocab_mod.Vocab(CHARS), "epoch": 7}, path)
    monkeypatch.delitem(sys.modules, "vocab_mod")
    loaded = load_checkpoint(path)
    assert not loaded.info.unsafe and loaded.info.skipped == (("vocab", "vocab_mod.Vocab"),)
    assert loaded.info.vocab == tuple(CHARS) and loaded.info.vocab_source == "vocab/itos"
    assert loaded.meta["input_format"] == "text"  # characters: .txt input is read character by character
    _same_output(loaded, model)
    note = ("opened without running code: 'vocab' (vocab_mod.Vocab) (a class lstmviz did not import, read as "
            "plain data); the vocabulary inside ('vocab/itos', 9 tokens) is used")
    assert ("loading note", note) in loading_rows(loaded.info)
    code, err = _trace(path, tmp_path, capsys, "--json", str(tmp_path / "t.json"))
    assert code == 0 and err == f"lstmviz: note: char_rnn.pt: {note}\n"
    summary = json.loads((tmp_path / "t.json").read_text())
    assert summary["meta"]["loading"] == {"weights_key": "model_state_dict", "vocab_source": "vocab/itos", "notes": [note]}
    assert "vocab_mod" not in sys.modules


@pytest.mark.parametrize("protocol", [2, 3])
def test_vocab_object_in_a_legacy_file(protocol: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vocab_mod = _throwaway_module("vocab_mod", VOCAB_MODULE, monkeypatch)
    model = _model(7)
    path = tmp_path / "legacy.pt"
    torch.save({"state_dict": model.state_dict(), "vocab": vocab_mod.Vocab(CHARS)}, path,
               _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    monkeypatch.delitem(sys.modules, "vocab_mod")
    loaded = load_checkpoint(path)
    assert loaded.info.skipped == (("vocab", "vocab_mod.Vocab"),) and loaded.info.vocab == tuple(CHARS)
    _same_output(loaded, model)


# Objects whose unpickling would run code: each must stay refused, with nothing executed.
HOSTILE_VOCABS = {
    "os.system": ("import os\nclass Vocab:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n",
                  "posix.system"),
    "builtins.exec": ("class Vocab:\n    def __reduce__(self):\n        return (exec, ('open(r\"{marker}\", \"w\")',))\n",
                      "builtins.exec"),
    "subprocess.Popen": ("import subprocess\nclass Vocab:\n    def __reduce__(self):\n"
                         "        return (subprocess.Popen, (['touch', r'{marker}'],))\n",
                         "commands.Popen"),  # pickle's Python 2 name for subprocess
    "open in its state": ("class Opener:\n    def __reduce__(self):\n        return (open, (r'{marker}', 'w'))\n"
                          "class Vocab:\n    def __init__(self):\n        self.itos = ['a', 'b']\n"
                          "        self.hook = Opener()\n", "io.open"),
    "torch._C": ("import torch\nclass Vocab:\n    def __reduce__(self):\n"
                 "        return (torch._C._nn.linear, ())\n", "torch._C._nn.linear"),
    "calls its own class": ("class Vocab:\n    def __init__(self, itos=('a', 'b')):\n        self.itos = list(itos)\n"
                            "    def __reduce__(self):\n        return (Vocab, (self.itos,))\n",
                            "calls vocab_evil.Vocab(...) to build an object"),
    "calls a user function": ("def make_vocab(itos):\n    open(r'{marker}', 'w')\n"
                              "class Vocab:\n    def __reduce__(self):\n        return (make_vocab, (['a', 'b'],))\n",
                              "calls vocab_evil.make_vocab(...) to build an object"),
    "builds from constructor arguments": ("class Vocab(tuple):\n    def __new__(cls, *a):\n        return super().__new__(cls, a)\n"
                                          "    def __getnewargs__(self):\n        return ('a', 'b')\n",
                                          "builds vocab_evil.Vocab from constructor arguments"),
}


@pytest.mark.parametrize("case", list(HOSTILE_VOCABS))
def test_hostile_vocab_objects_are_refused_and_run_nothing(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "MARKER"
    source, expected = HOSTILE_VOCABS[case]
    module = _throwaway_module("vocab_evil", source.replace("{marker}", str(marker)), monkeypatch)
    vocab = module.Vocab(("a", "b")) if case == "builds from constructor arguments" else module.Vocab()
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": _model().state_dict(), "vocab": vocab}, path)
    monkeypatch.delitem(sys.modules, "vocab_evil")
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    assert expected in str(info.value) and "--trust-pickle" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists() and "vocab_evil" not in sys.modules


@pytest.mark.parametrize(
    "name",
    ["os.system", "posix.system", "nt.system", "builtins.exec", "builtins.eval", "subprocess.Popen",
     "torch._C._jit_set_profiling_mode", "torch.nn.modules.rnn.LSTM", "numpy.core.multiarray._reconstruct",
     "_posixsubprocess.fork_exec", "functools.partial", "copyreg._reconstructor", "pickle.loads",
     "importlib.import_module", "runpy._run_code", "lstmviz_cli.cli.main", "commands.getoutput",
     "__builtin__.eval", "copy_reg._reconstructor", "cPickle.loads", "vocab mod.Vocab", "Vocab",
     "vocab.Vocab;rm"],
)
def test_dangerous_or_odd_globals_never_become_stand_ins(name: str) -> None:
    assert _unpickle.refusal(name) is not None
    assert _unpickle.standins_for(["vocab_mod.Vocab", name]) is None


def test_stand_ins_are_inert() -> None:
    assert _unpickle.refusal("vocab_mod.Vocab") is None and _unpickle.refusal("__main__.Tokenizer") is None
    cls = _unpickle.standins_for(["vocab_mod.Vocab"])["vocab_mod.Vocab"]
    with pytest.raises(_unpickle.StandInRefused, match=r"calls vocab_mod\.Vocab\(\.\.\.\)"):
        cls(["a"])
    with pytest.raises(_unpickle.StandInRefused, match="constructor arguments"):
        cls.__new__(cls, "a")
    obj = cls.__new__(cls)
    obj.__setstate__({"itos": ["a", "b"], "__setstate__": print, "__class__": dict})
    assert not hasattr(obj, "__dict__") and type(obj) is cls and obj.__setstate__.__func__ is _unpickle.StandIn.__setstate__
    with pytest.raises(_unpickle.StandInRefused, match="twice"):
        obj.__setstate__({})
    assert _unpickle.plain_state(obj) == {"itos": ["a", "b"]}


def _spliced(tmp_path: Path, name: str, ops: bytes) -> Path:
    """A real checkpoint {"vocab": <ops>, "state_dict": ..., "chars": ...} with raw opcodes for the vocab."""
    good = tmp_path / "good.pt"
    torch.save({"vocab": None, "state_dict": _model().state_dict(), "chars": CHARS}, good)
    with zipfile.ZipFile(good) as archive:
        names = archive.namelist()
        data_pkl = next(n for n in names if n.endswith("data.pkl"))
        payload = archive.read(data_pkl)
    # `"vocab": None` is b"X\x05\x00\x00\x00vocabq\x01N" in the original: the N becomes `ops`.
    none_at = payload.index(b"N", payload.index(b"vocab"))
    path = tmp_path / name
    with zipfile.ZipFile(good) as old, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as new:
        for member in names:
            data = old.read(member)
            new.writestr(member, payload[:none_at] + ops + payload[none_at + 1:] if member == data_pkl else data)
    return path


def test_hand_written_pickles_cannot_misuse_a_stand_in(tmp_path: Path) -> None:
    """Opcode sequences that a normal pickler never writes: calling an instance, building twice."""
    standin = b"cvocab_mod\nVocab\n)\x81"  # GLOBAL, EMPTY_TUPLE, NEWOBJ: an empty stand-in
    cases = {
        "plain object": standin + b"}b",  # BUILD once: what a pickler writes; the control case
        "instance called": standin + b")R",  # REDUCE with the instance as the callable
        "built twice": standin + b"}b}b",  # BUILD, BUILD
        "class built as a type": b"cvocab_mod\nVocab\n}b",  # BUILD on the class itself
    }
    for case, ops in cases.items():
        bad = _spliced(tmp_path, f"{case.replace(' ', '_')}.pt", ops)
        if case == "plain object":
            assert load_checkpoint(bad).info.skipped == (("vocab", "vocab_mod.Vocab"),)
            continue
        with pytest.raises(UnsafeCheckpointError) as info:
            load_checkpoint(bad)
        message = str(info.value)
        assert message.startswith(f"{bad.name!r} needs unsafe globals (vocab_mod.Vocab)") and "\n" not in message, case
        assert ("and it sets the state of a vocab_mod.Vocab twice" in message) is (case == "built twice")


# -- torch.save(model) from a script ------------------------------------------------------------------
def _saved_from_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[nn.Module, Path, Path]:
    """train.py ran `torch.save(model, "stock.pt")`: the pickle names __main__.StockLSTM."""
    script = tmp_path / "train.py"
    script.write_text(USER_FILE)
    namespace = {"__name__": "__main__"}
    exec(compile(USER_FILE.split('if __name__')[0], str(script), "exec"), namespace)
    cls = namespace["StockLSTM"]
    cls.__module__ = "__main__"
    monkeypatch.setattr(sys.modules["__main__"], "StockLSTM", cls, raising=False)
    torch.manual_seed(8)
    model = cls().eval()
    path = tmp_path / "stock.pt"
    torch.save(model, path)
    monkeypatch.delattr(sys.modules["__main__"], "StockLSTM")
    return model, path, script


def test_whole_model_saved_from_a_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    model, path, script = _saved_from_script(tmp_path, monkeypatch)
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    csv = tmp_path / "prices.csv"
    csv.write_text("\n".join(",".join(f"{v:.4f}" for v in row) for row in x[0].tolist()))
    run = ["trace", str(path), "-i", str(csv), "-o", str(tmp_path / "t.npz"), "--force"]
    code, _out, err = _cli(run, capsys)
    assert code == 2 and _error(err) == (
        "'stock.pt' needs unsafe globals (__main__.StockLSTM, torch.nn.modules.linear.Linear, "
        "torch.nn.modules.rnn.LSTM): loading it would run code from the file; pass --trust-pickle --model-class "
        "path/to/the_script.py:StockLSTM (the script that saved it) only if you trust it, or re-save it as a "
        "state_dict (torch.save(model.state_dict(), ...)) or as safetensors"
    )
    code, _out, err = _cli([*run, "--trust-pickle"], capsys)
    assert code == 2 and _error(err) == (
        "'stock.pt' was saved with torch.save(model) from a script and needs __main__.StockLSTM, which only that "
        "script defines: pass --model-class path/to/the_script.py:StockLSTM with --trust-pickle"
    )
    loaded = load_checkpoint(path, trust_pickle=True, model_class=f"{script}:StockLSTM")
    assert loaded.info.format == "pickled-module" and loaded.info.unsafe and not loaded.info.rebuilt
    assert type(loaded.model).__name__ == "StockLSTM" and type(loaded.model).__module__ == "lstmviz_user_train"
    _same_output(loaded, model, x)
    code, _out, err = _cli([*run, "--trust-pickle", "--model-class", f"{script}:StockLSTM"], capsys)
    assert code == 0 and "unsafe deserialization" in err
    # The class renamed in the user's file: the one __main__ class the pickle needs is the named class.
    renamed = tmp_path / "models.py"
    renamed.write_text(USER_FILE.replace("class StockLSTM", "class PriceLSTM"))
    loaded = load_checkpoint(path, trust_pickle=True, model_class=f"{renamed}:PriceLSTM")
    assert type(loaded.model).__name__ == "PriceLSTM"
    _same_output(loaded, model, x)


def test_script_pickle_needing_two_classes_names_the_missing_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = ("from torch import nn\n\nclass Block(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
              "        self.gru = nn.GRU(3, 4, batch_first=True)\n\n    def forward(self, x):\n        return self.gru(x)[0]\n\n"
              "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.block = Block()\n\n"
              "    def forward(self, x):\n        return self.block(x)\n")
    namespace = {"__name__": "__main__"}
    exec(compile(source, "train.py", "exec"), namespace)
    for name in ("Block", "Net"):
        namespace[name].__module__ = "__main__"
        monkeypatch.setattr(sys.modules["__main__"], name, namespace[name], raising=False)
    path = tmp_path / "net.pt"
    torch.save(namespace["Net"](), path)
    for name in ("Block", "Net"):
        monkeypatch.delattr(sys.modules["__main__"], name)
    partial = tmp_path / "partial.py"
    partial.write_text(source.split("class Net")[0].replace("class Block", "class Net"))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, trust_pickle=True, model_class=f"{partial}:Net")
    assert str(info.value) == (
        f"'net.pt' needs __main__.Block, which {str(partial)!r} does not define: pass --model-class with the "
        "script that saved the model (the file that defines Block)"
    )
    full = tmp_path / "full.py"
    full.write_text(source)
    loaded = load_checkpoint(path, trust_pickle=True, model_class=f"{full}:Net")
    assert [name for name, _ in loaded.model.named_modules()] == ["", "block", "block.gru"]


# -- vocabularies under the names people use ----------------------------------------------------------
def _vocab_entries(names: str) -> dict[str, Any]:
    forward = {token: i for i, token in enumerate(CHARS)}
    backward = dict(enumerate(CHARS))
    if names == "chars":
        return {"chars": CHARS}
    if names == "tokens":
        return {"tokens": CHARS}
    if names == "vocab/stoi+itos":
        return {"vocab": {"stoi": forward, "itos": CHARS}}
    to_id, to_token = names.split("+")
    return {to_id: forward, to_token: backward}


@pytest.mark.parametrize(
    "names",
    ["char_to_int+int_to_char", "stoi+itos", "char2idx+idx2char", "char_to_ix+ix_to_char", "chars", "tokens",
     "vocab/stoi+itos"],
)
def test_character_vocabularies_need_no_sidecar(names: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(9)
    path = tmp_path / "char.pt"
    torch.save({"model_state_dict": model.state_dict(), **_vocab_entries(names)}, path)
    loaded = load_checkpoint(path)
    assert loaded.info.vocab == tuple(CHARS)
    assert loaded.meta["vocab_level"] == "char" and loaded.meta["input_format"] == "text"
    if names == "vocab/stoi+itos":
        assert loaded.info.vocab_source == "vocab/itos"
    code, err = _trace(path, tmp_path, capsys)  # "bad cafe" read as characters through the found vocabulary
    assert code == 0 and err == ""


def test_word_vocabulary_with_a_reserved_padding_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
    model = _model(10)
    word2idx = {w: i + 1 for i, w in enumerate(words)}  # Keras-style: 0 is padding
    torch.save({"model": model.state_dict(), "word2idx": word2idx, "idx2word": {i: w for w, i in word2idx.items()},
                "label2idx": {"neg": 0, "pos": 1}}, tmp_path / "words.pt")
    loaded = load_checkpoint(tmp_path / "words.pt")
    # Both directions agree on ids 1..8; id 0 (padding) has no token.
    assert loaded.info.vocab == ("<id 0>", *words) and loaded.info.vocab_source == "idx2word"
    assert loaded.meta["vocab_level"] == "word"
    assert loaded.info.output_labels == ("neg", "pos") and loaded.info.labels_source == "label2idx"
    (tmp_path / "review.txt").write_text("the dog sat on a mat\n")
    code, _out, err = _cli(["trace", str(tmp_path / "words.pt"), "-i", str(tmp_path / "review.txt"),
                            "-o", str(tmp_path / "t.npz"), "--json", str(tmp_path / "t.json")], capsys)
    note = "'idx2word' assigns no token to id 0 (shown as <id 0>)"
    labels = "output_labels (2) do not match the head's 9 outputs: not used as class names"
    assert code == 0 and err == (f"lstmviz: note: words.pt: {note}\nlstmviz: note: words.pt: {labels}\n"
                                 "lstmviz: words.pt: rebuilt from weights: all 7 tensors placed\n")
    assert json.loads((tmp_path / "t.json").read_text())["meta"]["sample"].endswith(": 6 words")
    assert loaded.meta["input_format"] == "tokens" and loaded.info.load_notes == (note, labels)


def test_disagreeing_directions_are_not_used(tmp_path: Path) -> None:
    torch.save({"model": _model().state_dict(), "stoi": {t: i for i, t in enumerate(CHARS)},
                "itos": list(reversed(CHARS)), "idx2label": {"0": "neg", "1": "pos"}}, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.info.vocab is None
    assert loaded.info.load_notes == ("vocabulary not used: 'itos' and 'stoi' disagree",
                                      "output_labels (2) do not match the head's 9 outputs: not used as class names")
    assert loaded.info.output_labels == ("neg", "pos") and loaded.info.labels_source == "idx2label"
    # Text then says why there is no vocabulary, and no second note claims 'vocab' holds no token list (S3).
    sample = tmp_path / "in.txt"
    sample.write_text("abc")
    with pytest.raises(InputError, match=r"the checkpoint's vocabulary was not used \('itos' and 'stoi' disagree\)"):
        load_sample(loaded, path=sample)


# -- formats lstmviz cannot read, named ----------------------------------------------------------------
PORT = ("lstmviz reads PyTorch checkpoints only: build the model in PyTorch, copy the weights in and save its "
        "state_dict (torch.save(model.state_dict(), 'model.pt'))")


def _keras_archive(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "3.4.1"}')
        archive.writestr("config.json", '{"class_name": "Sequential"}')
        archive.writestr("model.weights.h5", b"\x89HDF\r\n\x1a\n" + bytes(64))
    return path


def _saved_model(path: Path) -> Path:
    path.mkdir()
    (path / "saved_model.pb").write_bytes(b"\x08\x01\x12\x8a\x03\n\x0c\n\x05serve" + bytes(40))
    (path / "variables").mkdir()
    return path


FOREIGN = {
    "onnx": (lambda t: _write(t / "model.onnx", b"\x08\x08\x12\x07pytorch\x1a\x052.4.0:\x9c\x01" + bytes(32)),
             "{p!r} is an ONNX model, which lstmviz cannot trace gate by gate: pass the PyTorch checkpoint "
             "(.pt/.pth/.safetensors) it was exported from"),
    "onnx renamed .pt": (lambda t: _write(t / "model.pt", b"\x08\x07\x12\x07pytorch\x1a\x031.0:\x10" + bytes(32)),
                         "{p!r} is an ONNX model, which lstmviz cannot trace gate by gate: pass the PyTorch "
                         "checkpoint (.pt/.pth/.safetensors) it was exported from"),
    "git lfs pointer": (lambda t: _write(t / "model.pt", b"version https://git-lfs.github.com/spec/v1\noid sha256:"
                                         + b"4d7a" * 16 + b"\nsize 5452134\n"),
                        "{p!r} is a Git LFS pointer (a 132-byte text file standing in for the real 5.2 MB file): run "
                        "`git lfs pull` in its repository to download the checkpoint"),
    "keras h5": (lambda t: _write(t / "model.h5", b"\x89HDF\r\n\x1a\n" + bytes(120)),
                 "{p!r} is an HDF5 file (Keras .h5 / TensorFlow weights); " + PORT),
    "keras archive": (lambda t: _keras_archive(t / "model.keras"),
                      "{p!r} is a Keras model archive (.keras: config.json and model.weights.h5); " + PORT),
    "savedmodel directory": (lambda t: _saved_model(t / "export"),
                             "{p!r} is a TensorFlow SavedModel directory (saved_model.pb inside); " + PORT),
    "saved_model.pb": (lambda t: _saved_model(t / "export") / "saved_model.pb",
                       "{p!r} is a TensorFlow SavedModel graph (saved_model.pb); " + PORT),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(FOREIGN))
def test_formats_of_other_tools_are_named_with_what_to_do(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build, message = FOREIGN[case]
    path = build(tmp_path)
    code, _out, err = _cli(["trace", str(path), "--tokens", "1,2", "-o", str(tmp_path / "t.npz")], capsys)
    assert code == 2 and _error(err) == message.format(p=str(path))


def test_bytes_win_over_the_extension(tmp_path: Path) -> None:
    model = _model()
    torch.save(model.state_dict(), tmp_path / "misnamed.onnx", _use_new_zipfile_serialization=False)
    _same_output(load_checkpoint(tmp_path / "misnamed.onnx"), model)


def test_a_directory_names_the_checkpoints_inside(tmp_path: Path) -> None:
    folder = tmp_path / "hub_model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a directory; pass the checkpoint file inside it \(it holds 'model.safetensors'\)$"):
        load_checkpoint(folder)


# -- half precision ------------------------------------------------------------------------------------
def test_float16_state_dict_says_it_was_stored_in_half_precision(tmp_path: Path) -> None:
    model = _model(11).half()
    torch.save({"model_state_dict": model.state_dict(), "vocab": CHARS}, tmp_path / "half.pt")
    loaded = load_checkpoint(tmp_path / "half.pt")
    assert loaded.info.stored_dtype == "float16" and loaded.info.run_dtype == "float32"
    assert ("stored precision", "float16 weights, run in float32 (upcast on CPU)") in loading_rows(loaded.info)
    _same_output(loaded, model.float())


def test_bfloat16_safetensors(tmp_path: Path) -> None:
    model = _model(12).to(torch.bfloat16)
    save_file(dict(model.state_dict()), str(tmp_path / "model.safetensors"))
    loaded = load_checkpoint(tmp_path / "model.safetensors")
    assert loaded.info.stored_dtype == "bfloat16"
    assert ("stored precision", "bfloat16 weights, run in float32 (upcast on CPU)") in loading_rows(loaded.info)
    _same_output(loaded, model.float())


def test_whole_float16_module_is_upcast_on_cpu(tmp_path: Path) -> None:
    model = _model(13).half()
    torch.save(model, tmp_path / "whole.pt")
    loaded = load_checkpoint(tmp_path / "whole.pt", trust_pickle=True)
    assert (loaded.info.stored_dtype, loaded.info.run_dtype) == ("float16", "float32")
    _same_output(loaded, model.float())


def test_plain_float32_pages_say_nothing_new(tmp_path: Path) -> None:
    torch.save(_model().state_dict(), tmp_path / "sd.pt")
    assert loading_rows(load_checkpoint(tmp_path / "sd.pt").info) == []


def test_no_stand_in_leaks_into_the_allowlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vocab_mod = _throwaway_module("vocab_mod", VOCAB_MODULE, monkeypatch)
    torch.save({"state_dict": _model().state_dict(), "vocab": vocab_mod.Vocab(CHARS)}, tmp_path / "v.pt")
    monkeypatch.delitem(sys.modules, "vocab_mod")
    before = set(torch.serialization.get_safe_globals())
    load_checkpoint(tmp_path / "v.pt")
    assert set(torch.serialization.get_safe_globals()) == before
    # Without lstmviz, torch alone still refuses the file.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "v.pt", weights_only=True)
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") is None


def test_deeply_nested_metadata_is_left_out_not_a_crash(tmp_path: Path) -> None:
    # 5,000 nested lists: the weights-only unpickler builds them iteratively, deeper than Python recurses.
    path = _spliced(tmp_path, "deep.pt", b"]" * 5000 + b"a" * 4999)
    loaded = load_checkpoint(path)
    assert "vocab" not in loaded.meta or loaded.meta["vocab"] == CHARS
    assert loaded.info.vocab == tuple(CHARS) and loaded.info.vocab_source == "chars"


# -- QA of issues 13/14: the loading defects (D2, D6, D7, D10, D12, S1–S3, S5–S7, S9) --------------------


def _plan(state: dict[str, torch.Tensor], **options: Any) -> Any:
    from lstmviz_cli.loading.rebuildplan import plan_rebuild

    return plan_rebuild(state, {}, **options)


def _linear(state: dict[str, torch.Tensor], name: str, out: int, width: int, bias: bool = True) -> None:
    state[f"{name}.weight"] = torch.randn(out, width)
    if bias:
        state[f"{name}.bias"] = torch.randn(out)


def _gru_keys(state: dict[str, torch.Tensor], name: str, width: int, hidden: int) -> None:
    state.update({f"{name}.weight_ih_l0": torch.randn(3 * hidden, width), f"{name}.weight_hh_l0": torch.randn(3 * hidden, hidden),
                  f"{name}.bias_ih_l0": torch.randn(3 * hidden), f"{name}.bias_hh_l0": torch.randn(3 * hidden)})


def test_modules_registered_before_the_recurrent_layer_are_refused() -> None:
    """D2: the seq2seq tutorial's AttnDecoderRNN (attention.Wa/Ua/Va before gru 32->16), an Embedding(22, 16)
    and a `block.a` Linear(16, 16) before a GRU(32, 16) may all run before it, whatever their widths."""
    state: dict[str, torch.Tensor] = {"embedding.weight": torch.randn(22, 16)}
    _linear(state, "attention.Wa", 16, 16)
    _linear(state, "attention.Ua", 16, 16)
    _linear(state, "attention.Va", 1, 16)
    _gru_keys(state, "gru", 32, 16)
    _linear(state, "out", 22, 16)
    plan = _plan(state)
    assert [g.name for g in plan.front] == ["embedding", "attention.Wa", "attention.Ua", "attention.Va"]
    block: dict[str, torch.Tensor] = {}
    _linear(block, "block.a", 16, 16)
    _gru_keys(block, "gru", 32, 16)
    _linear(block, "out", 2, 16)
    assert [g.name for g in _plan(block).front] == ["block.a"]
    # safetensors sorts its keys: there, only the widths can say a Linear listed first reads the output.
    assert [g.name for g in _plan(block, ordered=False).front] == []
    assert _plan(state).front[0].label() == "embedding (a bias-free Linear or an Embedding)"


def test_a_head_reading_pooled_features_is_after_not_in_front() -> None:
    """S1: fc = Linear(2H, 2) after the LSTM (cat(h_n[-1], out.mean(1))) cannot feed the LSTM: not used, no head."""
    model = nn.ModuleDict({"embedding": nn.Embedding(30, 8), "lstm": nn.LSTM(8, 16, batch_first=True),
                           "fc": nn.Linear(32, 2)})
    plan = _plan(dict(model.state_dict()))
    assert plan.front == [] and plan.head is None and plan.unused == ["fc.weight", "fc.bias"]
    assert "fc (Linear) does not read the recurrent output width 16" in plan.head_note


def test_lightning_weighted_loss_is_accounted_for_and_the_head_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """D7: `criterion.weight` of a LightningModule's weighted loss has no `model.` prefix: the prefix is still
    removed, the loss's weights are listed as not used, and model.fc stays the head."""
    model = _model(3)
    path = _lightning(model, tmp_path, extra={"criterion.weight": torch.ones(9)})
    loaded = load_checkpoint(path)
    assert loaded.info.key_prefix == "model." and loaded.info.head is not None and loaded.info.head.modules == ("fc",)
    assert loaded.info.accounting.unused == ("criterion.weight",)
    _same_output(loaded, model)


def test_trusted_vocab_object_is_read_and_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D6: a torchtext-style Vocab (itos list, stoi defaultdict) under --trust-pickle: its vocabulary is used, with a note."""
    mod = _throwaway_module("qa_vocab_mod", (
        "import collections\n"
        "class Vocab:\n"
        "    def __init__(self, chars):\n"
        "        self.itos = list(chars)\n"
        "        self.stoi = collections.defaultdict(int, {c: i for i, c in enumerate(self.itos)})\n"), monkeypatch)
    torch.save({"model_state_dict": _model().state_dict(), "vocab": mod.Vocab(CHARS)}, tmp_path / "v.pt")
    loaded = load_checkpoint(tmp_path / "v.pt", trust_pickle=True)
    assert loaded.info.vocab == tuple(CHARS) and loaded.info.vocab_source == "vocab/itos"
    from lstmviz_cli.loading.summary import loading_notes

    assert loading_notes(loaded.info) == ["'vocab' is a qa_vocab_mod.Vocab object: the vocabulary inside "
                                          "('vocab/itos', 9 tokens) is used"]


@pytest.mark.parametrize(("vocab", "why"), [
    (["a", "b", "a", *"cdefgh"], "'vocab' lists 'a' more than once (tokens must be distinct)"),
    (list("abcdef"), "it has 6 tokens but the embedding 'embedding' has 9 rows"),
    (list("abcdefghijklmnopqrstuvwxyz"), "it has 26 tokens but the embedding 'embedding' has 9 rows"),
])
def test_a_vocabulary_that_cannot_be_right_is_not_used(vocab: list[str], why: str, tmp_path: Path) -> None:
    """D10: duplicate tokens, or a vocabulary whose size is not the Embedding's: not used, said, and text refused so."""
    torch.save({"model_state_dict": _model().state_dict(), "vocab": vocab}, tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.info.vocab is None and loaded.info.load_notes == (f"vocabulary not used: {why}",)
    (tmp_path / "in.txt").write_text("abc")
    with pytest.raises(InputError, match=re.escape(f"the checkpoint's vocabulary was not used ({why})")):
        load_sample(loaded, path=tmp_path / "in.txt")


def test_non_finite_weights_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """D12: a diverged run's NaN (or Inf) weights: one line naming the tensor, exit 2, before anything runs."""
    state = dict(_model().state_dict())
    state["lstm.weight_hh_l0"] = state["lstm.weight_hh_l0"].clone()
    state["lstm.weight_hh_l0"][0, 0] = float("nan")
    state["embedding.weight"] = state["embedding.weight"].clone()
    state["embedding.weight"][3, 0] = float("inf")
    torch.save(state, tmp_path / "nan.pt")
    code, _out, err = _cli(["report", str(tmp_path / "nan.pt"), "--tokens", "1,2,3", "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and err == (
        "lstmviz: error: 'nan.pt': 'embedding.weight', 'lstm.weight_hh_l0' hold NaN or Inf (2 values): a model with "
        "non-finite weights cannot produce finite outputs; use a checkpoint saved before training diverged\n")


def test_options_and_constructors_that_cannot_work_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """S5: --recurrent-only with --head is refused; S6: a constructor missing an argument suggests --model-kwargs;
    S9: an unknown task is said."""
    torch.save({"model_state_dict": _model().state_dict(), "task": "tagging"}, tmp_path / "m.pt")
    code, _out, err = _cli(["report", str(tmp_path / "m.pt"), "--tokens", "1,2", "--recurrent-only", "--head", "last",
                            "-o", str(tmp_path / "r.html")], capsys)
    assert code == 2 and err == ("lstmviz: error: --head wires a rebuilt output head, and --recurrent-only rebuilds "
                                 "none: pass one of them\n")
    assert load_checkpoint(tmp_path / "m.pt").info.load_notes == (
        "task 'tagging' is not one of char-lm, classification, regression: ignored",)
    user = tmp_path / "needs.py"
    user.write_text("from torch import nn\nclass Net(nn.Module):\n    def __init__(self, hidden):\n"
                    "        super().__init__()\n        self.lstm = nn.LSTM(3, hidden)\n")
    with pytest.raises(Exception, match=r"missing 1 required positional argument: 'hidden'; pass its arguments with "
                                        r"--model-kwargs"):
        load_checkpoint(tmp_path / "m.pt", model_class=f"{user}:Net")


def test_a_cells_state_dict_is_named_as_such(tmp_path: Path) -> None:
    """S7: an nn.LSTMCell's keys (cell.weight_ih, no _l0) are not "no recurrent layer"."""
    model = nn.ModuleDict({"cell": nn.LSTMCell(3, 5), "fc": nn.Linear(5, 1)})
    torch.save(model.state_dict(), tmp_path / "cell.pt")
    with pytest.raises(CheckpointError, match=r"the weights of a recurrent cell \('cell' \(an nn.LSTMCell\)\): your code "
                                              r"calls it in a loop"):
        load_checkpoint(tmp_path / "cell.pt")


def test_names_from_the_checkpoint_reach_the_terminal_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """D11: escape sequences in module names (clear screen, window title) never reach the terminal raw: not in
    the stderr accounting line, not in check's table, not as rich markup."""
    rnn = nn.GRU(3, 4, batch_first=True)
    state = {f"d.rnn\x1b[2J\x1b]0;owned\x07.{k}": v for k, v in rnn.state_dict().items()}
    state["d.unused\x1b[31m[red]RED.weight"] = torch.randn(2, 7)
    torch.save(state, tmp_path / "ansi.pt")
    np.save(tmp_path / "x.npy", np.zeros((5, 3), dtype=np.float32))
    code, out, err = _cli(["check", str(tmp_path / "ansi.pt"), "-i", str(tmp_path / "x.npy"), "--recurrent-only"], capsys)
    assert code in (0, 1) and "\x1b" not in out + err and "\x07" not in out + err
    assert "d.unused\\x1b[31m[red]RED.weight" in err and "d.rnn\\x1b[2J\\x1b]0;owned\\x07/l0/fwd" in out


def test_text_fed_as_one_hot_rows_is_said(tmp_path: Path) -> None:
    """S13: a rebuilt char model without an Embedding (the LSTM's input size is the vocabulary's): the text is
    fed as one-hot rows, and a note says so."""
    from lstmviz_cli.commands.options import LoadOptions
    from lstmviz_cli.commands.pipeline import load_and_trace

    torch.manual_seed(0)
    model = nn.ModuleDict({"lstm": nn.LSTM(len(CHARS), 5, batch_first=True), "fc": nn.Linear(5, len(CHARS))})
    torch.save({"state_dict": model.state_dict(), "chars": CHARS}, tmp_path / "onehot.pt")
    (tmp_path / "in.txt").write_text("bad cafe")
    run = load_and_trace(LoadOptions(checkpoint=tmp_path / "onehot.pt", input=tmp_path / "in.txt"))
    assert run.sample.kind == "features" and run.sample.values.shape == (1, 8, 9)
    assert run.trace.meta.notes == ["the tokens were fed as one-hot rows over the 9-token vocabulary (the model has "
                                    "no Embedding; its input size is the vocabulary's)"]
