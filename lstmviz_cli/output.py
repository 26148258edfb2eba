"""Writing outputs without ever losing the user's files: ownership check, temp file, atomic rename.

Every JSON file lstmviz writes (the report's `--json`, `trace --json`, `check --json`, `diff --json`,
the figures manifest) goes through `write_json`: one encoding, so they cannot drift apart.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

from lstmviz_cli.errors import OutputError

# Every text output lstmviz writes carries this marker (HTML <meta name="generator">, a JSON key,
# an SVG/PDF comment), so a later run knows the file is its own to replace.
GENERATOR_MARKER = "lstmviz-generated"
_NPZ_MEMBER = "__summary__.npy"


def is_lstmviz_output(path: Path) -> bool:
    """True when `path` is a file an earlier lstmviz run wrote (safe to overwrite)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    if GENERATOR_MARKER.encode() in head:
        return True
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                return _NPZ_MEMBER in archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def check_writable(path: Path, *, force: bool) -> None:
    """Refuse early (before any expensive work) an output we must not or cannot write."""
    if path.is_dir():
        raise OutputError(f"output path {str(path)!r} is a directory; name a file, e.g. {str(path / 'report.html')!r}")
    if path.exists() and not force and not is_lstmviz_output(path):
        raise OutputError(
            f"{str(path)!r} exists and was not written by lstmviz; pass --force to overwrite it, or choose another name"
        )
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a directory")
    if not parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {str(path)!r}: directory {str(parent)!r} is not writable")


def check_distinct(outputs: Mapping[str, Path | None], *, inputs: Mapping[str, Path | None] | None = None) -> None:
    """Refuse (OutputError, one line) two options that name one output file, or an output that names an input
    file of the same run (`--json` over the `--baseline` it is compared with): one would silently replace
    the other. Keys are the options as the user wrote them ("--json"); None values are left out."""
    seen: dict[Path, str] = {}
    for option, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(Path(path).resolve(), option)
    known_inputs = set(seen.values())
    for option, path in outputs.items():
        if path is None:
            continue
        where = Path(path).resolve()
        other = seen.get(where)
        if other in known_inputs:
            raise OutputError(f"{option} names {str(path)!r}, the {other} this run reads; write it to another file")
        if other is not None:
            raise OutputError(f"{other} and {option} both name {str(path)!r}; give each output its own file")
        seen[where] = option


def write_atomic(path: Path, writer: Callable[[Path], None] | bytes | str, *, force: bool = False) -> None:
    """Write to a temporary file beside `path`, then rename it into place.

    `writer` is the content (bytes/str) or a function that writes to the temporary path (for
    libraries such as NumPy that want a filename). An interrupted or failed run leaves any old
    file untouched and no temporary file behind.
    """
    path = Path(path)
    check_writable(path, force=force)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    tmp = Path(tmp_name)
    try:
        if callable(writer):
            os.close(fd)
            fd = -1
            writer(tmp)
        else:
            data = writer.encode("utf-8") if isinstance(writer, str) else writer
            with os.fdopen(fd, "wb") as handle:
                fd = -1
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as error:
        raise OutputError(_describe_os_error(path, error)) from error
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()


def json_number(value: float | None) -> float | None:
    """A number as the JSON schemas say "rounded": 6 significant digits (stable across platforms and
    BLAS builds), None (null) for NaN, inf and None."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _finite(value: object) -> object:
    """`value` with every NaN/inf float replaced by None: JSON has no NaN, and null says "no number"."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_text(document: Mapping[str, object]) -> str:
    """The one JSON encoding of lstmviz's outputs: the generator marker first, then keys sorted, two-space indent,
    NaN/inf as null (never the non-standard `NaN`), a final newline. Deterministic for equal input.

    Rounding is the schema's (`json_number` on the fields it names), not this function's: some numbers
    (a trace's verification error, a figure's size) are written exactly.
    """
    # The marker comes first, not in sorted place: `is_lstmviz_output` reads a file's first 64 KiB, and a
    # report's sorted keys put megabytes ("ablations", "attributions", "excerpts") before "generator".
    body = _encode(_finite({k: v for k, v in document.items() if k != "generator"}), compact=False)
    head = "{\n  " + _encode("generator", compact=False) + ": " + _encode(GENERATOR_MARKER, compact=False)
    return head + ("\n}" if body == "{}" else ",\n" + body[2:]) + "\n"


def compact_json(document: Mapping[str, object]) -> str:
    """Data a page embeds for its script (a heatmap's values, the unit explorer's): one line, keys
    sorted, NaN/inf as null. Deterministic for equal input; not a file, so no generator marker."""
    return _encode(_finite(dict(document)), compact=True)


def _encode(payload: object, *, compact: bool) -> str:
    """The one json.dumps of the package: keys sorted, NaN refused (`_finite` made it null)."""
    return json.dumps(payload, separators=(",", ":") if compact else None, indent=None if compact else 2,
                      sort_keys=True, allow_nan=False)


def write_json(path: Path, document: Mapping[str, object], *, force: bool) -> None:
    """Write `json_text(document)` atomically (refusing to replace a file lstmviz did not write)."""
    write_atomic(path, json_text(document), force=force)


def _describe_os_error(path: Path, error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return f"cannot write {str(path)!r}: no space left on device (the previous file, if any, is unchanged)"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {str(path)!r}: permission denied"
    return f"cannot write {str(path)!r}: {error.strerror or error}"
