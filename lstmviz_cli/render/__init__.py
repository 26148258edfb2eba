"""Rendering: pure data -> matplotlib figures, Graphviz diagrams, the Jinja2 HTML environment, figure files
for papers, and the check's JSON/JUnit/terminal outputs.
"""
