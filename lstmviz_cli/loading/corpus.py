"""Read many sequences (corpus mode) one at a time: a text file, a folder of text files, or an array batch.

`lstmviz report model.pt --input corpus.txt --corpus` (a folder needs no flag):

* a ``.txt`` file: one sequence per line, or, when the file has blank lines, one per paragraph
  (the lines between blank lines; a line break inside a paragraph is read as "\\n" when the
  vocabulary has it, else as a space);
* a folder: every ``*.txt`` file in it (not its subfolders), in name order, one sequence each;
* ``.npy``: an array batch in the input convention (int (batch, time) token ids, float (batch, time,
  features)), memory-mapped, so that only the sequences being traced are read;
* ``.npz``: its input array (``input``, else ``x``, else the first) and optional ``lengths``
  (each sequence cut to its length); the array is read whole (an .npz member cannot be mapped).

Sequences are read lazily, in order, so memory does not grow with the corpus. Text is encoded
with the checkpoint's vocabulary exactly as a single ``--input text.txt`` is (`loading.inputs`);
a sequence the model cannot read is an InputError naming it ("line 7", "file b.txt").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lstmviz_cli.errors import InputError
from lstmviz_cli.loading.budget import check_budget
from lstmviz_cli.loading.inputs import (
    _char_level,
    _encode_text,
    _npz_input_name,
    _validate,
    as_model_reads,
)
from lstmviz_cli.loading.records import LoadedModel, Metadata, SampleInput

CORPUS_SUFFIXES = (".txt", ".npy", ".npz")
SPLITS = ("lines", "paragraphs", "files", "batch")


@dataclass(frozen=True)
class CorpusSequence:
    """One sequence of a corpus: (time,) int64 token ids or (time, features) float32, its text, where it is."""

    index: int
    values: np.ndarray
    text: str | None
    where: str  # "line 7", "paragraph 3 (line 12)", "file b.txt", "sequence 4"


class Corpus:
    """A corpus on disk, read one sequence at a time (`iter(corpus)`); `count` sequences in all."""

    def __init__(self, path: Path, split: str, count: int, meta: Metadata, *, ignored: int = 0,
                 empty: int = 0) -> None:
        self.path, self.split, self.count, self.meta, self.ignored, self.empty = path, split, count, meta, ignored, empty

    @property
    def source(self) -> str:
        return self.path.name + ("/" if self.path.is_dir() else "")

    @property
    def description(self) -> str:
        unit = {"lines": "lines", "paragraphs": "paragraphs", "files": ".txt files", "batch": "sequences"}[self.split]
        extra = f"; {self.ignored} other file{'s' if self.ignored != 1 else ''} ignored" if self.ignored else ""
        extra += f"; {self.empty} empty .txt file{'s' if self.empty != 1 else ''} skipped" if self.empty else ""
        return f"{self.source}: {self.count:,} {unit}{extra}"

    def __iter__(self) -> Iterator[CorpusSequence]:
        if self.split in ("lines", "paragraphs"):
            yield from self._texts()
        elif self.split == "files":
            index = 0
            for file in _text_files(self.path)[0]:
                text = _read_text(file)
                if text.strip():  # an empty file is no sequence (counted in `empty`)
                    yield self._encoded(index, text, f"file {file.name}")
                    index += 1
        else:
            yield from self._arrays()

    # -- text ------------------------------------------------------------------------------------
    def _encoded(self, index: int, text: str, where: str) -> CorpusSequence:
        vocab = self.meta.get("vocab")
        if self.split == "paragraphs" and (not isinstance(vocab, (list, tuple)) or "\n" not in vocab):
            text = text.replace("\n", " ")
        values = _encode_text(text, self.meta, f"{self.source} ({where})")
        return CorpusSequence(index=index, values=values, text=text, where=where)

    def _texts(self) -> Iterator[CorpusSequence]:
        index = 0
        for text, line in _text_units(self.path, self.split):
            where = f"line {line}" if self.split == "lines" else f"paragraph {index + 1} (line {line})"
            yield self._encoded(index, text, where)
            index += 1

    # -- arrays ----------------------------------------------------------------------------------
    def _arrays(self) -> Iterator[CorpusSequence]:
        array, lengths = _open_array(self.path)
        for index in range(self.count):
            row = np.asarray(array[index])
            if lengths is not None:
                row = row[: int(lengths[index])]
            values = row.astype(np.int64) if np.issubdtype(row.dtype, np.integer) else row.astype(np.float32)
            yield CorpusSequence(index=index, values=values, text=None, where=f"sequence {index}")


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"corpus file {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise InputError(f"cannot read corpus file {str(path)!r}: {error.strerror or error}") from None
    return text[:-1] if text.endswith("\n") else text


def _text_files(folder: Path) -> tuple[list[Path], int]:
    """The folder's .txt files in name order, and how many other entries it holds."""
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    texts = [p for p in entries if p.is_file() and p.suffix.lower() == ".txt"]
    return texts, len(entries) - len(texts)


def _text_units(path: Path, split: str) -> Iterator[tuple[str, int]]:
    """(sequence text, its first line number) of a text file, one per line or per paragraph."""
    try:
        with open(path, encoding="utf-8") as handle:  # universal newlines: CRLF reads as "\n"
            paragraph: list[str] = []
            start = 0
            for number, raw in enumerate(handle, start=1):
                line = raw[:-1] if raw.endswith("\n") else raw
                if split == "lines":
                    if line.strip():
                        yield line, number
                    continue
                if line.strip():
                    if not paragraph:
                        start = number
                    paragraph.append(line)
                elif paragraph:
                    yield "\n".join(paragraph), start
                    paragraph = []
            if paragraph:
                yield "\n".join(paragraph), start
    except UnicodeDecodeError as error:
        raise InputError(f"corpus {str(path)!r} is not UTF-8 text ({error.reason})") from None


