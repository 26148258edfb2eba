"""Tell checkpoint kinds apart by their bytes, and validate safetensors headers, without torch."""

from __future__ import annotations

import io
import json
import math
import pickletools
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lstmviz_cli.errors import CheckpointError

# Kinds returned by sniff_checkpoint.
TORCH_ZIP = "torch-zip"
TORCHSCRIPT = "torchscript"
PICKLE = "pickle"
SAFETENSORS = "safetensors"

# Magic numbers of files people mistake for checkpoints, so the message can say what the file is.
_FOREIGN_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive (decompress it first)"),
    (b"\x93NUMPY", "a NumPy array (pass it with --input, not as the checkpoint)"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
)
# What to do with a model of another framework (said after the format's name).
_PORT_TO_PYTORCH = (
    "lstmviz reads PyTorch checkpoints only: build the model in PyTorch, copy the weights in and save "
    "its state_dict (torch.save(model.state_dict(), 'model.pt'))"
)
_LFS_HEADER = b"version https://git-lfs.github.com/spec/v1"
# Field tags that follow ir_version (field 1) at the start of an ONNX ModelProto.
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42})
# First bytes of a protocol 0/1 pickle (protocol >= 2 starts with PROTO, 0x80).
_PICKLE_V0_FIRST = frozenset(b"(cI]}lNSVFLdt")
_SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


@dataclass
class Sniffed:
    """What the first bytes (and, for zips, the member list) say the file is."""

    kind: str
    size: int
    members: list[str] = field(default_factory=list)


def sniff_checkpoint(path: Path) -> Sniffed:
    """Classify `path` as a torch zip, TorchScript zip, raw pickle or safetensors file.

    Raises CheckpointError with a one-line reason for anything else (missing, a directory, empty,
    a truncated zip, a PNG renamed .pt, random bytes), naming the formats people mistake for
    checkpoints and what to do: a Git LFS pointer, ONNX, Keras .h5/.keras, a TensorFlow SavedModel.
    """
    name = str(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {name!r} does not exist")
    if path.is_dir():
        raise CheckpointError(_directory_message(path))
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(256)
    except OSError as error:
        raise CheckpointError(f"cannot read {name!r}: {error.strerror or error}") from error
    if size == 0:
        raise CheckpointError(f"{name!r} is empty (0 bytes); it is not a checkpoint")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _sniff_zip(path, size)
    for magic, what in _FOREIGN_MAGIC:
        if head.startswith(magic):
            raise CheckpointError(f"{name!r} is {what}, not a PyTorch checkpoint")
    if _looks_like_safetensors(head, size):
        return Sniffed(SAFETENSORS, size)
    foreign = _foreign_format(path, head, size)
    if foreign is not None:
        raise CheckpointError(foreign)
    if _looks_like_pickle(head):
        return Sniffed(PICKLE, size)
    raise CheckpointError(
        f"{name!r} is not a checkpoint lstmviz can read (expected a PyTorch .pt/.pth file, "
        "a .safetensors file or a TorchScript archive)"
    )


def _foreign_format(path: Path, head: bytes, size: int) -> str | None:
    """The one-line message for a Git LFS pointer, a Keras/TensorFlow file or an ONNX model; else None."""
    name = str(path)
    if head.startswith(_LFS_HEADER):
        match = re.search(rb"^size (\d+)$", head, re.MULTILINE)
        real = f" {_human(int(match.group(1)))}" if match else ""
        return (
            f"{name!r} is a Git LFS pointer (a {size}-byte text file standing in for the real{real} file): "
            "run `git lfs pull` in its repository to download the checkpoint"
        )
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return f"{name!r} is an HDF5 file (Keras .h5 / TensorFlow weights); {_PORT_TO_PYTORCH}"
    if head[4:8] == b"TFL3":
        return f"{name!r} is a TensorFlow Lite model; {_PORT_TO_PYTORCH}"
    protobuf = len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in _ONNX_NEXT_TAGS
    suffix = path.suffix.lower()
    if path.name == "saved_model.pb" or (protobuf and suffix == ".pb"):
        return f"{name!r} is a TensorFlow SavedModel graph (saved_model.pb); {_PORT_TO_PYTORCH}"
    if (suffix == ".onnx" and not _looks_like_pickle(head)) or (protobuf and head[1] >= 3):
        return (
            f"{name!r} is an ONNX model, which lstmviz cannot trace gate by gate: pass the PyTorch checkpoint "
            "(.pt/.pth/.safetensors) it was exported from"
        )
    return None


def _looks_like_pickle(head: bytes) -> bool:
    """PROTO (0x80) and a protocol 0-5, or an opcode a protocol 0/1 pickle starts with."""
    return (head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5) or bool(head[:1] and head[0] in _PICKLE_V0_FIRST)


def _directory_message(path: Path) -> str:
    name = str(path)
    if (path / "saved_model.pb").is_file():
        return f"{name!r} is a TensorFlow SavedModel directory (saved_model.pb inside); {_PORT_TO_PYTORCH}"
    try:
        inside = sorted(
            child.name for child in path.iterdir()
            if child.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt", ".safetensors") and child.is_file()
        )
    except OSError:
        inside = []
    shown = f" (it holds {', '.join(repr(n) for n in inside[:3])})" if inside else ""
    return f"{name!r} is a directory; pass the checkpoint file inside it{shown}"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} bytes"


