"""lstmviz: see every gate of every recurrent layer of a PyTorch model.

From Python: `trace(model, x)` records every gate; `report(model, sample)` gives the whole report as a
`Report` (saved, shown inline in a notebook, or opened in a browser); `Monitor(model, sample)` writes
reports and a timeline of gate statistics from a training loop. They are resolved lazily so that
importing the package (and `lstmviz --help`) never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LayerTrace", "Monitor", "Report", "Trace", "__version__", "report", "trace"]

if TYPE_CHECKING:  # pragma: no cover
    from lstmviz_cli.api.monitor import Monitor
    from lstmviz_cli.api.report import Report, report
    from lstmviz_cli.tracing.records import LayerTrace, Trace
    from lstmviz_cli.tracing.tracer import trace


_LAZY = ("trace", "Trace", "LayerTrace", "report", "Report", "Monitor")


def __getattr__(name: str) -> Any:
    # Imported on first use: tracing/ loads torch, which `import lstmviz_cli` and --help must not.
    # Some libraries draw from Python's global random generator when imported (rich does), so the
    # caller's random state is given back: a training script's shuffling goes on as without lstmviz.
    if name not in _LAZY:
        raise AttributeError(f"module 'lstmviz_cli' has no attribute {name!r}")
    import random

    state = random.getstate()
    try:
        return _resolve(name)
    finally:
        random.setstate(state)


def _resolve(name: str) -> Any:
    if name == "trace":
        from lstmviz_cli.tracing.tracer import trace

        return trace
    if name in ("Trace", "LayerTrace"):
        from lstmviz_cli.tracing import records

        return getattr(records, name)
    if name in ("report", "Report"):
        from lstmviz_cli.api import report as api_report

        return getattr(api_report, name)
    if name == "Monitor":
        from lstmviz_cli.api.monitor import Monitor

        return Monitor
    raise AttributeError(f"module 'lstmviz_cli' has no attribute {name!r}")
