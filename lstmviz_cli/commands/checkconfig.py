"""The check's settings: defaults < a config file < flags, and nothing in a config file silently ignored.

Where settings are read (the nearest, from the working directory upwards, or `--config FILE`):

- `pyproject.toml`: the `[tool.lstmviz.check]` table;
- `lstmviz.toml`: the same `[tool.lstmviz.check]` table (the snippet can be moved between the two files
  unchanged), or its short form `[check]`.

Every key and table is checked: an unknown setting, an unknown table, a setting outside its table or a
value of the wrong type is an error naming the file and the table that is expected. Two files that
both set check settings in one directory are an error too (one would be ignored). The command says
"settings from FILE" only when that file supplied a setting in force (one a flag did not override).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from lstmviz_cli.analysis.checksettings import TOLERANCE_NAMES, CheckConfig, Tolerances, flag_name
from lstmviz_cli.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "lstmviz.toml"
PYPROJECT = "pyproject.toml"
TOOL_TABLE = "[tool.lstmviz.check]"
# Keys of the check table besides CheckConfig's thresholds: the baseline file and the tolerance sub-table.
_BASELINE_KEY = "baseline"
_TOLERANCE_KEY = "tolerance"
_OFF = ("off", "none")
# What each threshold's value must be: (accepted Python types, how the error message says it).
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "max_saturated": ((int, float), "a fraction between 0 and 1"),
    "max_dead_units": ((int, str), 'a count (3) or a percentage ("10%")'),
    "min_memory_horizon": ((int,), "a whole number of steps >= 0"),
    "max_verify_error": ((int, float), "a number >= 0"),
    "fail_on": ((str,), '"error", "warning" or "never"'),
}

# A TOML table as tomllib reads it: keys to strings, numbers, booleans, arrays and tables.
Table = dict[str, Any]


@dataclass(frozen=True)
class CheckSettings:
    """The check's settings in force and where they came from."""

    config: CheckConfig
    baseline: Path | None = None  # --baseline, or the config's `baseline` (relative to the config file)
    source: Path | None = None  # the config file, when it supplied a setting in force
    from_file: tuple[str, ...] = ()  # the settings (flag names without "--") that file supplied

    def source_text(self) -> str:
        """ "settings from pyproject.toml: max-saturated, fail-on", or "" when no file supplied one."""
        if self.source is None:
            return ""
        return f"settings from {self.source}: {', '.join(self.from_file)}"


# -- finding and reading the file -------------------------------------------------------------------
def _read_toml(path: Path) -> Table:
    try:
        with open(path, "rb") as handle:
            table: Table = tomllib.load(handle)
            return table
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read config {str(path)!r}: {error}") from None


def check_table(path: Path) -> tuple[Table, str] | None:
    """The check table of a config file and its name as the file writes it (validated for stray tables and
    keys), or None when it has none.

    `pyproject.toml`: `[tool.lstmviz.check]`; any other name (lstmviz.toml, a --config file): that
    table or `[check]`. Raises InputError naming the table that is expected.
    """
    document = _read_toml(path)
    name = path.name
    if name == PYPROJECT:
        if isinstance(document.get("check"), dict):  # the short form belongs to lstmviz.toml only
            raise InputError(f"{name}: a top-level [check] table is not read in pyproject.toml; lstmviz reads "
                             "[tool.lstmviz.check] there")
        tool = document.get("tool", {})
        lstmviz = tool.get("lstmviz") if isinstance(tool, dict) else None
        if lstmviz is None:
            return None
        table = _check_of_tool(lstmviz, name)
        return None if table is None else (table, TOOL_TABLE)
    expected = "[check] (or [tool.lstmviz.check])"
    found: tuple[Table, str] | None = None
    for key, value in document.items():
        if key == "check":
            if not isinstance(value, dict):
                raise InputError(f"{name}: 'check' must be a table: [check] with its settings below it")
            if found is not None:
                raise InputError(f"{name}: both [check] and [tool.lstmviz.check] are set; keep one")
            found = (value, "[check]")
        elif key == "tool" and isinstance(value, dict):
            for tool_name, tool_table in value.items():
                if tool_name != "lstmviz":
                    raise InputError(f"{name}: unknown table [tool.{tool_name}]; lstmviz reads {expected}")
                table = _check_of_tool(tool_table, name)
                if table is not None:
                    if found is not None:
                        raise InputError(f"{name}: both [check] and [tool.lstmviz.check] are set; keep one")
                    found = (table, TOOL_TABLE)
        elif _setting_name(key) is not None or key in (_BASELINE_KEY, _TOLERANCE_KEY):
            raise InputError(f"{name}: {key!r} must be inside a table: put it under {expected}")
        elif isinstance(value, dict):
            raise InputError(f"{name}: unknown table [{key}]; lstmviz reads {expected}")
        else:
            raise InputError(f"{name}: unknown setting {key!r} outside any table; lstmviz reads {expected}")
    return found


