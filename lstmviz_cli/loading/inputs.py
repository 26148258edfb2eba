"""Read sample sequences (npy/npz/csv/pt/txt/inline tokens) into one documented convention.

Convention, whatever the model's batch_first: float arrays 2-D are (time, features), 3-D are
(batch, time, features); integer arrays 1-D are one token sequence, 2-D are (batch, time).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lstmviz_cli.errors import InputError, first_line
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.loading.budget import check_budget
from lstmviz_cli.loading.records import LoadedModel, Metadata, SampleInput

SUFFIXES = (".npy", ".npz", ".csv", ".pt", ".pth", ".txt")
_WHAT_TO_PASS = "pass --input FILE (.npy .npz .csv .pt .txt) or --tokens 1,2,3"




def load_sample(
    loaded: LoadedModel,
    *,
    path: str | Path | None = None,
    tokens: str | None = None,
    max_memory_bytes: int | None = None,
    given: np.ndarray | str | None = None,
    given_as: str = "sample",
    batch_index: int | None = None,
) -> SampleInput:
    """Read the input the user named (file or inline tokens) or the checkpoint's own sample.

    `given`: values or text passed from Python (`lstmviz_cli.report`), named `given_as` in messages.
    `batch_index` (`--batch-index`): only that sequence of a batch, picked before the ids become
    one-hot rows (its labels are its tokens) and before the memory budget is checked (one sequence
    of a batch too large to trace whole can be traced).
    Validated against the model (`loaded.meta` input_format / vocab_size / input_size); every
    mismatch is one InputError saying what was expected.
    """
    meta = loaded.meta
    if path is not None and tokens is not None:
        raise InputError("pass either --input or --tokens, not both")
    text: str | None = None
    lengths: np.ndarray | None = None
    arrays: dict[str, np.ndarray] = {}
    if given is not None:
        source = given_as
        values, text = (_encode_text(given, meta, source), given) if isinstance(given, str) else (
            _as_array(given, source), None)
    elif tokens is not None:
        values, source, text = _parse_tokens(tokens), "inline tokens", None
    elif path is not None:
        path = Path(path)
        values, text = _read_file(path, meta)
        source = path.name
        if path.suffix.lower() == ".npz":
            lengths = _read_npz_lengths(path)
            arrays = _read_npz_others(path)
    elif meta.get("sample_input") is not None:
        values, text = _from_sample(meta["sample_input"], meta)
        source = "sample input from the checkpoint"
    else:
        raise InputError(f"no input given and the checkpoint has no sample_input; {_WHAT_TO_PASS}")
    sample = _validate(values, meta, source)
    if lengths is not None:
        sample.lengths = _check_lengths(lengths, sample, source)
    sample.arrays = arrays
    if text is not None and sample.kind == "tokens":
        sample.text = text
        unit = "characters" if _char_level(meta) else "words"
        sample.description = f"{source}: {sample.steps if unit == 'words' else len(text)} {unit}"
    if batch_index is not None:
        sample = pick_sequence(sample, batch_index, loaded.info.vocab)
    as_model_reads(sample, meta)
    check_budget(loaded, sample, max_memory_bytes)
    return sample


def as_model_reads(sample: SampleInput, meta: Metadata) -> None:
    """Token ids made what the model reads, in place: one-hot rows of the vocabulary for a rebuilt model
    without an Embedding (`one_hot`); for your own code without one, the width of the one-hot rows
    tried if it refuses ids (`one_hot_width`, `tracing.sample`)."""
    if meta.get("one_hot") and sample.kind == "tokens":
        sample.values = one_hot(sample.values, int(meta["vocab_size"]))
        sample.kind = "features"
        sample.one_hot = True
    elif meta.get("one_hot_width") and sample.kind == "tokens":
        sample.one_hot_width = int(meta["one_hot_width"])


def pick_sequence(sample: SampleInput, index: int, vocab: Sequence[str] | None) -> SampleInput:
    """Sequence `index` of a batched sample as a batch of one (`--batch-index`), its step labels
    and description rewritten for it; arrays of the sample's other forward arguments with the same
    batch size are cut alike. Raises InputError for an index outside the batch."""
    batch = sample.batch
    if not 0 <= index < batch:
        raise InputError(f"--batch-index {index}: the sample holds {batch} sequence{'s' if batch != 1 else ''} "
                         f"(0–{batch - 1})")
    values = np.ascontiguousarray(sample.values[index : index + 1])
    if sample.kind == "tokens":
        labels = [display_token(vocab[i]) if vocab and i < len(vocab) else str(i) for i in values[0].tolist()]
    else:
        labels = [f"{v:.3g}" for v in values[0, :, 0].tolist()]
    lengths = None if sample.lengths is None else np.ascontiguousarray(sample.lengths[index : index + 1])
    arrays = {name: (np.ascontiguousarray(array[index : index + 1]) if array.ndim and array.shape[0] == batch
                     else array) for name, array in sample.arrays.items()}
    return replace(sample, values=values, labels=labels if sample.text is None else sample.labels, lengths=lengths,
                   arrays=arrays, description=f"{sample.description} · sequence {index} of {batch} (--batch-index)",
                   picked=(index, batch))


def one_hot(ids: np.ndarray, width: int) -> np.ndarray:
    """(batch, time) token ids -> (batch, time, width) float32 one-hot rows."""
    rows: np.ndarray = np.eye(width, dtype=np.float32)[ids]
    return rows


# -- reading ---------------------------------------------------------------------------------------
def _parse_tokens(tokens: str) -> np.ndarray:
    parts = [p.strip() for p in tokens.replace(" ", ",").split(",") if p.strip()]
    if not parts:
        raise InputError("--tokens is empty; give comma-separated token ids, e.g. --tokens 6,7,0")
    try:
        return np.array([int(p) for p in parts], dtype=np.int64)
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("-").isdigit())
        raise InputError(f"--tokens must be comma-separated integers, e.g. 6,7,0; {bad!r} is not one") from None


def _read_file(path: Path, meta: Metadata) -> tuple[np.ndarray, str | None]:
    name = str(path)
    if not path.exists():
        raise InputError(f"input file {name!r} does not exist")
    if path.is_dir():
        raise InputError(f"input {name!r} is a directory; pass a file")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"input {name!r}: unsupported file type {suffix or '(none)'!r}; use one of {' '.join(SUFFIXES)}")
    try:
        if path.stat().st_size == 0:
            raise InputError(f"input file {name!r} is empty")
        if suffix == ".npy":
            return _as_array(np.load(path, allow_pickle=False), name), None
        if suffix == ".npz":
            return _read_npz(path), None
        if suffix == ".csv":
            return _read_csv(path), None
        if suffix in (".pt", ".pth"):
            return _read_pt(path), None
        text = path.read_text(encoding="utf-8")  # universal newlines: CRLF reads as "\n"
    except InputError:
        raise
    except UnicodeDecodeError as error:
        raise InputError(f"input {name!r} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except Exception as error:  # noqa: BLE001 - NumPy/zipfile raise many types for damaged files
        raise InputError(f"cannot read input {name!r}: {type(error).__name__}: {first_line(error)}") from None
    vocab = meta.get("vocab")
    if vocab and text.endswith("\n") and "\n" not in vocab:
        text = text[:-1]  # the newline editors add at the end of a file
    return _encode_text(text, meta, name), text


def _as_array(value: object, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object:
        raise InputError(f"input {name!r} holds Python objects; save a numeric array")
    return array


def _npz_input_name(names: list[str]) -> str:
    """The array of an .npz that is the input: `input`, else `x`, else the first that is not `lengths`."""
    data = [n for n in names if n != "lengths"] or names
    return next((n for n in ("input", "x") if n in names), data[0])


def _read_npz(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if not names:
            raise InputError(f"input {str(path)!r} holds no arrays")
        return _as_array(archive[_npz_input_name(names)], str(path))


def _read_npz_others(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz besides the input and `lengths`, by name (numeric arrays only)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            chosen = _npz_input_name(names)
            return {n: _as_array(archive[n], f"{path.name}[{n!r}]") for n in names if n not in (chosen, "lengths")}
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001
        raise InputError(f"cannot read the arrays of {str(path)!r}: {first_line(error)}") from None


def _read_npz_lengths(path: Path) -> np.ndarray | None:
    """An optional `lengths` array next to the input: sequences of a batch with unequal lengths."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if "lengths" not in names or len(names) < 2:
                return None
            return np.asarray(archive["lengths"])
    except Exception as error:  # noqa: BLE001
        raise InputError(f"cannot read 'lengths' in {str(path)!r}: {first_line(error)}") from None