def _text_split(path: Path) -> tuple[str, int]:
    """Paragraphs when a blank line separates two non-blank lines, else lines; and the sequence count."""
    blank_between = False
    seen_text = pending_blank = False
    try:
        with open(path, encoding="utf-8") as handle:
            for raw in handle:
                if raw.strip():
                    if pending_blank and seen_text:
                        blank_between = True
                        break
                    seen_text = True
                else:
                    pending_blank = True
    except UnicodeDecodeError as error:
        raise InputError(f"corpus {str(path)!r} is not UTF-8 text ({error.reason})") from None
    split = "paragraphs" if blank_between else "lines"
    count = sum(1 for _ in _text_units(path, split))
    return split, count


def _open_array(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The batch array (memory-mapped for .npy) as (batch, time[, features]), and its lengths or None."""
    name = str(path)
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            lengths = None
        else:
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if not names:
                    raise InputError(f"corpus {name!r} holds no arrays")
                array = np.asarray(archive[_npz_input_name(names)])
                lengths = np.asarray(archive["lengths"]) if "lengths" in names and len(names) > 1 else None
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - NumPy/zipfile raise many types for damaged files
        raise InputError(f"cannot read corpus {name!r}: {type(error).__name__}: {error}") from None
    if array.dtype == object:
        raise InputError(f"corpus {name!r} holds Python objects; save a numeric array")
    integer = np.issubdtype(array.dtype, np.integer)
    if (integer and array.ndim == 1) or (not integer and array.ndim == 2):
        array = array[None]  # one sequence
    if (integer and array.ndim != 2) or (not integer and array.ndim != 3):
        raise InputError(f"corpus {name!r}: expected int (batch, time) token ids or float (batch, time, features), "
                         f"got {array.dtype} of shape {tuple(array.shape)}")
    if lengths is not None:
        if not np.issubdtype(lengths.dtype, np.integer) or lengths.shape != (array.shape[0],):
            raise InputError(f"corpus {name!r}: 'lengths' must be {array.shape[0]} integers, one per sequence")
        if lengths.min() < 1 or lengths.max() > array.shape[1]:
            raise InputError(f"corpus {name!r}: 'lengths' must lie in 1..{array.shape[1]}")
    return array, lengths


def open_corpus(loaded: LoadedModel, path: str | Path) -> Corpus:
    """The corpus at `path` (see the module docstring); InputError when it cannot be one or is empty."""
    path = Path(path)
    meta = loaded.meta
    if not path.exists():
        raise InputError(f"corpus {str(path)!r} does not exist")
    if path.is_dir():
        files, ignored = _text_files(path)
        empty = sum(1 for file in files if not _read_text(file).strip())
        if len(files) == empty:
            raise InputError(f"corpus folder {str(path)!r} holds no .txt file with text (one sequence per file)")
        corpus = Corpus(path, "files", len(files) - empty, meta, ignored=ignored, empty=empty)
    elif path.suffix.lower() == ".txt":
        if not meta.get("vocab"):
            raise InputError(f"cannot encode the corpus {str(path)!r}: the checkpoint has no vocabulary")
        split, count = _text_split(path)
        corpus = Corpus(path, split, count, meta)
    elif path.suffix.lower() in (".npy", ".npz"):
        array, _ = _open_array(path)
        corpus = Corpus(path, "batch", int(array.shape[0]), meta)
    else:
        raise InputError(f"corpus {str(path)!r}: corpus mode reads a .txt file, a folder of .txt files, "
                         f"or an .npy/.npz batch, not {path.suffix or 'a file without a suffix'!r}")
    if corpus.count == 0:
        raise InputError(f"corpus {str(path)!r} holds no sequence")
    return corpus


def corpus_sample(corpus: Corpus, loaded: LoadedModel, *, max_memory_bytes: int | None = None) -> SampleInput:
    """The corpus's first sequence as the report's sample (validated as a single --input is)."""
    first = next(iter(corpus))
    values = first.values[None]
    sample = _validate(values, corpus.meta, f"{corpus.source} ({first.where})")
    if first.text is not None and sample.kind == "tokens":
        sample.text = first.text
    unit = "characters" if first.text is not None and _char_level(corpus.meta) else "steps"
    sample.description = f"{corpus.description}; shown: the first ({first.where}, {sample.steps:,} {unit})"
    as_model_reads(sample, corpus.meta)
    check_budget(loaded, sample, max_memory_bytes)
    return sample


def check_sequence(sequence: CorpusSequence, meta: Metadata, reference: SampleInput, source: str) -> np.ndarray:
    """A sequence's values checked against the model as the first one was: InputError naming it otherwise."""
    values = sequence.values
    where = f"{source} ({sequence.where})"
    if len(values) == 0:
        raise InputError(f"{where}: the sequence is empty")
    if reference.one_hot or reference.kind == "features":
        if np.issubdtype(values.dtype, np.integer) and reference.one_hot:
            return values
        if values.ndim != 2 or values.shape[1] != reference.values.shape[2]:
            raise InputError(f"{where}: {values.shape[-1]} features per step, the first sequence has "
                             f"{reference.values.shape[2]}")
        if not np.isfinite(values).all():
            raise InputError(f"{where}: holds NaN or Inf values")
        return values
    vocab = meta.get("vocab")
    size = meta.get("vocab_size") or (len(vocab) if isinstance(vocab, (list, tuple)) else None)
    if int(values.min()) < 0 or (isinstance(size, int) and int(values.max()) >= size):
        bad = int(values.min()) if int(values.min()) < 0 else int(values.max())
        raise InputError(f"{where}: token id {bad} is outside the vocabulary")
    return values