def _check_of_tool(lstmviz: object, name: str) -> Table | None:
    """The check table inside [tool.lstmviz], rejecting anything else there."""
    if not isinstance(lstmviz, dict):
        raise InputError(f"{name}: 'tool.lstmviz' must be a table; lstmviz reads [tool.lstmviz.check]")
    for key, value in lstmviz.items():
        if key == "check":
            continue
        if _setting_name(key) is not None or key in (_BASELINE_KEY, _TOLERANCE_KEY):
            raise InputError(f"{name}: {key!r} must be inside [tool.lstmviz.check], not directly in [tool.lstmviz]")
        kind = "table" if isinstance(value, dict) else "setting"
        shown = f"[tool.lstmviz.{key}]" if kind == "table" else repr(key)
        raise InputError(f"{name}: unknown {kind} {shown} in [tool.lstmviz]; lstmviz reads [tool.lstmviz.check]")
    check = lstmviz.get("check")
    if check is None:
        return None
    if not isinstance(check, dict):
        raise InputError(f"{name}: 'tool.lstmviz.check' must be a table: [tool.lstmviz.check]")
    return check


def find_config(start: Path) -> tuple[Path, tuple[Table, str] | None] | None:
    """The nearest config from `start` upwards: `lstmviz.toml`, or `pyproject.toml` with a [tool.lstmviz] table.

    Two files in one directory that both set check settings are an error: one would be ignored.
    """
    for directory in [start, *start.parents]:
        own = directory / CONFIG_FILE
        pyproject = directory / PYPROJECT
        in_pyproject = check_table(pyproject) if pyproject.is_file() else None
        has_tool = pyproject.is_file() and _has_tool_table(pyproject)
        if own.is_file():
            table = check_table(own)
            if in_pyproject:
                raise InputError(f"both {own} and {pyproject} ([tool.lstmviz.check]) hold check settings; "
                                 "keep them in one file")
            return own, table
        if has_tool:
            return pyproject, in_pyproject
    return None


def _has_tool_table(pyproject: Path) -> bool:
    tool = _read_toml(pyproject).get("tool", {})
    return isinstance(tool, dict) and "lstmviz" in tool


# -- the values -------------------------------------------------------------------------------------
def _setting_name(key: str) -> str | None:
    """The CheckConfig field a config key names ("max-saturated" -> "max_saturated"), or None."""
    name = key.replace("-", "_")
    return name if name in _TYPES else None


def _known_keys() -> str:
    names = [flag_name(name)[2:] for name in _TYPES]
    return ", ".join([*names, _BASELINE_KEY, f"{_TOLERANCE_KEY} (a table of {', '.join(TOLERANCE_NAMES)})"])


def config_values(table: Mapping[str, object], source: str, *, table_name: str) -> tuple[dict[str, object], dict[str, object], object]:
    """The settings of a check table, validated: (thresholds, tolerances, baseline or None).

    Keys are the flags' names ("max-saturated"); "off" turns a threshold or tolerance off. Raises
    InputError naming the file, the table and what is expected.
    """
    values: dict[str, object] = {}
    tolerances: dict[str, object] = {}
    baseline: object = None
    for key, value in table.items():
        if key == _BASELINE_KEY:
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"{source}: {table_name} baseline = {value!r} must be a file name, e.g. "
                                 '"lstmviz-baseline.json"')
            baseline = value
            continue
        if key == _TOLERANCE_KEY:
            if not isinstance(value, dict):
                raise InputError(f"{source}: {table_name} 'tolerance' must be a table: "
                                 f"[{table_name.strip('[]')}.tolerance] with keys {', '.join(TOLERANCE_NAMES)}")
            tolerances.update(tolerance_values(value, f"{source}: {table_name.strip('[]')}.tolerance"))
            continue
        name = _setting_name(key)
        if name is None:
            what = f"table [{table_name.strip('[]')}.{key}]" if isinstance(value, dict) else f"setting {key!r}"
            raise InputError(f"{source}: unknown {what} in {table_name}; known: {_known_keys()}")
        values[name] = _threshold_value(name, key, value, f"{source}: {table_name}")
    return values, tolerances, baseline


def _threshold_value(name: str, key: str, value: object, where: str) -> object:
    if value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
        if name == "fail_on":
            raise InputError(f'{where} fail-on = {value!r}: use "never" to fail on no finding')
        return None
    types, expected = _TYPES[name]
    if name != "fail_on":
        expected += ' (or "off")'
    if isinstance(value, bool) or not isinstance(value, types):
        raise InputError(f"{where} {key} = {value!r} must be {expected}")
    converted: object = value
    if name == "max_dead_units":
        converted = str(value)
    elif name in ("max_saturated", "max_verify_error"):
        converted = float(value)  # type: ignore[arg-type]  # int or float, checked above
    try:  # in range: CheckConfig checks it (its messages name the flags; this one names the file)
        CheckConfig(**{name: converted})  # type: ignore[arg-type]  # the field's type, converted above
    except InputError:
        raise InputError(f"{where} {key} = {value!r} must be {expected}") from None
    return converted