def _check_lengths(lengths: np.ndarray, sample: SampleInput, source: str) -> np.ndarray:
    """Per-sequence lengths: integers, one per batch element, each in 1..time."""
    if not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (sample.batch,):
        raise InputError(
            f"{source}: 'lengths' must be {sample.batch} integers (one per sequence), "
            f"got {lengths.dtype} of shape {tuple(lengths.shape)}"
        )
    if lengths.min() < 1 or lengths.max() > sample.steps:
        raise InputError(f"{source}: 'lengths' must lie in 1..{sample.steps} (the padded time axis), got {lengths.tolist()}")
    return lengths.astype(np.int64)


def _read_csv(path: Path) -> np.ndarray:
    """Rows are time steps, columns features; a first row that is not numbers is a header."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and not _numeric_row(rows[0]):
        rows = rows[1:]
    if not rows:
        raise InputError(f"input {str(path)!r} has no data rows")
    width = len(rows[0])
    values = []
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InputError(f"input {str(path)!r}: data row {number} has {len(row)} columns, the first has {width}")
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            bad = next(c for c in row if not _is_number(c))
            raise InputError(f"input {str(path)!r}: data row {number} has a non-number {bad.strip()!r}") from None
    return np.array(values, dtype=np.float64)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numeric_row(row: list[str]) -> bool:
    return all(_is_number(cell) for cell in row)


def _read_pt(path: Path) -> np.ndarray:
    try:
        with warnings.catch_warnings(), open(path, "rb") as handle:
            warnings.simplefilter("ignore")  # the CLI prints one line on stderr, not torch's warnings
            value = torch.load(handle, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unsafe or corrupted: either way not an input tensor
        raise InputError(f"cannot read input {str(path)!r} as a tensor (weights-only load): {first_line(error)}") from None
    if isinstance(value, Mapping):
        value = next((value[k] for k in ("input", "x") if k in value), value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"input {str(path)!r} holds a {type(value).__name__}; save one tensor with torch.save(x, ...)")
    if value.is_complex():
        raise InputError(f"input {str(path)!r} holds a complex tensor; expected real features or integer token ids")
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.detach().cpu().numpy()


def _encode_text(text: str, meta: Metadata, name: str) -> np.ndarray:
    """Characters (or whitespace-separated words, for word vocabularies) -> ids via the vocab."""
    vocab = meta.get("vocab")
    if not vocab:
        why = (f"the checkpoint's vocabulary was not used ({meta['vocab_unused']})" if meta.get("vocab_unused")
               else "the checkpoint has no vocabulary")
        raise InputError(f"cannot encode text {name!r}: {why}; pass --tokens or an array file")
    if not text:
        raise InputError(f"input text {name!r} is empty")
    index = {token: i for i, token in enumerate(vocab)}
    chars = _char_level(meta)
    pieces = list(text) if chars else text.split()
    missing = sorted({p for p in pieces if p not in index})
    if missing:
        shown = ", ".join(repr(p) for p in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        what = "characters" if chars else "words"
        raise InputError(f"input {name!r} has {what} outside the model's vocabulary: {shown}")
    return np.array([index[p] for p in pieces], dtype=np.int64)


def _char_level(meta: Metadata) -> bool:
    """Text is split into characters for "text" models and single-character vocabularies, else words."""
    vocab = meta.get("vocab") or []
    return meta.get("input_format") == "text" or all(len(token) == 1 for token in vocab)


def _from_sample(sample: object, meta: Metadata) -> tuple[np.ndarray, str | None]:
    if isinstance(sample, str):
        return _encode_text(sample, meta, "the checkpoint's sample_input"), sample
    try:
        return _as_array(sample, "the checkpoint's sample_input"), None
    except (ValueError, TypeError) as error:
        raise InputError(f"the checkpoint's sample_input is not a rectangular array ({first_line(error)})") from None


# -- validation ------------------------------------------------------------------------------------
def _validate(values: np.ndarray, meta: Metadata, source: str) -> SampleInput:
    fmt = meta.get("input_format")
    wants_tokens = fmt in ("text", "tokens")
    dtype = values.dtype
    if values.size == 0 or 0 in values.shape:
        raise InputError(
            f"{source}: the input is empty (shape {tuple(values.shape)}); expected at least one time step"
            + ("" if wants_tokens else " of at least one feature")
        )
    if np.issubdtype(dtype, np.integer) and not wants_tokens and fmt is not None:
        raise InputError(
            f"{source}: got integers of shape {tuple(values.shape)}, but the model reads float features "
            f"of shape (time, {meta.get('input_size', 'features')}); integer arrays are token ids"
        )
    if wants_tokens and np.issubdtype(dtype, np.floating) and source.endswith(".csv"):
        # A CSV for a token model holds one sequence: one id per row, or one row of ids.
        if values.ndim != 2 or min(values.shape) != 1:
            raise InputError(
                f"{source}: a CSV for a token model holds one sequence of token ids (one per row), "
                f"got {values.shape[0]} rows × {values.shape[1]} columns"
            )
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            values, dtype = values.reshape(-1).astype(np.int64), np.dtype(np.int64)
    if np.issubdtype(dtype, np.integer):
        return _validate_tokens(values, meta, source)
    if np.issubdtype(dtype, np.floating):
        if wants_tokens and not meta.get("one_hot") and not meta.get("reads_features"):
            raise InputError(
                f"{source}: got floats of dtype {dtype}, but the model reads integer token ids "
                "(a 1-D sequence or (batch, time)); save the array as integers"
            )
        return _validate_features(values, meta, source)
    raise InputError(f"{source}: unsupported dtype {dtype}; expected integer token ids or float features")


def _validate_tokens(values: np.ndarray, meta: Metadata, source: str) -> SampleInput:
    if values.ndim == 1:
        values = values[None, :]
    if values.ndim != 2:
        raise InputError(f"{source}: integer token ids must be 1-D (time) or 2-D (batch, time), got shape {tuple(values.shape)}")
    values = values.astype(np.int64)
    vocab_size = meta.get("vocab_size") or (len(meta["vocab"]) if meta.get("vocab") else None)
    low = int(values.min())
    high = int(values.max())
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bad = low if low < 0 else high
        where = tuple(int(i) for i in np.argwhere(values == bad)[0])
        limit = f"0..{vocab_size - 1}" if vocab_size is not None else "non-negative"
        raise InputError(f"{source}: token id {bad} at (batch, step) {where} is outside the vocabulary ({limit})")
    vocab = meta.get("vocab")
    labels = [display_token(vocab[i]) if vocab and i < len(vocab) else str(i) for i in values[0].tolist()]
    steps = values.shape[1]
    desc = f"{source}: {steps} tokens" if values.shape[0] == 1 else f"{source}: {values.shape[0]} sequences × {steps} tokens"
    return SampleInput(values=np.ascontiguousarray(values), kind="tokens", labels=labels, description=desc)


def _validate_features(values: np.ndarray, meta: Metadata, source: str) -> SampleInput:
    features = meta.get("input_size")
    if values.ndim == 2:
        values = values[None, :, :]
    if values.ndim != 3:
        expect = f"(time, {features})" if features else "(time, features)"
        raise InputError(
            f"{source}: float features must be 2-D {expect} or 3-D (batch, time, features), got shape {tuple(values.shape)}"
        )
    if features is not None and values.shape[2] != features:
        raise InputError(
            f"{source}: {values.shape[2]} features per step, but the model's first recurrent layer expects "
            f"{features} (shape (time, {features}))"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes Inf, reported just below
        as32 = values.astype(np.float32)
    bad = ~np.isfinite(as32)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(as32[where]) else "Inf (or too large for float32)"
        raise InputError(
            f"{source}: {int(bad.sum())} value(s) are NaN or Inf, the first ({kind}) at (batch, step, feature) {where}"
        )
    labels = [f"{v:.3g}" for v in as32[0, :, 0].tolist()]
    batch, steps, width = as32.shape
    desc = f"{source}: {steps} steps × {width} features"
    if batch > 1:
        desc = f"{source}: {batch} sequences × {steps} steps × {width} features"
    return SampleInput(values=np.ascontiguousarray(as32), kind="features", labels=labels, description=desc)

