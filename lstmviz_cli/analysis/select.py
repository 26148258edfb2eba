"""An analysis narrowed to some layers (`--layers`): what the page and the JSON summary both show.

Per-layer records (gate statistics, saturation, ranked units and their tests, trajectories, findings,
layers too short to judge and their notes, saliency's per-gate gradient norms, forget timescales, unit
ablations and excerpts) keep only the chosen layers; what is about the whole model (prediction,
saliency over input steps, decompositions, context ablation, the memory probe, provenance, features,
the corpus) stays. Nothing is recomputed: every kept number is the one the full analysis found.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from lstmviz_cli.analysis.findings import unjudged_note
from lstmviz_cli.analysis.records import Analysis


def select_layers(analysis: Analysis, prefixes: Collection[str]) -> Analysis:
    """A copy of `analysis` about the layers whose prefix ("lstm/l0/fwd") is in `prefixes` only.

    Findings about the whole model (prefix "") are kept.
    """
    chosen = set(prefixes)
    dropped_notes = {
        unjudged_note(prefix, count, analysis.thresholds)
        for prefix, count in analysis.unjudged.items() if prefix not in chosen
    }
    saliency = analysis.saliency
    if saliency is not None and saliency.gate_norms:
        saliency = replace(saliency, gate_norms={p: g for p, g in saliency.gate_norms.items() if p in chosen})
    return replace(
        analysis,
        gate_stats=[s for s in analysis.gate_stats if s.prefix in chosen],
        saturation=[s for s in analysis.saturation if s.prefix in chosen],
        units=[u for u in analysis.units if u.key.rpartition("/")[0] in chosen],
        saliency=saliency,
        trajectories=[t for t in analysis.trajectories if t.prefix in chosen],
        findings=[f for f in analysis.findings if not f.prefix or f.prefix in chosen],
        notes=[note for note in analysis.notes if note not in dropped_notes],
        unjudged={p: n for p, n in analysis.unjudged.items() if p in chosen},
        timescales=[t for t in analysis.timescales if t.prefix in chosen],
        unit_tests=None if analysis.unit_tests is None else replace(
            analysis.unit_tests,
            ranked=tuple(u for u in analysis.unit_tests.ranked if u.prefix in chosen),
            not_significant=tuple(u for u in analysis.unit_tests.not_significant if u.prefix in chosen)),
        ablations=[a for a in analysis.ablations if all(u.prefix in chosen for u in a.units)],
        excerpts=[e for e in analysis.excerpts if e.prefix in chosen],
    )
