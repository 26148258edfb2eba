"""Analysis: pure NumPy over a `Trace` (no torch): statistics, saturation, units, memory, findings, checks.

The analyses that must run the model live in `explain/`; `explain.orchestrate.analyze_run` joins both.
"""
