"""Tiny models and hostile files for the loader tests (imported explicitly: `import loader_fixtures`)."""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

VOCAB = list("abcdefghijkl")  # 12 tokens


class TokenModel(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM -> Linear on every step: the common char model."""

    def __init__(self, vocab_size: int = 12, embed: int = 5, hidden: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(self.embed(x))[0])


def token_model(seed: int = 0) -> TokenModel:
    torch.manual_seed(seed)
    return TokenModel().eval()


def token_batch(seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, len(VOCAB), (2, 7), generator=generator)


def feature_batch(features: int = 3, seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 5, features, generator=generator)


class Marker:
    """Unpickling this calls open(marker, "w"): it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def write_raw_pickle(path: Path, obj: Any, protocol: int) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def write_torch_zip(path: Path, obj: Any, protocol: int = 2) -> Path:
    torch.save(obj, path, pickle_protocol=protocol)
    return path


def rewrite_zip(src: Path, dst: Path, *, drop: str | None = None, replace: dict[str, bytes] | None = None) -> Path:
    """Copy a zip, dropping members ending with `drop` and replacing members by suffix."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            if drop and info.filename.endswith(drop):
                continue
            data = old.read(info.filename)
            for suffix, replacement in (replace or {}).items():
                if info.filename.endswith(suffix):
                    data = replacement
            new.writestr(info.filename, data)
    return dst


def cuda_saved_copy(src: Path, dst: Path) -> Path:
    """A checkpoint whose storages say they live on cuda:0 (as if saved on a GPU machine)."""
    with zipfile.ZipFile(src) as archive:
        member = next(m for m in archive.namelist() if m.endswith("/data.pkl"))
        data = archive.read(member)
    cpu = b"X\x03\x00\x00\x00cpu"
    assert cpu in data
    return rewrite_zip(src, dst, replace={"/data.pkl": data.replace(cpu, b"X\x06\x00\x00\x00cuda:0")})


def safetensors_bytes(header: dict[str, Any], data: bytes, *, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def tiny_png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(17)


def torch_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
