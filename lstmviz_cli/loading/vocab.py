"""Find a checkpoint's vocabulary under the names people save it with (itos, char_to_int, word2idx, ...).

Searched in the checkpoint's plain metadata (the keys beside the weights, a sidecar JSON, safetensors
``__metadata__``), first at the top level, then one level down (``vocab``, ``config``,
``hyper_parameters``, an object opened as plain data, ...). Input vocabularies:

- id -> token: ``itos``, ``int_to_char``, ``idx2char``, ``ix_to_char``, ``idx2word``, ``index_word``,
  ``indices_char``, ``id_to_token``, ... (a list, or a dict keyed 0..n-1);
- token -> id: ``stoi``, ``char_to_int``, ``char2idx``, ``char_to_ix``, ``word2idx``, ``word_to_ix``,
  ``word_index``, ``char_indices``, ``token_to_id``, ``vocab_to_int``, ...;
- token lists: ``vocab``, ``vocabulary``, ``chars``, ``characters``, ``tokens``, ``words``, ``alphabet``.

Output labels the same way: ``idx2label``, ``label2idx``, ``tag_to_ix``, ``id2label``, ``classes``,
``class_names``, ``label_names``, ``target_names``. A vocabulary whose tokens (leaving out specials
such as ``<pad>`` or ``[UNK]``) are single characters is character-level, else word-level.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_TOK = r"(?:char|chr|c|character|word|w|token|tok|vocab|symbol|sym|s)"
_ID = r"(?:int|idx|ix|id|index|i|num)"
_LAB = r"(?:label|tag|class|target|category|cat)"
_SEP = r"(?:_to_|2|_2_|to)"
_PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("input", "id2tok", re.compile(rf"{_ID}{_SEP}{_TOK}s?|(?:index|indices)_{_TOK}s?")),
    ("input", "tok2id", re.compile(rf"{_TOK}s?{_SEP}{_ID}|{_TOK}_(?:index|indices)")),
    ("input", "list", re.compile(r"vocab|vocabulary|chars|characters|tokens|words|alphabet|charset")),
    ("output", "id2tok", re.compile(rf"{_ID}{_SEP}{_LAB}s?")),
    ("output", "tok2id", re.compile(rf"{_LAB}s?{_SEP}{_ID}")),
    ("output", "list", re.compile(r"classes|class_names|label_names|target_names|categories")),
)
_ORDER = {"id2tok": 0, "tok2id": 1, "list": 2}
_SPECIAL = re.compile(r"<[^<>]{1,16}>|\[[A-Za-z_]{1,16}\]")
_MAX_GAPS = 2  # ids a token -> id mapping may leave unassigned (e.g. Keras reserves 0 for padding)


@dataclass(frozen=True)
class Vocabulary:
    """Tokens by id, where they were found, and whether they are characters or words."""

    tokens: tuple[str, ...]
    source: str  # e.g. "char_to_int", "vocab/itos"
    level: str  # "char" | "word"


@dataclass
class Found:
    """The vocabularies found in a checkpoint's metadata, and what was seen but not used."""

    vocab: Vocabulary | None = None
    labels: tuple[tuple[str, ...], str] | None = None  # (labels by class id, source)
    notes: list[str] = field(default_factory=list)
    # Why an input vocabulary that was found is not used (both directions saved and disagreeing).
    vocab_rejected: str | None = None


def find_vocabularies(meta: Mapping[str, object], roles: tuple[str, ...] = ("input", "output")) -> Found:
    """Search `meta` for an input vocabulary and output labels (nothing found: empty fields).

    `roles`: "input" (the vocabulary) and/or "output" (labels by class id).
    """
    found = Found()
    for role in roles:
        seen = len(found.notes)
        result = _search(meta, role, found.notes)
        if result is None and role == "input" and len(found.notes) > seen:
            found.vocab_rejected = found.notes[-1].removeprefix("vocabulary not used: ")
        if result is None:
            continue
        tokens, source = result
        if role == "input":
            found.vocab = Vocabulary(tuple(tokens), source, vocabulary_level(tokens))
        else:
            found.labels = (tuple(tokens), source)
    return found


def vocabulary_level(tokens: list[str] | tuple[str, ...]) -> str:
    """"char" when every token but the specials (<pad>, [UNK], "") is one character, else "word"."""
    plain = [t for t in tokens if t and not _SPECIAL.fullmatch(t)]
    return "char" if plain and all(len(t) == 1 for t in plain) else "word"


