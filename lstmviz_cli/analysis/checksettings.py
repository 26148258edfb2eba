"""The check's settings: `CheckConfig`, the thresholds that fail `lstmviz check`, the baseline's
`Tolerances`, and how their values read.

A plain record with no heavy imports: `lstmviz --help` states its defaults (`cli_options`), and
`commands.checkconfig` fills it from flags and config files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from lstmviz_cli.errors import InputError
from lstmviz_cli.tracing.verify import GATE_TOLERANCE

FAIL_ON = ("error", "warning", "never")
PAGE_FORMATS = ("html", "dir")  # --format: one self-contained file, or a folder for strict-CSP servers


@dataclass(frozen=True)
class Tolerances:
    """How far each measure may move from the baseline (`--baseline`) before the check fails. None: not compared.

    Every measure fails when it moved by more than its tolerance in either direction, except the
    verification error, which fails only when it grew (a smaller error is no change of the model).
    """

    gate_mean: float | None = 0.05  # a gate's mean over the sample (absolute change)
    gate_std: float | None = 0.05  # a gate's standard deviation over the sample (absolute change)
    saturation: float | None = 0.05  # a gate's share of saturated values (absolute change of the share)
    dead_units: float | None = 0.0  # a layer's count of dead units (units)
    # An LSTM layer's largest |c| and its |c| growth over the sample: followed by timelines, compared only
    # when asked (their scale depends on the model, so no default tolerance fits every one).
    cell_max: float | None = None
    cell_growth: float | None = None
    memory_horizon: float | None = 2.0  # steps back holding the saliency's horizon mass (steps)
    verify_error: float | None = 1e-5  # max |recorded - real| of the trace (absolute growth)

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InputError(f"--tolerance {tolerance_name(item.name)}={value!r} must be a number >= 0 or 'off'")

    def to_json(self) -> dict[str, float | None]:
        return {item.name: getattr(self, item.name) for item in fields(self)}


def tolerance_name(name: str) -> str:
    """The name a measure's tolerance has in flags and config files: "gate_mean" -> "gate-mean"."""
    return name.replace("_", "-")


TOLERANCE_NAMES = tuple(tolerance_name(item.name) for item in fields(Tolerances))


@dataclass(frozen=True)
class CheckConfig:
    """The thresholds. None turns a check off. Flags override the config file, which overrides these."""

    # Share of a gate's values that are saturated: < saturation_low or > saturation_high (Thresholds).
    max_saturated: float | None = 0.95
    max_dead_units: str | None = "25%"  # per layer: a count ("3") or a share of its units ("10%")
    # Steps back that hold Thresholds.horizon_mass of the saliency (task-dependent: off by default).
    min_memory_horizon: int | None = None
    max_verify_error: float | None = GATE_TOLERANCE  # max |recorded - real| of the trace
    fail_on: str = "error"  # analysis findings of this severity or worse fail: error, warning, never
    tolerances: Tolerances = field(default_factory=Tolerances)  # how far a measure may move from --baseline

    def __post_init__(self) -> None:
        if self.max_saturated is not None and not 0.0 <= self.max_saturated <= 1.0:
            raise InputError(f"--max-saturated {self.max_saturated!r} must be a fraction between 0 and 1")
        if self.max_verify_error is not None and not self.max_verify_error >= 0:
            raise InputError(f"--max-verify-error {self.max_verify_error!r} must be >= 0")
        if self.min_memory_horizon is not None and (
            isinstance(self.min_memory_horizon, bool) or not isinstance(self.min_memory_horizon, int)
            or self.min_memory_horizon < 0
        ):
            raise InputError(f"--min-memory-horizon {self.min_memory_horizon!r} must be a whole number of steps >= 0")
        if self.fail_on not in FAIL_ON:
            raise InputError(f"--fail-on {self.fail_on!r} must be one of {', '.join(FAIL_ON)}")
        if self.max_dead_units is not None:
            parse_dead_limit(self.max_dead_units)

    def to_json(self) -> dict[str, object]:
        """The settings as the check's JSON writes them (tolerances as a nested object)."""
        values: dict[str, object] = {item.name: getattr(self, item.name) for item in fields(self)}
        values["tolerances"] = self.tolerances.to_json()
        return values

    def settings_text(self) -> str:
        """ "max-saturated 0.95, max-dead-units 25%, min-memory-horizon off, ...": every threshold in force."""
        parts = []
        for item in fields(self):
            if item.name == "tolerances":
                continue
            value = getattr(self, item.name)
            parts.append(f"{flag_name(item.name)[2:]} {'off' if value is None else number_text(value)}")
        return ", ".join(parts)


def flag_name(name: str) -> str:
    """The command-line flag of a setting: "max_dead_units" -> "--max-dead-units"."""
    return "--" + name.replace("_", "-")


def number_text(value: float | int | str) -> str:
    """How a setting or a checked number reads everywhere (table, markdown, page): 0.95, 25%, 0.0001, 3.1e-07, 8."""
    if isinstance(value, str):
        return value
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if number == int(number) and abs(number) < 1e15:
        return str(int(number))
    return f"{number:.3g}"


def parse_dead_limit(text: str) -> tuple[float, bool]:
    """'3' -> (3, False) a count; '10%' -> (0.1, True) a share of the layer's units."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            share = float(raw[:-1]) / 100.0
            if not 0.0 <= share <= 1.0:
                raise ValueError
            return share, True
        count = float(raw)
        if count < 0 or count != int(count):
            raise ValueError
        return count, False
    except ValueError:
        raise InputError(f"--max-dead-units {text!r} must be a count (e.g. 3) or a percentage (e.g. 10%)") from None
