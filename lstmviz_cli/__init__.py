"""lstmviz: see every gate of every recurrent layer of a PyTorch model.

`from lstmviz_cli import trace` is the scripting entry point. It is resolved lazily so that
importing the package (and `lstmviz --help`) never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Trace", "LayerTrace", "trace", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from lstmviz_cli.tracing.records import LayerTrace, Trace
    from lstmviz_cli.tracing.tracer import trace


def __getattr__(name: str) -> Any:
    # Imported on first use: tracing/ loads torch, which `import lstmviz_cli` and --help must not.
    if name == "trace":
        from lstmviz_cli.tracing.tracer import trace

        return trace
    if name in ("Trace", "LayerTrace"):
        from lstmviz_cli.tracing import records

        return getattr(records, name)
    raise AttributeError(f"module 'lstmviz_cli' has no attribute {name!r}")
