"""Train every sample model deterministically on CPU and write checkpoints, sample inputs and METRICS.json.

Run from the repository root: `.venv/bin/python sample_models/train.py` (all models, a few minutes
on one core) or `... train.py digitsum sine` for some. Seeds are fixed and torch runs on one thread
with deterministic algorithms, so a rerun reproduces METRICS.json; the checkpoint files themselves
may differ byte-wise (zip timestamps), not in their tensors.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
# Import the model classes as the top-level module `models`, so the pickled whole-module checkpoint
# unpickles wherever this directory is on sys.path, however this script was started.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import data  # noqa: E402
import models  # noqa: E402

SEEDS = {
    "charlm": 1234, "digitsum": 7, "gru_digitsum": 11, "sine": 21,
    "fused_cell_digitsum": 31, "loop_lstm_digitsum": 41,
}
DIGIT_VOCAB = [str(d) for d in range(10)]
DIGIT_LABELS = [str(s) for s in range(19)]
DIGIT_SAMPLE = [6, 7, 0, 0, 1, 0, 0, 0, 0, 0]  # the brief's example: 6 + 7 = 13
CHAR_SEQ, CHAR_BATCH = 100, 32
SINE_WINDOW = 40


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- charlm ---------------------------------------------------------------------------------------
def char_vocab() -> list[str]:
    """The alphabet of the corpus generator (the same for every seed: it is fixed by its word lists)."""
    return sorted(set(data.generate_corpus(200_000, seed=0)))


def char_sample_text() -> str:
    """A few hundred characters from an unseen seed with quotes and brackets, cut at a line end."""
    for seed in range(100, 200):
        text = data.generate_corpus(420, seed=seed)
        text = text[: text.rfind("\n") + 1]
        if text.count('"') >= 4 and text.count("(") >= 1 and "[" in text and text.count('"') % 2 == 0:
            return text
    raise RuntimeError("no sample text with quotes and brackets")


def lstm_states(lstm: nn.LSTM, x: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """h and c of every layer of a unidirectional nn.LSTM, by a plain per-step loop (batch 1)."""
    layers = []
    inp = x[0]
    with torch.no_grad():
        for k in range(lstm.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
            b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
            h = torch.zeros(lstm.hidden_size)
            c = torch.zeros(lstm.hidden_size)
            hs, cs = [], []
            for t in range(inp.shape[0]):
                i, f, g, o = (w_ih @ inp[t] + w_hh @ h + b).chunk(4)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
                cs.append(c)
            layers.append({"h": torch.stack(hs).numpy(), "c": torch.stack(cs).numpy()})
            inp = torch.stack(hs)
    return layers


def best_structure_units(model: models.CharLM, text: str, vocab: list[str]) -> dict[str, dict[str, Any]]:
    """For each structure signal, the unit (layer, state, index) whose activation correlates most."""
    ids = torch.tensor([[vocab.index(ch) for ch in text]])
    states = lstm_states(model.lstm, model.embedding(ids))
    best: dict[str, dict[str, Any]] = {}
    for signal, target in data.structure_signals(text).items():
        top = {"r": 0.0}
        for k, layer in enumerate(states):
            for kind in ("h", "c"):
                acts = layer[kind]
                std = acts.std(axis=0)
                ok = std > 1e-6
                r = np.zeros(acts.shape[1])
                centred = (acts - acts.mean(axis=0))[:, ok]
                tc = target - target.mean()
                r[ok] = (centred * tc[:, None]).sum(axis=0) / (np.sqrt((centred**2).sum(axis=0)) * np.sqrt((tc**2).sum()))
                unit = int(np.argmax(np.abs(r)))
                if abs(r[unit]) > abs(top["r"]):
                    top = {"r": round(float(r[unit]), 4), "layer": k, "state": kind, "unit": unit}
        best[signal] = top
    return best


def train_charlm() -> dict[str, Any]:
    seed = SEEDS["charlm"]
    _seed(seed)
    vocab = char_vocab()
    stoi = {ch: k for k, ch in enumerate(vocab)}
    train_text = data.generate_corpus(150_000, seed=seed)
    test_text = data.generate_corpus(20_000, seed=seed + 1)
    train_ids = torch.tensor([stoi[ch] for ch in train_text])
    test_ids = torch.tensor([stoi[ch] for ch in test_text])
    kwargs = {"vocab_size": len(vocab), "embed_dim": 32, "hidden_size": 96, "num_layers": 2}
    model = models.CharLM(**kwargs)
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    steps = 1200
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(train_ids) - CHAR_SEQ - 1, (CHAR_BATCH,), generator=gen)
        batch = torch.stack([train_ids[s : s + CHAR_SEQ + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    test = evaluate_charlm(model, test_ids)
    sample = char_sample_text()
    units = best_structure_units(model, sample, vocab)
    config = {
        **kwargs, "rnn": "lstm", "input_size": kwargs["embed_dim"], "batch_first": True,
        "bidirectional": False, "proj_size": 0, "output_size": len(vocab), "head_on": "all",
        "model_class": "CharLM",
    }
    torch.save(
        {
            "model_state_dict": model.state_dict(), "config": config, "vocab": vocab, "task": "char-lm",
            "input_format": "text", "sample_input": sample,
            "description": "Character-level LM (Embedding -> 2-layer LSTM 96 -> Linear) on a synthetic "
            "corpus of quoted dialogue, nested brackets and fixed-width lines.",
        },
        HERE / "charlm.pt",
    )
    (HERE / "charlm.txt").write_text(sample)
    return {
        "seed": seed, "params": _params(model), "train_chars": len(train_text), "test_chars": len(test_text),
        "steps": steps, **test, "structure_units": units,
    }


def evaluate_charlm(model: models.CharLM, ids: torch.Tensor) -> dict[str, float]:
    """Next-character accuracy and cross-entropy (nats) on held-out text, in 200-char chunks."""
    n = (len(ids) - 1) // 200 * 200
    x = ids[:n].reshape(-1, 200)
    y = ids[1 : n + 1].reshape(-1, 200)
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()
        acc = (logits.argmax(-1) == y).float().mean().item()
    return {"test_accuracy": round(acc, 4), "test_loss_nats": round(loss, 4)}


# -- digit sum (LSTM, GRU and the two hand-written cells) -----------------------------------------
def train_digits(model: nn.Module, seed: int, steps: int, lengths: tuple[int, int]) -> dict[str, Any]:
    """Adam on fresh batches, each of one random length in `lengths`; test on 2000 unseen sequences."""
    # One-cycle at a high peak rate: the two digits must survive 10-20 steps, and a flat rate
    # leaves the model guessing the mean sum for thousands of steps.
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=steps)
    rng = np.random.default_rng(seed)
    model.train()
    for step in range(steps):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        x, y = data.digit_sequences(128, length, seed=seed * 100_000 + step)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    return {"seed": seed, "params": _params(model), "steps": steps, "train_lengths": list(lengths),
            **evaluate_digits(model, seed=seed + 999, lengths=lengths)}


def evaluate_digits(model: nn.Module, seed: int, lengths: tuple[int, int], n: int = 2000) -> dict[str, Any]:
    """Accuracy at the shortest and longest training lengths, n/2 sequences each."""
    correct = 0
    for k, length in enumerate(lengths):
        x, y = data.digit_sequences(n // 2, length, seed=seed + k)
        with torch.no_grad():
            correct += int((model(torch.from_numpy(x)).argmax(-1).numpy() == y).sum())
    return {"test_accuracy": round(correct / n, 4), "test_size": n}


def _digit_meta(config: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "vocab": DIGIT_VOCAB, "task": "classification", "input_format": "tokens",
        "sample_input": DIGIT_SAMPLE, "output_labels": DIGIT_LABELS, "config": config,
        "description": description,
    }


def _digit_config(kwargs: dict[str, Any], rnn: str, model_class: str) -> dict[str, Any]:
    return {
        **kwargs, "rnn": rnn, "input_size": kwargs["embed_dim"], "num_layers": 1, "batch_first": True,
        "bidirectional": False, "proj_size": 0, "output_size": kwargs["num_classes"], "head_on": "last",
        "model_class": model_class,
    }


DIGIT_KWARGS = {"vocab_size": 10, "embed_dim": 16, "hidden_size": 64, "num_classes": 19}


def train_digitsum() -> dict[str, Any]:
    seed = SEEDS["digitsum"]
    _seed(seed)
    model = models.DigitSum(**DIGIT_KWARGS)
    metrics = train_digits(model, seed, steps=1500, lengths=(10, 20))
    meta = _digit_meta(
        _digit_config(DIGIT_KWARGS, "lstm", "DigitSum"),
        "Sum of the first two digits (0-18); the rest are distractors. Embedding -> LSTM 64 -> Linear on the last step.",
    )
    torch.save(model.state_dict(), HERE / "digitsum.pt")
    (HERE / "digitsum.json").write_text(json.dumps(meta, indent=2) + "\n")
    # The unsafe kind users also have: the whole module pickled (needs --trust-pickle to load).
    torch.save(model, HERE / "digitsum_module.pt")
    module_meta = {**meta, "description": meta["description"] + " Saved as a whole pickled module "
                   "(class models.DigitSum): loading it runs code, so it needs --trust-pickle."}
    (HERE / "digitsum_module.json").write_text(json.dumps(module_meta, indent=2) + "\n")
    np.save(HERE / "digitsum.npy", np.array(DIGIT_SAMPLE, dtype=np.int64))
    return metrics


def train_gru_digitsum() -> dict[str, Any]:
    from safetensors.torch import save_file

    seed = SEEDS["gru_digitsum"]
    _seed(seed)
    model = models.GruDigitSum(**DIGIT_KWARGS)
    metrics = train_digits(model, seed, steps=1500, lengths=(10, 20))
    meta = _digit_meta(
        _digit_config(DIGIT_KWARGS, "gru", "GruDigitSum"),
        "Sum of the first two digits with a GRU: Embedding -> GRU 64 -> Linear on the last step.",
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(HERE / "gru_digitsum.safetensors"), metadata={"lstmviz": json.dumps(meta)})
    np.save(HERE / "gru_digitsum.npy", np.array(DIGIT_SAMPLE, dtype=np.int64))
    return metrics


def _train_custom(name: str, model_class: str, steps: int) -> dict[str, Any]:
    seed = SEEDS[name]
    _seed(seed)
    model = models.build(model_class, DIGIT_KWARGS)
    metrics = train_digits(model, seed, steps=steps, lengths=(10, 20))
    config = _digit_config(DIGIT_KWARGS, "custom", model_class)
    meta = _digit_meta(config, f"Digit sum with a hand-written LSTM cell ({model_class}); "
                       f"load with --model-class sample_models/models.py:{model_class}.")
    torch.save(
        {"model_state_dict": model.state_dict(), **meta, "model_class": f"sample_models/models.py:{model_class}",
         "model_kwargs": DIGIT_KWARGS},
        HERE / f"{name}.pt",
    )
    return metrics


def train_fused_cell_digitsum() -> dict[str, Any]:
    return _train_custom("fused_cell_digitsum", "FusedCellDigitSum", steps=1500)


def train_loop_lstm_digitsum() -> dict[str, Any]:
    return _train_custom("loop_lstm_digitsum", "LoopLSTMDigitSum", steps=1500)


# -- sine -----------------------------------------------------------------------------------------
def train_sine() -> dict[str, Any]:
    seed = SEEDS["sine"]
    _seed(seed)
    kwargs = {"input_size": 1, "hidden_size": 32, "proj_size": 16, "num_layers": 2}
    model = models.Sine(**kwargs)
    x_train, y_train = data.sine_windows(8000, SINE_WINDOW, seed=seed)
    x_test, y_test = data.sine_windows(1000, SINE_WINDOW, seed=seed + 1)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    steps = 1200
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (64,), generator=gen)
        loss = nn.functional.mse_loss(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    metrics = evaluate_sine(model, x_test, y_test)
    config = {
        **kwargs, "rnn": "lstm", "batch_first": True, "bidirectional": True, "output_size": 1,
        "head_on": "last", "model_class": "Sine",
    }
    sample = x_test[0]
    ckpt = {
        "model_state_dict": model.state_dict(), "config": config, "task": "regression",
        "input_format": "features", "sample_input": sample.tolist(),
        "description": "Next value of a noisy sum of two sines from a 40-step window: "
        "2-layer bidirectional LSTM (hidden 32, proj 16, batch_first) -> Linear on the last step.",
    }
    torch.save(ckpt, HERE / "sine.pt")
    # TorchScript archives carry metadata as an extra file inside the zip.
    ts_meta = {k: v for k, v in ckpt.items() if k != "model_state_dict"}
    torch.jit.save(torch.jit.script(model), str(HERE / "sine.ts.pt"),
                   _extra_files={"lstmviz.json": json.dumps(ts_meta)})
    np.savetxt(HERE / "sine.csv", sample, fmt="%.6f", header="x", comments="")
    return {"seed": seed, "params": _params(model), "steps": steps, "window": SINE_WINDOW,
            "train_size": len(xt), **metrics}


def evaluate_sine(model: nn.Module, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Test MSE against the naive forecast `next = last value`."""
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).numpy()
    return {
        "test_mse": round(float(((pred - y) ** 2).mean()), 5),
        "baseline_last_value_mse": round(float(((x[:, -1] - y) ** 2).mean()), 5),
        "test_size": len(x),
    }


TRAINERS = {
    "charlm": train_charlm, "digitsum": train_digitsum, "gru_digitsum": train_gru_digitsum,
    "sine": train_sine, "fused_cell_digitsum": train_fused_cell_digitsum,
    "loop_lstm_digitsum": train_loop_lstm_digitsum,
}


def main(names: list[str]) -> None:
    # nn.LSTM with proj_size falls back from oneDNN to the reference kernel: expected, not news.
    warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    metrics_path = HERE / "METRICS.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    for name in names or list(TRAINERS):
        start = time.perf_counter()
        metrics[name] = TRAINERS[name]()
        print(f"{name:22s} {time.perf_counter() - start:6.1f}s  {json.dumps(metrics[name])}", flush=True)
        metrics_path.write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")
    for path in sorted(HERE.glob("*.*")):
        if path.suffix in (".pt", ".safetensors"):
            print(f"  {path.name:28s} {path.stat().st_size / 1024:5.0f} KB")


if __name__ == "__main__":
    main(sys.argv[1:])
