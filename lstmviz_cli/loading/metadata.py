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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lstmviz_cli.errors import CheckpointError
from lstmviz_cli.loading.modules import recurrent_configs
from lstmviz_cli.loading.vocab import find_vocabularies, vocabulary_level

TASKS = ("char-lm", "classification", "regression")
INPUT_FORMATS = ("text", "tokens", "features")


# -- metadata ----------------------------------------------------------------------------------
def parse_json_object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise CheckpointError(f"metadata in {where} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"metadata in {where} must be a JSON object")
    return value


def read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    if sidecar == path or not sidecar.is_file():
        return {}
    try:
        text = sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"cannot read the metadata file {sidecar.name!r}: {error}") from None
    return parse_json_object(text, repr(sidecar.name))


def check_meta(meta: dict[str, Any], path: Path) -> tuple[dict[str, Any], Any]:
    """Normalise the convention's keys; a malformed value is an error naming the key.

    Also returns what `loading.vocab` found under other names (a `vocab.Found`: used sources and notes).
    """
    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"metadata {key!r} of {path.name!r} must be {expected}, got {type(meta[key]).__name__}")

    if meta.get("config") is not None and not isinstance(meta["config"], Mapping):
        raise bad("config", "a dict")
    found = _resolve_vocabularies(meta, path)
    if meta.get("input_format") is not None and meta["input_format"] not in INPUT_FORMATS:
        raise CheckpointError(
            f"metadata 'input_format' of {path.name!r} must be one of {', '.join(INPUT_FORMATS)}, got {meta['input_format']!r}"
        )
    labels = meta.get("output_labels")
    if labels is not None:
        if not isinstance(labels, (list, tuple)):
            raise bad("output_labels", "a list of strings")
        meta["output_labels"] = [str(label) for label in labels]
    if meta.get("description") is not None and not isinstance(meta["description"], str):
        raise bad("description", "a string")
    return meta, found


def _resolve_vocabularies(meta: dict[str, Any], path: Path) -> Any:
    """`vocab` as a token list, from the convention's key or the names people use (see `loading.vocab`).

    An explicit `vocab` list or {token: id} dict is used as given (ids must be 0..n-1). Otherwise
    `itos`, `char_to_int`, `word2idx`, ... are searched, also inside a `vocab` dict or object; output
    labels likewise when `output_labels` is absent. A character vocabulary makes the input format
    "text". Returns the `vocab.Found` whose vocab/labels were used (None fields otherwise) and notes.
    """
    vocab = meta.get("vocab")
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
    roles = tuple(role for role, given in (("input", explicit), ("output", meta.get("output_labels"))) if given is None)
    found = find_vocabularies(meta, roles)
    level: str | None = None
    if explicit is not None and duplicate is None:
        meta["vocab"] = explicit
        level = vocabulary_level(explicit)
    elif found.vocab is not None:
        meta["vocab"] = list(found.vocab.tokens)
        level = found.vocab.level
    else:
        if duplicate is not None:  # ids would not say which token they are
            found.vocab_rejected = f"'vocab' lists {duplicate!r} more than once (tokens must be distinct)"
            found.notes.append(f"vocabulary not used: {found.vocab_rejected}")
        elif vocab is not None and found.vocab_rejected is None:  # a dict or object without a token list lstmviz knows
            found.notes.append("'vocab' holds no token list lstmviz recognises (itos, stoi, ...); it was not used")
        meta.pop("vocab", None)
    if found.vocab_rejected is not None:
        meta["vocab_unused"] = found.vocab_rejected
    if level is not None:
        meta["vocab_level"] = level
        if level == "char" and meta.get("input_format") is None:
            meta["input_format"] = "text"
    if found.labels is not None:
        meta["output_labels"] = list(found.labels[0])
    return found


def infer_meta(model: nn.Module, meta: dict[str, Any], *, rebuilt: bool = True) -> list[str]:
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
