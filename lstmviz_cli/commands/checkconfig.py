"""The check's settings: defaults < `lstmviz.toml` or `[tool.lstmviz]` of pyproject.toml < flags."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from lstmviz_cli.analysis.checksettings import CheckConfig, flag_name
from lstmviz_cli.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "lstmviz.toml"


# -- configuration ----------------------------------------------------------------------------------
# A TOML table as tomllib reads it: keys to strings, numbers, booleans, arrays and tables.
Table = dict[str, Any]


def find_config(start: Path) -> tuple[Path, Table] | None:
    """The nearest `lstmviz.toml`, or `pyproject.toml` with a [tool.lstmviz] table, from `start` upwards."""
    for directory in [start, *start.parents]:
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate, _read_toml(candidate)
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("lstmviz")
            if table is not None:
                return pyproject, table
    return None


def _read_toml(path: Path) -> Table:
    try:
        with open(path, "rb") as handle:
            table: Table = tomllib.load(handle)
            return table
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read config {str(path)!r}: {error}") from None


def config_values(table: Mapping[str, object], source: str) -> dict[str, object]:
    """The check settings of a config table (a [check] sub-table, or keys at the top), validated."""
    check = table.get("check", table)
    if not isinstance(check, Mapping):
        raise InputError(f"{source}: 'check' must be a table of settings")
    table = check
    known = {f.name for f in fields(CheckConfig)}
    values: dict[str, object] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            if isinstance(value, dict):  # other commands' tables
                continue
            raise InputError(f"{source}: unknown setting {key!r}; known: {', '.join(sorted(flag_name(k)[2:] for k in known))}")
        values[name] = None if value in ("off", "none", False) else value
    if "max_dead_units" in values and values["max_dead_units"] is not None:
        values["max_dead_units"] = str(values["max_dead_units"])
    return values


def resolve_config(flags: Mapping[str, object], *, config_path: Path | None = None, cwd: Path | None = None) -> tuple[CheckConfig, Path | None]:
    """Defaults < config file < flags (flags that are None were not given)."""
    values: dict[str, Any] = {}  # CheckConfig's fields, checked by its constructor
    source: Path | None = None
    if config_path is not None:
        if not config_path.is_file():
            raise InputError(f"config file {str(config_path)!r} does not exist")
        table = _read_toml(config_path)
        if config_path.name == "pyproject.toml":
            table = table.get("tool", {}).get("lstmviz", {})
        values.update(config_values(table, str(config_path)))
        source = config_path
    else:
        found = find_config((cwd or Path.cwd()).resolve())
        if found is not None:
            source, table = found
            values.update(config_values(table, str(source)))
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return CheckConfig(**values), source
    except TypeError as error:
        raise InputError(f"invalid check settings: {error}") from None
