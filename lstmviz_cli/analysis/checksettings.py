"""The check's settings: `CheckConfig`, the thresholds that fail `lstmviz check`, and how their values read.

A plain record with no heavy imports: `lstmviz --help` states its defaults (`cli_options`), and
`commands.checkconfig` fills it from flags and config files.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmviz_cli.errors import InputError
from lstmviz_cli.tracing.verify import GATE_TOLERANCE

FAIL_ON = ("error", "warning", "never")


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

    def __post_init__(self) -> None:
        if self.max_saturated is not None and not 0.0 <= self.max_saturated <= 1.0:
            raise InputError(f"--max-saturated {self.max_saturated!r} must be a fraction between 0 and 1")
        if self.max_verify_error is not None and self.max_verify_error < 0:
            raise InputError(f"--max-verify-error {self.max_verify_error!r} must be >= 0")
        if self.min_memory_horizon is not None and self.min_memory_horizon < 0:
            raise InputError(f"--min-memory-horizon {self.min_memory_horizon!r} must be >= 0")
        if self.fail_on not in FAIL_ON:
            raise InputError(f"--fail-on {self.fail_on!r} must be one of {', '.join(FAIL_ON)}")
        if self.max_dead_units is not None:
            parse_dead_limit(self.max_dead_units)


def flag_name(name: str) -> str:
    """The command-line flag of a setting: "max_dead_units" -> "--max-dead-units"."""
    return "--" + name.replace("_", "-")


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
