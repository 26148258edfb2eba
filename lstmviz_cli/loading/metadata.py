"""The metadata convention: read it from a sidecar or the checkpoint, normalise it, infer what is missing.

Metadata convention (every key optional) that the sample models follow::

    config         dict       constructor kwargs / hyper-parameters of the model; a rebuilt model
                              reads "nonlinearity" (RNN: tanh|relu), "head_on" (how the Linear
                              head is wired: "all" every step, "last" the last step,
                              "final-states" the last layer's h_n, both directions concatenated;
                              without it "all" is assumed and the page says so) and
                              "head_activation" (between the Linears of an nn.Sequential head:
                              none|relu|tanh|sigmoid|gelu|elu|leaky_relu|silu)
    vocab          list[str]  token id -> token (a {token: id} dict is accepted too; without it,
                              itos / char_to_int / word2idx / chars ... are found, see ``loading.vocab``)
    task           str        "char-lm" | "classification" | "regression"
    input_format   str        "text" | "tokens" | "features"
    sample_input   str text, list[int] token ids, or nested floats (time, features)
    output_labels  list[str]  class id -> label
    description    str        one sentence shown in the report

Sources, later wins: a sidecar JSON next to the checkpoint (``model.pt`` -> ``model.json``); the
keys of a dict checkpoint besides its weights; for safetensors, ``__metadata__["lstmviz"]`` holding
a JSON string of the same keys; for TorchScript, an extra file ``lstmviz.json``. When absent,
``input_format``, ``vocab_size`` and ``input_size`` are inferred from the model (first Embedding ->
tokens; else features of the first recurrent layer's input size) so inputs can be validated. A
text/tokens model without an Embedding whose input size equals len(vocab) reads one-hot rows
(``meta["one_hot"] = True``).

The metadata is typed once, where the file's plain entries become metadata (`check_meta`): a
`loading.records.Metadata` with one type per key (the convention's, ``batch_first``, integer
``vocab_size`` / ``input_size``, and what the loader derives); the file's other entries (``epoch``,
``loss``, ...) are kept as read under ``other``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from lstmviz_cli.errors import CheckpointError
from lstmviz_cli.loading.modules import recurrent_configs
from lstmviz_cli.loading.records import JSON, Metadata
from lstmviz_cli.loading.vocab import Found, find_vocabularies, vocabulary_level

TASKS = ("char-lm", "classification", "regression")
INPUT_FORMATS = ("text", "tokens", "features")


# -- metadata ----------------------------------------------------------------------------------
def parse_json_object(text: str, where: str) -> dict[str, JSON]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CheckpointError(f"metadata in {where} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"metadata in {where} must be a JSON object")
    return value


def read_sidecar(path: Path) -> dict[str, JSON]:
    sidecar = path.with_suffix(".json")
    if sidecar == path or not sidecar.is_file():
        return {}
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read the metadata file {sidecar.name!r}: {error}") from None
    return parse_json_object(text, repr(sidecar.name))


# The file's keys `check_meta` reads; the rest is kept under `Metadata["other"]`.
_READ = ("config", "vocab", "task", "input_format", "sample_input", "output_labels", "description", "batch_first",
         "vocab_size", "input_size")


def check_meta(raw: Mapping[str, object], path: Path) -> tuple[Metadata, Found]:
    """The file's plain entries as typed `Metadata`: the convention's keys validated, the rest under `other`.

    A malformed value is an error naming the key; `vocab_size` / `input_size` are the file's word
    only when integers. Also returns what `loading.vocab` found under other names (used sources and notes).
    """
    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"metadata {key!r} of {path.name!r} must be {expected}, got {type(raw[key]).__name__}")

    meta = Metadata()
    config = raw.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise bad("config", "a dict")
    if config is not None:
        meta["config"] = {key: value for key, value in config.items() if isinstance(key, str)}
    found = _resolve_vocabularies(raw, meta, path)
    input_format = meta.get("input_format", raw.get("input_format"))
    if input_format is not None:
        if input_format not in INPUT_FORMATS:
            raise CheckpointError(
                f"metadata 'input_format' of {path.name!r} must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}"
            )
        meta["input_format"] = str(input_format)
    labels = meta.get("output_labels", raw.get("output_labels"))
    if labels is not None:
        if not isinstance(labels, (list, tuple)):
            raise bad("output_labels", "a list of strings")
        meta["output_labels"] = [str(label) for label in labels]
    description = raw.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise bad("description", "a string")
        meta["description"] = description
    if raw.get("task") is not None:
        meta["task"] = raw["task"]
    if raw.get("sample_input") is not None:
        meta["sample_input"] = raw["sample_input"]
    if "batch_first" in raw:
        meta["batch_first"] = bool(raw["batch_first"])
    for key in ("vocab_size", "input_size"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            meta[key] = value
    # Kept as read, never read: everything else, and a vocab_size / input_size that is no integer.
    other = {key: value for key, value in raw.items()
             if key not in _READ or (key in ("vocab_size", "input_size") and key not in meta)}
    if other:
        meta["other"] = other
    return meta, found


def known_task(meta: Metadata) -> str | None:
    """The declared task when it is one lstmviz knows (`TASKS`), else None (an unknown one is noted)."""
    task = meta.get("task")
    return task if isinstance(task, str) and task in TASKS else None


def _resolve_vocabularies(raw: Mapping[str, object], meta: Metadata, path: Path) -> Found:
    """`vocab` as a token list, from the convention's key or the names people use (see `loading.vocab`).

    An explicit `vocab` list or {token: id} dict is used as given (ids must be 0..n-1). Otherwise
    `itos`, `char_to_int`, `word2idx`, ... are searched, also inside a `vocab` dict or object; output
    labels likewise when `output_labels` is absent. A character vocabulary makes the input format
    "text". Sets `meta`'s vocab, vocab_level, vocab_unused, input_format ("text") and output_labels
    (found under another name); returns the `vocab.Found` whose vocab/labels were used (None fields
    otherwise) and notes.
    """
    vocab = raw.get("vocab")
    explicit: list[str] | None = None
    duplicate: str | None = None
    if isinstance(vocab, (list, tuple)):
        explicit = [str(token) for token in vocab]
        duplicate = next((token for k, token in enumerate(explicit) if token in explicit[:k]), None)
    elif isinstance(vocab, Mapping) and vocab and all(isinstance(v, int) for v in vocab.values()):  # {token: id}
        if sorted(vocab.values()) != list(range(len(vocab))):
            raise CheckpointError(f"metadata 'vocab' of {path.name!r} maps tokens to ids that are not 0..{len(vocab) - 1}")
        explicit = [str(token) for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    elif vocab is not None and not isinstance(vocab, Mapping):
        raise CheckpointError(f"metadata 'vocab' of {path.name!r} must be a list of tokens, got {type(vocab).__name__}")
    roles = tuple(role for role, given in (("input", explicit), ("output", raw.get("output_labels"))) if given is None)
    found = find_vocabularies(raw, roles)
    level: str | None = None
    if explicit is not None and duplicate is None:
        meta["vocab"] = explicit
        level = vocabulary_level(explicit)
    elif found.vocab is not None:
        meta["vocab"] = list(found.vocab.tokens)
        level = found.vocab.level
    elif duplicate is not None:  # ids would not say which token they are
        found.vocab_rejected = f"'vocab' lists {duplicate!r} more than once (tokens must be distinct)"
        found.notes.append(f"vocabulary not used: {found.vocab_rejected}")
    elif vocab is not None and found.vocab_rejected is None:  # a dict or object without a token list lstmviz knows
        found.notes.append("'vocab' holds no token list lstmviz recognises (itos, stoi, ...); it was not used")
    if found.vocab_rejected is not None:
        meta["vocab_unused"] = found.vocab_rejected
    if level is not None:
        meta["vocab_level"] = level
        if level == "char" and raw.get("input_format") is None:
            meta["input_format"] = "text"
    if found.labels is not None:
        meta["output_labels"] = list(found.labels[0])
    return found


def infer_meta(model: nn.Module, meta: Metadata, *, rebuilt: bool = True) -> list[str]:
    """Fill input_format / vocab_size / input_size from the model where the metadata is silent.

    `rebuilt`: lstmviz built the model from weights, so its first recurrent layer's input size is
    the model's input width. Your own code (`rebuilt` false) may change the width before its first
    recurrent layer (a projection, a convolution) or encode ids itself: the width is not checked,
    and text for a model without an Embedding may be read as ids or one-hot rows (`one_hot_width`:
    `tracing.sample` tries both). Returns notes on metadata that does not fit the model (a
    vocabulary whose size is not the Embedding's: not used).
    """
    notes: list[str] = []
    named = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)), None)
    embedding = named[1] if named is not None else None
    configs = recurrent_configs(model)
    first = next(iter(configs.values()), None)
    vocab = meta.get("vocab")
    if embedding is not None and vocab and len(vocab) != int(embedding.num_embeddings):
        # Which id is which token is then unknown: ids past the shorter one, or an offset.
        reason = (f"it has {len(vocab)} tokens but the embedding {named[0] if named else ''!r} has "
                  f"{int(embedding.num_embeddings)} rows")
        notes.append(f"vocabulary not used: {reason}")
        meta["vocab_unused"] = reason
        meta.pop("vocab", None)
        meta.pop("vocab_level", None)
        vocab = None
    if embedding is not None:
        # The embedding's rows bound valid ids, whatever the metadata claims.
        rows = int(embedding.num_embeddings)
        meta["vocab_size"] = min(int(meta.get("vocab_size") or rows), rows)
        meta.setdefault("input_format", "tokens")
    elif not rebuilt:
        if meta.get("input_format") in ("text", "tokens") and vocab:
            meta["one_hot_width"] = len(vocab)  # ids first; one-hot rows when the model refuses ids
            meta.setdefault("vocab_size", len(vocab))
        meta["reads_features"] = True  # no Embedding: a float array is the model's to read
    elif first is not None:
        meta.setdefault("input_format", "features")
        # Text or tokens into a model without an Embedding: one-hot rows, when the widths agree.
        if meta["input_format"] in ("text", "tokens") and vocab and len(vocab) == first.input_size:
            meta["one_hot"] = True
            meta.setdefault("vocab_size", len(vocab))
    if first is not None and rebuilt:
        meta.setdefault("input_size", first.input_size)
    return notes