def _sniff_zip(path: Path, size: int) -> Sniffed:
    name = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except Exception as error:  # noqa: BLE001 - zipfile raises BadZipFile, NotImplementedError, struct.error...
        raise CheckpointError(f"{name!r} is a truncated or corrupted zip archive ({error})") from error
    if any(m.endswith("/constants.pkl") or m == "constants.pkl" or "/code/" in m for m in members):
        return Sniffed(TORCHSCRIPT, size, members)
    if not any(m == "data.pkl" or m.endswith("/data.pkl") for m in members):
        if "config.json" in members and any(m.endswith(".weights.h5") or m.endswith(".h5") for m in members):
            raise CheckpointError(
                f"{name!r} is a Keras model archive (.keras: config.json and model.weights.h5); {_PORT_TO_PYTORCH}"
            )
        hint = " (a .npz? pass arrays with --input)" if any(m.endswith(".npy") for m in members) else ""
        raise CheckpointError(f"{name!r} is a zip archive but not a PyTorch checkpoint: it has no data.pkl{hint}")
    return Sniffed(TORCH_ZIP, size, members)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """8-byte little-endian header length, then a JSON object (its length is checked later)."""
    if len(head) < 10:
        return False
    return head[8:10] in (b'{"', b"{}", b"{ ", b"{\n") and struct.unpack("<Q", head[:8])[0] > 1


def validate_safetensors(path: Path, size: int) -> dict[str, Any]:
    """Parse and check a safetensors header (length, dtypes, shapes, offsets); return it.

    The safetensors library checks these too, but its messages do not say what to do; ours name
    the tensor and the problem.
    """
    name = str(path)
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > size - 8:
            raise CheckpointError(
                f"{name!r}: safetensors header length {length} exceeds the file size ({size} bytes); "
                "the file is truncated or corrupted"
            )
        if length > _MAX_SAFETENSORS_HEADER:
            raise CheckpointError(f"{name!r}: safetensors header of {length} bytes is too large")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{name!r}: safetensors header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise CheckpointError(f"{name!r}: safetensors header is not a JSON object")
    data_size = size - 8 - length
    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{name!r}: safetensors __metadata__ must map strings to strings")
            continue
        spans.append(_check_safetensors_entry(name, key, entry, data_size))
    spans = sorted(span for span in spans if span[1] > span[0])  # empty tensors overlap nothing
    for (_begin_a, end_a, key_a), (begin_b, _end_b, key_b) in zip(spans, spans[1:], strict=False):
        if begin_b < end_a:
            raise CheckpointError(
                f"{name!r}: safetensors tensors {key_a!r} and {key_b!r} have overlapping data offsets"
            )
    return header


def _check_safetensors_entry(name: str, key: str, entry: object, data_size: int) -> tuple[int, int, str]:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise CheckpointError(f"{name!r}: safetensors entry {key!r} lacks dtype/shape/data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in _SAFETENSORS_DTYPE_BYTES:
        raise CheckpointError(f"{name!r}: safetensors tensor {key!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CheckpointError(f"{name!r}: safetensors tensor {key!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise CheckpointError(
            f"{name!r}: safetensors tensor {key!r} has data offsets {offsets!r} outside the "
            f"{data_size}-byte data section"
        )
    expected = math.prod(shape) * _SAFETENSORS_DTYPE_BYTES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise CheckpointError(
            f"{name!r}: safetensors tensor {key!r} spans {offsets[1] - offsets[0]} bytes but its "
            f"dtype and shape need {expected}"
        )
    return offsets[0], offsets[1], key


def pickle_globals(data: bytes) -> list[str]:
    """Every `module.name` a pickle imports, found by disassembly (nothing is executed).

    Handles GLOBAL/INST (protocols 0-3) and STACK_GLOBAL (4-5, whose names come from earlier
    string pushes, possibly through the memo). A legacy torch.save file is several pickles in a
    row, so reading goes on after STOP; it ends quietly at the first malformed opcode.
    """
    found: set[str] = set()
    stream = io.BytesIO(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickletools warns about odd escapes in protocol-0 strings
        for _ in range(16):  # a handful of pickles in a row at most
            if not _scan_one_pickle(stream, found) or stream.tell() >= len(data):
                break
    return sorted(found)


def _scan_one_pickle(stream: io.BytesIO, found: set[str]) -> bool:
    """Scan one pickle from `stream` into `found`; False when it was malformed."""
    strings: list[str] = []  # recent string pushes, for STACK_GLOBAL
    memo: dict[Any, Any] = {}
    last: Any = None
    try:
        for opcode, arg, _pos in pickletools.genops(stream):
            op = opcode.name
            if op in ("GLOBAL", "INST"):
                found.add(str(arg).replace(" ", "."))
                last = None
            elif op == "STACK_GLOBAL":
                if len(strings) >= 2:
                    found.add(f"{strings[-2]}.{strings[-1]}")
                last = None
            elif op in _STRING_OPS:
                last = str(arg)
                strings.append(last)
            elif op in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = last
            elif op == "MEMOIZE":
                memo[len(memo)] = last
            elif op in ("GET", "BINGET", "LONG_BINGET"):
                last = memo.get(arg)
                if isinstance(last, str):
                    strings.append(last)
            else:
                last = None
    except Exception:  # noqa: BLE001 - malformed: keep what was found so far
        return False
    return True


_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}
)
