"""What every section builder reads: the run and analysis (cut to the view), the view, the page's ids.

Also the few facts several sections share: the sample's tokens per step, the analysis' tokens as
shown, and one series of one layer over a window.
"""

from __future__ import annotations

from dataclasses import dataclass

from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.analysis.textfeatures import step_tokens
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.page.figuredata import FloatArray
from lstmviz_cli.page.ids import Ids
from lstmviz_cli.page.view import View, total_steps
from lstmviz_cli.tracing.provenance import Provenance, describe_run
from lstmviz_cli.tracing.records import LayerTrace, Run


@dataclass(frozen=True)
class PageContext:
    """The inputs of one page's section builders. `run` and `analysis` are already cut to `view.layers`."""

    run: Run
    analysis: Analysis
    view: View
    ids: Ids
    # One raw string per recorded step of batch element 0 (text characters or token labels), or None.
    tokens: tuple[str, ...] | None
    facts: Provenance  # what is known of the model (the analysis' record, else read from the run)

    @property
    def thresholds(self) -> Thresholds:
        return self.analysis.thresholds

    @property
    def layers(self) -> tuple[LayerTrace, ...]:
        return self.view.layers

    def display_tokens(self) -> tuple[str, ...] | None:
        """The analysis' tokens (valid steps of element 0) as labels and tables write them."""
        tokens = self.analysis.tokens
        return None if tokens is None else tuple(display_token(t) for t in tokens)


def context(run: Run, analysis: Analysis, view: View, ids: Ids) -> PageContext:
    """The context of a page built from `run` and `analysis` (both already cut to the view)."""
    sample = run.sample
    total = total_steps(run.trace)
    tokens = step_tokens(sample.text, sample.labels, total) or step_tokens(None, sample.labels, total)
    facts = analysis.provenance if analysis.provenance is not None else describe_run(run)
    return PageContext(run=run, analysis=analysis, view=view, ids=ids,
                       tokens=None if tokens is None else tuple(tokens), facts=facts)


def sequence(layer: LayerTrace, name: str, window: tuple[int, int], element: int = 0) -> FloatArray:
    """Batch element `element` (default 0) of one series over the window: (steps, units), a view in the
    stored dtype (no whole-trace copy)."""
    values: FloatArray = layer.series[name][element, window[0] : window[1]]
    return values

