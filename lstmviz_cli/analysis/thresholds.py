"""Every threshold the analysis uses, with its default and the paper it comes from; `lstmviz check` reads the same."""

from __future__ import annotations

from dataclasses import dataclass, fields

from lstmviz_cli.errors import InputError


@dataclass(frozen=True)
class Thresholds:
    """Every threshold the analysis uses; `lstmviz check` overrides the same fields."""

    saturation_low: float = 0.1  # a gate value below this is left-saturated (Karpathy et al. 2015)
    saturation_high: float = 0.9  # ... above this, right-saturated
    dead_range: float = 0.02  # a unit whose h stays within a band this wide is dead
    dead_fraction: float = 0.1  # warn when at least this fraction of a layer's units is dead
    saturated_unit: float = 0.9  # a gate unit saturated (either side) this often is "always saturated"
    saturated_fraction: float = 0.75  # warn when at least this fraction of a gate's units is
    forget_pinned_high: float = 0.98  # a forget unit above this 95% of the time cannot forget
    forget_pinned_fraction: float = 0.5  # warn when this fraction of forget units is pinned
    cell_max: float = 50.0  # |c| above this is large (counters reach ~20-60)
    cell_growth: float = 2.0  # ... and exploding when its late mean |c| is this many times the early one
    vanishing_ratio: float = 1e-3  # saliency of the oldest steps / peak below this is vanishing
    horizon_mass: float = 0.9  # the memory horizon holds this share of the saliency
    # Dead, saturated, forget-gate and cell-state findings (and the check's memory horizon) need
    # this many values per unit (valid steps over all sequences) to judge: a unit seen once has
    # zero range and would read as dead.
    min_steps: int = 4

    def to_json(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def saturation_thresholds(low: float, high: float) -> Thresholds:
    """The default Thresholds with the saturation band [low, high] the user chose.

    Raises InputError unless 0 < low < high < 1.
    """
    th = Thresholds(saturation_low=float(low), saturation_high=float(high))
    if not 0.0 < th.saturation_low < th.saturation_high < 1.0:
        raise InputError(
            f"saturation thresholds must satisfy 0 < low < high < 1; got low={th.saturation_low:g}, "
            f"high={th.saturation_high:g}"
        )
    return th
