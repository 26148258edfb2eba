"""What the page shows: `ViewOptions`, the selection of layers, units and steps the user asked for."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewOptions:
    """A selection of layers, units and steps, and presentation choices (checked against the trace
    when the page is built)."""

    title: str | None = None
    layers: str | None = None  # "lstm/l1" or "lstm/l0,lstm/l1/bwd"
    units: str | None = None  # a count, "all", or unit indices "0,5,9"
    steps: str | None = None  # "START:STOP"
    at_step: int | None = None  # the step whose gate values the cell diagram shows
    sort_units: str = "variance"  # none | variance | cluster
