"""What a trace will cost before it runs: its bytes from the model's recurrent modules, and the budget it must fit.

The default budget is a quarter of the machine's RAM; `--max-memory` takes 2G, 512MiB or 50%.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from lstmviz_cli.errors import InputError
from lstmviz_cli.families import FAMILIES
from lstmviz_cli.loading.modules import recurrent_configs
from lstmviz_cli.loading.records import LoadedModel, RecurrentConfig, SampleInput


def estimate_trace_bytes(configs: Iterable[RecurrentConfig], batch: int, steps: int) -> int:
    """Bytes the float32 trace of `batch` x `steps` will hold: every series of every layer.

    batch * steps * sum over layers and directions of (series * units) * 4. The tracer can call
    this with the configs it found to check the same budget.
    """
    per_step = 0
    for cfg in configs:
        family = cfg.family
        directions = 2 if cfg.bidirectional else 1
        layers = 1 if cfg.is_cell else cfg.num_layers
        units = len(FAMILIES[family].series) * cfg.hidden_size
        if family == "lstm" and cfg.proj_size:
            units += cfg.proj_size  # i f g o c and m are hidden wide, h is proj wide
        per_step += units * layers * directions
    return int(batch) * int(steps) * per_step * 4


def default_memory_budget() -> int:
    """A quarter of physical memory (4 GiB when the platform will not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 << 30


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kmgt]?)(?:i?b)?")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory_size(text: str) -> int:
    """A --max-memory value: bytes, "512M", "2GiB", "1.5GB" (binary units) or "50%" of RAM."""
    value = text.strip().lower().replace(" ", "")
    percent = re.fullmatch(r"(\d+(?:\.\d*)?)%", value)
    match = _SIZE.fullmatch(value)
    if percent and 0 < float(percent.group(1)) <= 100:
        return int(default_memory_budget() * 4 * float(percent.group(1)) / 100)
    if not match or float(match.group(1)) <= 0:
        raise InputError(f"--max-memory must be a positive size like 2G, 512MiB or 25%, not {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def check_budget(loaded: LoadedModel, sample: SampleInput, max_memory_bytes: int | None) -> None:
    """Refuse (InputError) a sample whose trace would not fit the budget; record its size on the sample."""
    budget = default_memory_budget() if max_memory_bytes is None else int(max_memory_bytes)
    configs = list(recurrent_configs(loaded.model).values())
    needed = estimate_trace_bytes(configs, sample.batch, sample.steps)
    sample.trace_bytes = needed
    if needed > budget:
        per_step = max(1, needed // max(1, sample.steps))
        fits = max(1, budget // per_step)
        raise InputError(
            f"tracing {sample.batch} × {sample.steps} steps would need about {_human(needed)}, over the memory "
            f"budget of {_human(budget)}; pass a shorter input (at most {fits} steps for this batch) or raise --max-memory"
        )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
