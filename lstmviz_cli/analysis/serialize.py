"""The JSON form of the analysis stage's records: the report's summary (`report_json`: `analysis_json` and
the run's measures) and the diff (`diff_json`). Built from the typed records; written by the one JSON writer, `output.write_json`
(keys sorted, NaN/inf as null). Numbers are rounded with `output.json_number`.

JSON schema of `report_json(analysis, measures)` (what `lstmviz report ... --json summary.json` writes, next to
`"generator": "lstmviz-generated"`; floats rounded to 6 significant digits; NaN/inf become null;
everything about "units" and "steps" refers to batch element 0 unless said otherwise):

    thresholds     {name: number}: every Thresholds field used (saturation_low, saturation_high, ...)
    prediction     null | {"kind": "topk"|"values", "step": int|null, "note": str, "basis": str,
                           "items": [{"label": str, "value": probability or predicted value}]}
                   # null when the output is no prediction: a rebuild without a known head, or
                   # --recurrent-only. "basis" says what the number rests on (the rebuilt head and
                   # its wiring, "assumed: ..." when guessed, or "your model's own output").
    model          {"source": "rebuilt"|"torchscript"|"model-class"|"pickled-module"|"in-memory", "description",
                    "tensors": null | {"total", "placed", "unused": [key], "front": [module]},
                    "head": null | {"modules", "widths", "activation", "wiring", "wiring_text",
                                    "source", "assumed"},
                    "head_note": str, "recurrent_only": bool,
                    "verification": [{"level": "gates"|"recurrence"|"names"|"model", "label",
                                      "error": number|null, "status": "ok"|"bad"|"not-checked",
                                      "detail"}]}
    gate_stats     [{"prefix": "lstm/l0/fwd", "series": "f", "mean", "std",
                     "frac_low", "frac_high",      # share < saturation_low / > saturation_high; null
                                                   # for series that are not sigmoid gates
                     "time_std",                   # "c" only: mean over units of the std over time
                     "abs_max", "growth"}]         # "c" only: largest |c|; mean |c| of the last quarter
                                                   # of sequence 0 / of its first quarter
    saturation     [{"prefix", "series", "frac_low": [per unit], "frac_high": [per unit]}]
    units          {"features": {feature: definition},
                    "ranked": [{"feature", "key": "lstm/l0/fwd/c", "unit": int, "r": float,
                                "p": float|null, "control_r": float|null, "significant": bool|null}],
                    # with p-values (the default; not with --permutations 0) also:
                    "not_significant": [rows as in ranked], "permutations", "alpha", "correction",
                    "block_lengths": {feature: steps}, "pairs_tested", "steps", "note"}
                   # Pearson r over the steps (every step of every sequence in corpus mode). Tested:
                   # "ranked" holds the significant pairs (family-wise corrected block-permutation p at
                   # or below alpha), strongest |r| first, each with "control_r", the feature's best |r|
                   # in an untrained model of the same architecture; "not_significant" the best unit of
                   # each feature with none; "ranked" is empty and "note" says so when nothing is
                   # significant. Untested: the 5 strongest units per feature, p null.
    saliency       null | {"step": int, "target": str, "values": [‖∂y/∂x_t‖ per input step],
                           "horizon": int, "window_start": int (steps before it: null values),
                           "horizon_mass": 0.9, "param_norms": {name: ‖∂y/∂θ‖},
                           "gate_norms": {prefix: {gate: ‖∂y/∂θ‖ over that gate's rows}}}
    memory_probe   null | {"prefix", "state": "c"|"h", "lengths": [int], "dependence": [0..1]}
    trajectories   [{"prefix", "series", "explained": [pc1, pc2], "jumpiness": float}]
    findings       [{"code", "severity": "info"|"warning"|"error", "prefix", "units": [int],
                     "value", "threshold", "message", "anchor"}]
                   # codes: dead_units, saturated_gate, forget_pinned_low, forget_pinned_high,
                   # exploding_cell, vanishing_gradient; "anchor" is the HTML id of the report's
                   # figure that shows it (`anchors`, the page's ids), null without a page
    notes          [str]: analyses that were skipped, and why
    unjudged       {prefix: values per unit}: layers with fewer than thresholds.min_steps values per
                   unit, whose dead/saturated/forget-gate/cell findings were skipped (see notes)
    measures       [{"name": "gate mean lstm/l0/fwd f", "measure", "prefix", "series", "value"}]
                   # `report_json` only: the run's named measures (`analysis.measures`, read from the
                   # fields above), the same list `lstmviz check --json` writes and a timeline follows
    attributions   [{"method": "cd"|"lrp", "target": int, "target_label", "step", "values": [per input
                     step], "rest", "output", "conservation_error", "state_error", "note"}]
                   # the prediction (the predicted class's logit at the saliency step, or the value)
                   # split over the input steps: sum(values) + rest = output within conservation_error
                   # (relative; a decomposition over 1e-4 is refused and listed in explain_notes)
    explain_notes  [{"method", "status": "refused"|"skipped"|"unavailable", "reason"}]
    context_ablation  null | {"step", "target", "target_label", "quantity", "neutral", "kept": [k],
                     "change": [|dy| per k], "output", "reference", "horizon", "tolerance"}
                   # the output's change when the input older than k steps is zeroed; "horizon" is the
                   # memory horizon that the page's verdict and `check --min-memory-horizon` use
    timescales     [{"prefix", "gate": "f"|"z", "tau": [steps per unit], "mean_gate": [per unit],
                     "median_tau", "edges": [bin edges in steps], "counts": [units per bin]}]
    ablations      [{"units": ["lstm/l0/fwd:49=0.32"], "how", "feature", "step", "target", "target_label",
                     "quantity", "target_before", "target_after", "loss": "next-token"|"predicted-class"
                     |null, "loss_before", "loss_after", "present_change", "absent_change",
                     "step_loss_change": [per step]|null, "changed"}]
    excerpts       [{"prefix", "unit", "mean", "highest": [{"sequence", "step", "value", "before":
                     [token], "token", "after": [token]}], "lowest": [...]}]: each h unit's contexts
    corpus         null | {"source", "split": "lines"|"paragraphs"|"files"|"batch", "sequences",
                     "steps", "batches", "shown": 0}: corpus mode, what was pooled
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lstmviz_cli.analysis.diff import DiffResult
from lstmviz_cli.analysis.measures import Measure, measures_json
from lstmviz_cli.analysis.records import Analysis, FigureRef
from lstmviz_cli.output import json_number as _num


def report_json(analysis: Analysis, measures: Sequence[Measure],
                anchors: Callable[[FigureRef], str | None] | None = None) -> dict[str, Any]:
    """What `lstmviz report --json` (and `Report.to_json`) writes: the analysis's JSON and the run's measures.

    `measures`: `analysis.measures.measure_run` of the run and `analysis` as the page shows them (cut to
    `--layers`).
    """
    return {**analysis_json(analysis, anchors), "measures": measures_json(measures)}


def analysis_json(analysis: Analysis, anchors: Callable[[FigureRef], str | None] | None = None) -> dict[str, Any]:
    """The JSON summary of an analysis: deterministic (fixed key order, rounded floats, no NaN). Schema above.

    `anchors` maps a finding's figure to the HTML id the report gave it (`page.model.Page.anchor`).
    """
    return {
        "thresholds": analysis.thresholds.to_json(),
        "prediction": None
        if analysis.prediction is None
        else {
            "kind": analysis.prediction.kind,
            "step": analysis.prediction.step,
            "note": analysis.prediction.note,
            "basis": analysis.prediction.basis,
            "items": [{"label": label, "value": _num(value)} for label, value in analysis.prediction.items],
        },
        "model": None if analysis.provenance is None else analysis.provenance.to_json(),
        "gate_stats": [
            {
                "prefix": s.prefix,
                "series": s.series,
                "mean": _num(s.mean),
                "std": _num(s.std),
                "frac_low": _num(s.frac_low),
                "frac_high": _num(s.frac_high),
                "time_std": _num(s.time_std),
                "abs_max": _num(s.abs_max),
                "growth": _num(s.growth),
            }
            for s in analysis.gate_stats
        ],
        "saturation": [
            {
                "prefix": s.prefix,
                "series": s.series,
                "frac_low": [_num(v) for v in s.frac_low],
                "frac_high": [_num(v) for v in s.frac_high],
            }
            for s in analysis.saturation
        ],
        "units": _units_json(analysis),
        "saliency": None
        if analysis.saliency is None
        else {
            "step": analysis.saliency.step,
            "target": analysis.saliency.target,
            "values": [_num(v) for v in analysis.saliency.values],
            "horizon": analysis.saliency.horizon,
            "window_start": analysis.saliency.window_start,
            "horizon_mass": analysis.thresholds.horizon_mass,
            "param_norms": {k: _num(v) for k, v in sorted(analysis.saliency.param_norms.items())},
            "gate_norms": {
                prefix: {gate: _num(v) for gate, v in gates.items()}
                for prefix, gates in sorted(analysis.saliency.gate_norms.items())
            },
        },
        "memory_probe": None
        if analysis.memory_probe is None
        else {
            "prefix": analysis.memory_probe.prefix,
            "state": analysis.memory_probe.state,
            "lengths": list(analysis.memory_probe.lengths),
            "dependence": [_num(v) for v in analysis.memory_probe.dependence],
        },
        "trajectories": [
            {
                "prefix": t.prefix,
                "series": t.series,
                "explained": [_num(v) for v in t.explained],
                "jumpiness": _num(t.jumpiness),
            }
            for t in analysis.trajectories
        ],
        "findings": [
            {
                "code": f.code,
                "severity": f.severity,
                "prefix": f.prefix,
                "units": list(f.units),
                "value": _num(f.value),
                "threshold": _num(f.threshold),
                "message": f.message,
                "anchor": None if anchors is None or f.figure is None else anchors(f.figure),
            }
            for f in analysis.findings
        ],
        "notes": list(analysis.notes),
        "unjudged": dict(analysis.unjudged),
        # -- explanations with evidence (issue 18) --
        "attributions": [_rounded(a.to_json()) for a in analysis.attributions],
        "explain_notes": [n.to_json() for n in analysis.explain_notes],
        "context_ablation": None if analysis.context_ablation is None else _rounded(analysis.context_ablation.to_json()),
        "timescales": [_rounded(t.to_json()) for t in analysis.timescales],
        "ablations": [_rounded(a.to_json()) for a in analysis.ablations],
        "excerpts": [_rounded(e.to_json()) for e in analysis.excerpts],
        "corpus": None if analysis.corpus is None else analysis.corpus.to_json(),
    }


def _rounded(value: object) -> Any:
    """Every float inside `value` rounded as the schema says (`output.json_number`)."""
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def _units_json(analysis: Analysis) -> dict[str, Any]:
    """The ranked units with their evidence: the significant ones when tested (`UnitTests`), else the raw ranking."""
    tests = analysis.unit_tests
    result: dict[str, Any] = {"features": dict(analysis.feature_definitions),
                              "ranked": [_rounded(u.to_json()) for u in analysis.units]}
    if tests is not None:
        result.update(_rounded({key: value for key, value in tests.to_json().items() if key != "ranked"}))
    return result


def diff_json(result: DiffResult) -> dict[str, Any]:
    """The JSON of `lstmviz diff --json` (rounded like the summary; `"unchanged"`: nothing moved at all)."""
    return {
        "before": result.before,
        "after": result.after,
        "sample": result.sample,
        "unchanged": result.unchanged,
        "max_weight_change": _num(result.max_weight_change),
        "max_activation_change": _num(result.max_activation_change),
        "weights": [
            {"prefix": w.prefix, "gate": w.gate, "before_mean": _num(w.before_mean),
             "before_std": _num(w.before_std), "after_mean": _num(w.after_mean),
             "after_std": _num(w.after_std), "rel_change": _num(w.rel_change),
             "max_abs_change": _num(w.max_abs_change)}
            for w in result.weights
        ],
        "gate_stats": [
            {"prefix": g.prefix, "series": g.series, "before_mean": _num(g.before_mean),
             "after_mean": _num(g.after_mean), "delta_mean": _num(g.delta_mean),
             "before_std": _num(g.before_std), "after_std": _num(g.after_std),
             "before_frac_low": _num(g.before_low), "after_frac_low": _num(g.after_low),
             "before_frac_high": _num(g.before_high), "after_frac_high": _num(g.after_high),
             "delta_saturated": _num(g.delta_saturated)}
            for g in result.gate_stats
        ],
        "units": [
            {"prefix": u.prefix, "unit": u.unit, "activation_change": _num(u.activation_change),
             "weight_change": _num(u.weight_change),
             "series_change": {k: _num(v) for k, v in sorted(u.series_change.items())}}
            for u in result.units
        ],
    }
