"""Tracing: one hooked forward pass that records every gate of every recurrent layer into a `Trace`.

Reads the loading stage's records only; never the analysis, page, render or command stages. Records:
`tracing.records` (NumPy only, no torch).
"""
