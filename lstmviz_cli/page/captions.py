"""Words that state a threshold, built from the thresholds in force (`analysis.thresholds.Thresholds`).

`--saturation-low 0.2 --saturation-high 0.8` must change every caption, table header and definition
that names the saturation band, on the report and on the diff page alike: they all come from here.
"""

from __future__ import annotations

from lstmviz_cli.analysis.checksettings import CheckConfig
from lstmviz_cli.analysis.thresholds import Thresholds


def below(th: Thresholds) -> str:
    """Table header of the left-saturated share: "< 0.1"."""
    return f"< {th.saturation_low:g}"


def above(th: Thresholds) -> str:
    """Table header of the right-saturated share: "> 0.9"."""
    return f"> {th.saturation_high:g}"


def band(th: Thresholds) -> str:
    """"below 0.1 or above 0.9": where a gate value counts as saturated."""
    return f"below {th.saturation_low:g} or above {th.saturation_high:g}"


def share(fraction: float) -> str:
    """0.9 -> "90%"."""
    return f"{100 * fraction:.0f}%"


def horizon_share(th: Thresholds) -> str:
    """"90%": the share of the saliency the memory horizon holds."""
    return share(th.horizon_mass)


def gate_stats_caption(th: Thresholds) -> str:
    """The gate-statistics figure's caption."""
    return (
        "Per layer: each bounded series' mean ± std over the sample (an unbounded cell state is in the table, "
        f"and how often each gate passes {th.saturation_low:g} or {th.saturation_high:g} in the table's columns and "
        "the saturation section)."
    )


def gate_stats_definitions(th: Thresholds) -> tuple[tuple[str, str], ...]:
    return (
        ("mean, std", "over every valid time step, unit and sequence of the sample"),
        (below(th), "fraction of gate values below the left-saturation threshold"),
        (above(th), "fraction of gate values above the right-saturation threshold"),
        ("std over time", "cell state only: each unit's standard deviation over time, averaged over units"),
    )


def saturation_definitions(th: Thresholds) -> tuple[tuple[str, str], ...]:
    return (
        ("left-saturated", f"gate value below {th.saturation_low:g} (--saturation-low): the gate is closed"),
        ("right-saturated", f"gate value above {th.saturation_high:g} (--saturation-high): the gate is open"),
        ("one point", "one unit: the fraction of time steps it spends left-saturated (x) and right-saturated (y)"),
        ("dashed line", "x + y = 1: units on it are always saturated, one way or the other"),
    )


def horizon_definition(th: Thresholds) -> str:
    return f"the fewest most-recent steps that hold {horizon_share(th)} of the saliency"


def finding_definitions(th: Thresholds) -> dict[str, str]:
    """What each finding code measures, with the thresholds it is judged against."""
    return {
        "dead_units": f"share of the layer's units whose h never leaves a band {th.dead_range:g} wide "
                      f"(warning from {100 * th.dead_fraction:.0f}% of the units)",
        "saturated_gate": f"share of the gate's units saturated ({band(th)}) at least "
                          f"{100 * th.saturated_unit:.0f}% of the time (warning from "
                          f"{100 * th.saturated_fraction:.0f}% of the units)",
        "forget_pinned_low": f"share of units whose forget (GRU: update) gate stays below {th.saturation_low:g} "
                             "in at least 95% of the steps",
        "forget_pinned_high": "share of units whose forget (GRU: update) gate stays above "
                              f"{th.forget_pinned_high:g} in at least 95% of the steps",
        "exploding_cell": f"largest |c| anywhere in the layer, against {th.cell_max:g}",
        "vanishing_gradient": f"mean saliency of the oldest 10% of steps over the peak saliency, against "
                              f"{th.vanishing_ratio:g}",
    }


def check_definitions(config: CheckConfig) -> dict[str, str]:
    """What the findings of a `check --report` page that only the check states measure, with its thresholds."""
    limit = "off" if config.max_dead_units is None else config.max_dead_units
    return {
        "dead_units": "share of the layer's units whose h never moves (error when more than the check's "
                      f"--max-dead-units {limit}, info when within it)",
        "saturation": "share of a gate's values saturated, against the check's --max-saturated",
        "memory_horizon": f"steps back that hold {Thresholds.horizon_mass:.0%} of the saliency, against the check's "
                          "--min-memory-horizon",
        "verify_error": "max |recorded - real| of the trace, against the check's --max-verify-error",
        "model_output": "the traced model's output against your model run plainly",
        "baseline": "a measure that moved from the baseline by more than its tolerance (--tolerance)",
    }


def thresholds_line(th: Thresholds) -> str:
    """Every threshold in force, as "name = value" pairs."""
    return ", ".join(f"{k} = {v:g}" for k, v in th.to_json().items())


def diff_saturation_lead(th: Thresholds) -> str:
    return (
        f"Share of gate values below {th.saturation_low:g} (left-saturated) or above {th.saturation_high:g} "
        "(right-saturated), as the analysis of each checkpoint computes it."
    )


def diff_saturation_axis(th: Thresholds) -> str:
    return f"share saturated (<{th.saturation_low:g} or >{th.saturation_high:g})"
