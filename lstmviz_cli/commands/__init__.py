"""One function per CLI command, wiring the stages: load -> trace -> analyze -> page -> render.

`cli.py` parses options and calls these; tests call the same functions.
"""