def _flag_value(name: str, value: object) -> object:
    """A threshold flag's text as its setting: a number for the numeric ones, None for "off" (the check off).
    Values that are no text (from Python) are kept; CheckConfig checks the ranges."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in _OFF:
        if name == "fail_on":
            raise InputError(f"--fail-on {value!r}: use --fail-on never to fail on no finding")
        return None
    try:
        if name in ("max_saturated", "max_verify_error"):
            return float(text)
        if name == "min_memory_horizon":
            return int(text)
    except ValueError:
        raise InputError(f"{flag_name(name)} {value!r} must be {_TYPES[name][1]} (or off)") from None
    return text


def tolerance_values(table: Mapping[str, object], where: str) -> dict[str, object]:
    """{"gate-mean": 0.02, "dead-units": "off"} -> {"gate_mean": 0.02, "dead_units": None}, validated."""
    values: dict[str, object] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in {item.name for item in fields(Tolerances)}:
            raise InputError(f"{where}: unknown measure {key!r}; measures: {', '.join(TOLERANCE_NAMES)}")
        if value is False or (isinstance(value, str) and value.strip().lower() in _OFF):
            values[name] = None
        elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise InputError(f'{where}: {key} = {value!r} must be a number >= 0 (or "off")')
        else:
            values[name] = float(value)
    return values


def parse_tolerance_flags(items: list[str] | None) -> dict[str, object]:
    """`--tolerance gate-mean=0.02 --tolerance dead-units=off` -> {"gate_mean": 0.02, "dead_units": None}."""
    table: dict[str, object] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--tolerance {item!r} must be MEASURE=VALUE, e.g. gate-mean=0.02; "
                             f"measures: {', '.join(TOLERANCE_NAMES)}")
        text = text.strip()
        value: object = text
        if text.lower() not in _OFF:
            try:
                value = float(text)
            except ValueError:
                raise InputError(f'--tolerance {item!r}: {text!r} must be a number >= 0 or "off"') from None
        table[key.strip()] = value
    return tolerance_values(table, "--tolerance")


# -- resolution -------------------------------------------------------------------------------------
def resolve_config(flags: Mapping[str, object], *, tolerances: Mapping[str, object] | None = None,
                   baseline: Path | None = None, config_path: Path | None = None,
                   cwd: Path | None = None) -> CheckSettings:
    """Defaults < config file < flags (flags that are None were not given; a flag's "off" turns its check off).

    `tolerances`: the --tolerance flags (`parse_tolerance_flags`); `baseline`: --baseline.
    """
    table: tuple[Table, str] | None = None
    path: Path | None = None
    if config_path is not None:
        if not config_path.is_file():
            raise InputError(f"config file {str(config_path)!r} does not exist")
        table = check_table(config_path)
        if table is None:
            expected = "[tool.lstmviz.check]" if config_path.name == PYPROJECT else "[check] or [tool.lstmviz.check]"
            raise InputError(f"config file {str(config_path)!r} holds no {expected} table")
        path = config_path
    else:
        found = find_config((cwd or Path.cwd()).resolve())
        if found is not None:
            path, table = found
    file_values: dict[str, object] = {}
    file_tolerances: dict[str, object] = {}
    file_baseline: object = None
    if table is not None and path is not None:
        file_values, file_tolerances, file_baseline = config_values(table[0], str(path), table_name=table[1])
    given = {k: _flag_value(k, v) for k, v in flags.items() if v is not None}  # "off": given, as None
    given_tolerances = dict(tolerances or {})
    values: dict[str, Any] = {**file_values, **given}  # CheckConfig's fields, checked by its constructor
    tolerance_fields: dict[str, Any] = {**file_tolerances, **given_tolerances}
    try:
        config = CheckConfig(**values, tolerances=Tolerances(**tolerance_fields))
    except TypeError as error:
        raise InputError(f"invalid check settings: {error}") from None
    chosen_baseline = baseline
    if chosen_baseline is None and isinstance(file_baseline, str) and path is not None:
        chosen_baseline = path.parent / file_baseline
    supplied = [flag_name(k)[2:] for k in file_values if k not in given]
    supplied += [f"tolerance.{k.replace('_', '-')}" for k in file_tolerances if k not in given_tolerances]
    if file_baseline is not None and baseline is None:
        supplied.append(_BASELINE_KEY)
    return CheckSettings(config=config, baseline=chosen_baseline, source=path if supplied else None,
                         from_file=tuple(supplied))