def id_to_token(value: object) -> tuple[list[str], list[int]] | None:
    """A list of distinct strings, or a dict {id: token} (keys may be digit strings) with distinct
    tokens and ids 0..n-1 but for at most two; (tokens by id, ids left unassigned), else None."""
    if isinstance(value, (list, tuple)):
        tokens = list(value)
        ok = len(tokens) >= 2 and all(isinstance(t, str) for t in tokens) and len(set(tokens)) == len(tokens)
        return (tokens, []) if ok else None
    if isinstance(value, Mapping) and len(value) >= 2:
        by_id: dict[int, str] = {}
        for key, token in value.items():
            index = _as_index(key)
            if index is None or not isinstance(token, str):
                return None
            by_id[index] = token
        if len(set(by_id.values())) == len(by_id):
            return _by_id(by_id)
    return None


def token_to_id(value: object) -> tuple[list[str], list[int]] | None:
    """A dict {token: id} with distinct ids; (tokens by id, ids left unassigned), else None."""
    if not isinstance(value, Mapping) or len(value) < 2:
        return None
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in value.items()):
        return None
    if len(set(value.values())) != len(value):
        return None
    return _by_id({index: token for token, index in value.items()})


def _by_id(by_id: dict[int, str]) -> tuple[list[str], list[int]] | None:
    """Tokens in id order; ids 0..max must all be present but for at most _MAX_GAPS (shown as <id N>)."""
    if min(by_id) < 0 or max(by_id) >= len(by_id) + _MAX_GAPS:
        return None
    gaps = sorted(set(range(max(by_id) + 1)) - set(by_id))
    return [by_id.get(index, f"<id {index}>") for index in range(max(by_id) + 1)], gaps


def _as_index(key: object) -> int | None:
    if isinstance(key, int) and not isinstance(key, bool) and key >= 0:
        return key
    if isinstance(key, str) and key.isdigit() and key.isascii():
        return int(key)
    return None


def _kind(name: str, role: str) -> str | None:
    lowered = name.lower()
    for pattern_role, kind, pattern in _PATTERNS:
        if pattern_role == role and pattern.fullmatch(lowered):
            return kind
    return None


def _search(meta: Mapping[str, object], role: str, notes: list[str]) -> tuple[list[str], str] | None:
    """The first vocabulary of `role` at the top level, else one level down, in the file's key order."""
    hit = _search_level(meta, "", role, notes)
    if hit is not None:
        return hit
    for key, value in meta.items():
        if isinstance(key, str) and isinstance(value, Mapping):
            hit = _search_level(value, f"{key}/", role, notes)
            if hit is not None:
                return hit
    return None


def _search_level(level: Mapping[str, object], where: str, role: str, notes: list[str]) -> tuple[list[str], str] | None:
    candidates = sorted(
        ((_ORDER[kind], i, key, kind) for i, key in enumerate(level)
         if isinstance(key, str) and (kind := _kind(key, role)) is not None),
    )
    readings: list[tuple[str, list[str], str, list[int]]] = []  # (kind, tokens, source, gaps)
    for _rank, _i, key, kind in candidates:
        value = level[key]
        if kind == "list" and isinstance(value, Mapping):
            # A {token: id} or {id: token} dict under a list's name, e.g. "vocab": {"a": 0, ...}.
            kind = "tok2id" if token_to_id(value) is not None else "id2tok"
        reading = token_to_id(value) if kind == "tok2id" else id_to_token(value)
        if reading is not None:
            readings.append((kind, reading[0], where + key, reading[1]))
    if not readings:
        return None
    _kind0, tokens, source, gaps = readings[0]
    # Both directions saved (stoi and itos): they must agree, or neither is used.
    for kind, other, other_source, _gaps in readings[1:]:
        if kind != "list" and other != tokens:
            what = "vocabulary" if role == "input" else "output labels"
            notes.append(f"{what} not used: {source!r} and {other_source!r} disagree")
            return None
    if gaps:
        shown = ", ".join(f"<id {gap}>" for gap in gaps)
        notes.append(f"{source!r} assigns no token to id {', '.join(map(str, gaps))} (shown as {shown})")
    return tokens, source
