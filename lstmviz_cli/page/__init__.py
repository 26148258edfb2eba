"""The page: what the HTML report shows, section by section, built from a run and its analysis.

Phase 1 of issue 15 moved `report.py` and `analysis_view.py` here as they were; the typed page model
(`build_page(run, analysis, view) -> Page`) replaces them.
"""
