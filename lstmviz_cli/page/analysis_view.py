"""What `templates/_analysis.html.j2` shows: sections of readings, tables, figures and highlighted tokens.

Every section is a plain dict of the same shape so the template stays one loop:
``{"id", "title", "reading", "definitions": [(term, text)], "figures": [{"id", "caption", "svg"}],
"tables": [{"caption", "columns", "rows"}], "highlights": [{"caption", "tokens": [{"text", "color",
"title"}]}], "findings": [...]}``. Only matplotlib SVG goes through ``|safe``; every other string
(tokens, module names) is escaped by Jinja.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps

from lstmviz_cli.analysis.anchors import anchor_id, figure_anchor
from lstmviz_cli.analysis.findings import units_text
from lstmviz_cli.analysis.records import Analysis, GateStat
from lstmviz_cli.analysis.rows import valid_rows
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.render import figures_analysis as figs
from lstmviz_cli.render.jobs import job
from lstmviz_cli.tracing.records import SERIES_NAMES


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _section(section_id: str, title: str, reading: str) -> dict[str, Any]:
    return {
        "id": section_id,
        "title": title,
        "reading": reading,
        "definitions": [],
        "figures": [],
        "tables": [],
        "tables_after": [],
        "highlights": [],
        "findings": [],
    }


def _gate_stats_reading(stats: list[GateStat], low: float, high: float) -> str:
    """One paragraph from the numbers: the most right- and left-saturated gates, and the cell's spread."""
    gates = [s for s in stats if s.frac_high is not None]
    if not gates:
        return "This model has no sigmoid gates to summarise (a plain RNN)."
    parts = []
    top = max(gates, key=lambda s: (s.frac_high or 0.0, s.prefix, s.series))
    if (top.frac_high or 0.0) == 0.0 and all((s.frac_low or 0.0) == 0.0 for s in gates):
        mean = sum(s.mean for s in gates) / len(gates)
        return (
            f"No gate value leaves the band [{low:g}, {high:g}] on this sample: every gate works in its "
            f"graded range (mean gate value {mean:.2f}), none acts as a hard switch."
        )
    parts.append(
        f"The most right-saturated gate is the {SERIES_NAMES[top.series]} of {top.prefix}: "
        f"{_pct(top.frac_high)} of its values are above {high:g} (mean {top.mean:.2f})."
    )
    bottom = max(gates, key=lambda s: (s.frac_low or 0.0, s.prefix, s.series))
    if (bottom.frac_low or 0.0) > 0.0:
        parts.append(
            f"The most left-saturated is the {SERIES_NAMES[bottom.series]} of {bottom.prefix}: "
            f"{_pct(bottom.frac_low)} below {low:g}."
        )
    forget = [s for s in gates if s.series == "f"]
    for s in forget:
        if (s.frac_high or 0.0) >= 0.5:
            parts.append(
                f"{s.prefix} forget gates are right-saturated {_pct(s.frac_high)} of the time: "
                "this layer mostly carries its memory forward."
            )
        elif (s.frac_low or 0.0) >= 0.5:
            parts.append(
                f"{s.prefix} forget gates are left-saturated {_pct(s.frac_low)} of the time: "
                "this layer mostly resets its memory at every step."
            )
    return " ".join(parts)


def gate_stats_section(analysis: Analysis) -> dict[str, Any]:
    """The gate statistics table (report section 8)."""
    th = analysis.thresholds
    section = _section(
        "gate-statistics",
        "Gate statistics",
        _gate_stats_reading(analysis.gate_stats, th.saturation_low, th.saturation_high),
    )
    section["definitions"] = [
        ("mean, std", "over every valid time step, unit and sequence of the sample"),
        (f"< {th.saturation_low:g}", "fraction of gate values below the left-saturation threshold"),
        (f"> {th.saturation_high:g}", "fraction of gate values above the right-saturation threshold"),
        ("std over time", "cell state only: each unit's standard deviation over time, averaged over units"),
    ]
    rows = [
        [
            s.prefix,
            f"{s.series} ({SERIES_NAMES.get(s.series, s.series)})",
            _fmt(s.mean),
            _fmt(s.std),
            _pct(s.frac_low),
            _pct(s.frac_high),
            _fmt(s.time_std),
        ]
        for s in analysis.gate_stats
    ]
    section["tables"].append(
        {
            "caption": "Per layer and series",
            "columns": ["layer", "series", "mean", "std", f"< {th.saturation_low:g}", f"> {th.saturation_high:g}", "std over time"],
            "rows": rows,
        }
    )
    return section


def prediction_rows(analysis: Analysis) -> list[tuple[str, str]]:
    """The prediction as (label, formatted number) rows for the summary."""
    if analysis.prediction is None:
        return []
    if analysis.prediction.kind == "topk":
        return [(label, _pct(value)) for label, value in analysis.prediction.items]
    return [(label, f"{value:.4g}") for label, value in analysis.prediction.items]


# -- helpers for the sections below -----------------------------------------------------------------

MAX_HIGHLIGHT = 600  # tokens per highlighted text
UNIT_FEATURES_SHOWN = 4  # features whose best unit gets a highlighted text and a plot


def _figure(figure_id: str, caption: str, build: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """A figure entry; `build(*args)` runs when the report renders all its figures (`render.jobs`)."""
    return {"id": figure_id, "caption": caption, "svg": job(build, *args)}


def _display_tokens(analysis: Analysis) -> list[str] | None:
    return None if analysis.tokens is None else [display_token(t) for t in analysis.tokens]


def _hex(rgba: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(round(255 * v)) for v in rgba[:3]))


def _highlight(
    tokens: list[str], values: np.ndarray, *, signed: bool, joiner: str, label: str
) -> list[dict[str, str]]:
    """Token spans coloured by `values` (diverging when signed, else sequential), first MAX_HIGHLIGHT."""
    n = min(len(tokens), len(values), MAX_HIGHLIGHT)
    vals = np.nan_to_num(np.asarray(values[:n], dtype=np.float64))
    scale = float(np.abs(vals).max()) or 1.0
    cmap = colormaps["RdBu_r" if signed else "Blues"]
    spans = []
    for t in range(n):
        # Keep the colours light enough to read black text on them.
        pos = 0.5 + 0.4 * vals[t] / scale if signed else 0.75 * max(vals[t], 0.0) / scale
        spans.append({"text": tokens[t] + joiner, "color": _hex(cmap(pos)), "title": f"step {t}: {label} {vals[t]:.3g}"})
    return spans


# -- saturation --------------------------------------------------------------------------------------


def _saturation_reading(analysis: Analysis) -> str:
    th = analysis.thresholds
    if not analysis.saturation:
        return "This model has no sigmoid gates (a plain RNN), so there is nothing to saturate."
    parts = []
    for sat in analysis.saturation:
        if sat.series not in ("f", "z"):
            continue
        n = len(sat.frac_high)
        right = int((sat.frac_high > 0.5).sum())
        left = int((sat.frac_low > 0.5).sum())
        text = f"{sat.prefix}: {right} of {n} {SERIES_NAMES[sat.series]} units right-saturated and {left} left-saturated"
        if right > n / 2:
            text += " (this layer mostly carries its memory forward)"
        elif left > n / 2:
            text += " (this layer mostly forgets at every step)"
        parts.append(text)
    lead = (
        f"Counting units right-saturated (> {th.saturation_high:g}) or left-saturated (< {th.saturation_low:g}) "
        "more than half of the time — "
        + "; ".join(parts)
        + ". Units between the corners gate memory step by step."
        if parts
        else ""
    )
    parts = [lead] if lead else []
    busiest = max(analysis.saturation, key=lambda s: (float(np.mean(s.frac_low + s.frac_high)), s.prefix, s.series))
    parts.append(
        f"Overall the most saturated is the {SERIES_NAMES[busiest.series]} of {busiest.prefix}: its units "
        f"spend on average {_pct(float(np.mean(busiest.frac_low + busiest.frac_high)))} of the steps saturated."
    )
    return " ".join(parts)


def saturation_section(analysis: Analysis) -> dict[str, Any]:
    """Karpathy-style saturation scatter plots, one figure per layer and direction."""
    th = analysis.thresholds
    section = _section("gate-saturation", "Gate saturation", _saturation_reading(analysis))
    section["definitions"] = [
        ("left-saturated", f"gate value below {th.saturation_low:g} (--saturation-low): the gate is closed"),
        ("right-saturated", f"gate value above {th.saturation_high:g} (--saturation-high): the gate is open"),
        ("one point", "one unit: the fraction of time steps it spends left-saturated (x) and right-saturated (y)"),
        ("dashed line", "x + y = 1: units on it are always saturated, one way or the other"),
    ]
    prefixes = list(dict.fromkeys(s.prefix for s in analysis.saturation))
    for prefix in prefixes:
        sats = [s for s in analysis.saturation if s.prefix == prefix]
        section["figures"].append(
            _figure(
                figure_anchor("saturation", prefix),
                f"{prefix}: saturation per unit (after Karpathy, Johnson & Fei-Fei 2015, fig. 3)",
                figs.plot_saturation, sats, th, prefix,
            )
        )
    return section


# -- interpretable units --------------------------------------------------------------------------------


def _units_reading(analysis: Analysis) -> str:
    if not analysis.features:
        return (
            "No text is known for this sample (the built-in features need a text input, such as a character "
            "model's .txt sample), so there are no built-in per-step features to compare units with. "
            "Pass --labels labels.csv (one column per feature, one row per step) to rank units against your own."
        )
    if not analysis.units:
        return "No unit varies together with any feature on this sample (every feature or every unit is constant)."
    best = analysis.units[0]
    parts = [
        f"The unit most tied to a feature is unit {best.unit} of {best.key}, which follows "
        f"{best.feature.replace('_', ' ')} with r = {best.r:+.2f}."
    ]
    seen = {best.feature}
    for u in analysis.units[1:]:
        if u.feature in seen or len(seen) >= 3:
            continue
        seen.add(u.feature)
        parts.append(f"For {u.feature.replace('_', ' ')} the best is unit {u.unit} of {u.key} (r = {u.r:+.2f}).")
    absent = [name for name in analysis.features if name not in {u.feature for u in analysis.units}]
    if absent:
        parts.append("Constant on this sample, so not ranked: " + ", ".join(a.replace("_", " ") for a in absent) + ".")
    strong = sum(1 for u in analysis.units if abs(u.r) >= 0.7)
    parts.append(f"{strong} of the listed unit–feature pairs have |r| ≥ 0.7.")
    return " ".join(parts)


def units_section(analysis: Analysis, run: Any) -> dict[str, Any]:
    """Ranked units per feature, with the best units' token highlighting and activation plots."""
    section = _section("interpretable-units", "Interpretable units", _units_reading(analysis))
    section["definitions"] = [
        ("r", "Pearson correlation between a unit's activation and a feature over the time steps of the sample"),
        *[(name.replace("_", " "), text) for name, text in analysis.feature_definitions.items()],
    ]
    if analysis.units:
        section["tables"].append(
            {
                "caption": "Top units per feature, strongest first",
                "columns": ["feature", "layer / series", "unit", "r"],
                "rows": [[u.feature.replace("_", " "), u.key, str(u.unit), f"{u.r:+.3f}"] for u in analysis.units],
            }
        )
    tokens = _display_tokens(analysis)
    raw = analysis.tokens
    joiner = "" if getattr(getattr(run, "sample", None), "text", None) is not None else " "
    shown: list[str] = []
    panels = []
    for u in analysis.units:
        if u.feature in shown or len(shown) >= UNIT_FEATURES_SHOWN:
            continue
        shown.append(u.feature)
        prefix, series = u.key.rsplit("/", 1)
        layer = next((lt for lt in _trace(run).layers if lt.prefix == prefix), None) if _trace(run) else None
        if layer is None:
            continue
        activation = np.asarray(layer.series[series][0, :, u.unit], dtype=np.float64)
        caption = f"unit {u.unit} of {u.key} · {u.feature.replace('_', ' ')} · r = {u.r:+.2f}"
        if raw is not None:
            section["highlights"].append(
                {
                    "caption": caption + " (red: positive activation, blue: negative)",
                    "tokens": _highlight(raw, activation, signed=True, joiner=joiner, label="activation"),
                }
            )
        panels.append((activation, analysis.features[u.feature], caption))
    if panels:
        section["figures"].append(
            _figure(anchor_id("fig", "units"), "the best unit for each of the strongest features (black line) "
                    "against the feature (grey)", figs.plot_unit_features, panels, tokens)
        )
    return section


def _trace(run: Any) -> Any:
    return getattr(run, "trace", None)


# -- memory over time -------------------------------------------------------------------------------------


def _saliency_reading(analysis: Analysis) -> str:
    sal = analysis.saliency
    assert sal is not None
    values = np.nan_to_num(np.asarray(sal.values[: sal.step + 1], dtype=np.float64))
    total = values.sum()
    if total <= 0:
        return f"The {sal.target} has zero gradient with respect to every input step."
    tokens = _display_tokens(analysis)
    top = np.argsort(-values, kind="stable")[:3]

    def name(t: int) -> str:
        return f"step {t}" + (f" ({tokens[t]!r})" if tokens is not None and t < len(tokens) else "")

    parts = [
        f"The gradient of the {sal.target} is largest at " + ", ".join(
            f"{name(int(t))}: {_pct(values[t] / total)}" for t in top
        ) + " of the total.",
        f"The last {sal.horizon} of {sal.step + 1} steps hold {100 * analysis.thresholds.horizon_mass:.0f}% of it "
        "(the effective memory horizon).",
    ]
    if sal.window_start > 0:
        parts.append(
            f"Only steps {sal.window_start}–{sal.step} were differentiated: all {sal.step + 1} would not fit "
            "the memory budget, so earlier steps have no value (exact for the steps shown)."
        )
    rest = values[2:].mean() if len(values) > 2 else 0.0
    if sal.window_start == 0 and rest > 0 and values[:2].mean() >= 1.5 * rest:
        # The long-memory case (e.g. digitsum, where the answer lives in the first two steps).
        parts.append(f"The first two steps stand out: they average {values[:2].mean() / rest:.1f}× the later steps.")
    return " ".join(parts)


def memory_section(analysis: Analysis, run: Any) -> dict[str, Any] | None:
    """Gradient saliency over input steps, the horizon, parameter gradient norms, and the probe."""
    if analysis.saliency is None and analysis.memory_probe is None:
        return None
    reading = _saliency_reading(analysis) if analysis.saliency is not None else ""
    section = _section("memory-over-time", "Memory over time", reading)
    section["definitions"] = [
        ("‖∂y/∂x_t‖", "how much the output y changes per unit change of the input at step t (the embedding "
         "vector for token models); a gradient saliency, computed in one backward pass"),
        ("y", "the log-probability of the predicted class or token (classifiers, language models), or the "
         "predicted value (regression)"),
        ("memory horizon", f"the fewest most-recent steps that hold {100 * analysis.thresholds.horizon_mass:.0f}% "
         "of the saliency"),
    ]
    sal = analysis.saliency
    if sal is not None:
        tokens = _display_tokens(analysis)
        section["figures"].append(
            _figure(figure_anchor("saliency"), f"saliency over input steps ({sal.target}), linear and log scale",
                    figs.plot_saliency, sal, tokens)
        )
        if analysis.tokens is not None:
            joiner = "" if getattr(getattr(run, "sample", None), "text", None) is not None else " "
            values = np.nan_to_num(np.asarray(sal.values, dtype=np.float64))
            peak = values.max() if values.max() > 0 else 1.0
            positive = values[values > 0]
            # Log-scaled over the range the values really span (1 to 8 decades), so that both a
            # decay over many orders of magnitude and a two-fold difference stay visible.
            decades = float(np.clip(np.log10(peak / positive.min()), 1.0, 8.0)) if len(positive) else 1.0
            shade = np.clip(1 + np.log10(np.maximum(values / peak, 1e-300)) / decades, 0, 1)
            section["highlights"].append(
                {
                    "caption": "the sample coloured by saliency (log scale: white ≤ "
                    f"{10 ** -decades:.0e} of the peak, darkest = peak)",
                    "tokens": _highlight(analysis.tokens, shade, signed=False, joiner=joiner, label="log-saliency"),
                }
            )
        if sal.gate_norms:
            gate_names = list(dict.fromkeys(g for gates in sal.gate_norms.values() for g in gates))
            section["tables_after"].append(
                {
                    "caption": "Gradient norm of y reaching each gate's weights and biases",
                    "columns": ["layer", *[f"{g} ({SERIES_NAMES.get(g, g)})" for g in gate_names]],
                    "rows": [
                        [prefix, *[f"{gates[g]:.3g}" if g in gates else "–" for g in gate_names]]
                        for prefix, gates in sal.gate_norms.items()
                    ],
                }
            )
        norms = sorted(sal.param_norms.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        if norms:
            section["tables_after"].append(
                {
                    "caption": "Gradient norm of y per parameter (largest first)",
                    "columns": ["parameter", "‖∂y/∂θ‖"],
                    "rows": [[name, f"{value:.3g}"] for name, value in norms],
                }
            )
    probe = analysis.memory_probe
    if probe is not None:
        dep = probe.dependence
        half = next((n for n, d in zip(probe.lengths, dep, strict=True) if d < dep[0] / 2), None)
        text = (
            f" Memory-length probe on {probe.prefix}: the key at step 0 decides {_pct(dep[0])} of the final "
            f"{probe.state} at length {probe.lengths[0]} and {_pct(dep[-1])} at length {probe.lengths[-1]}; "
        )
        text += (
            f"its share halves by length {half}." if half is not None
            else "it never drops below half within the lengths tried."
        )
        section["reading"] = (section["reading"] + text).strip()
        section["definitions"].append(
            ("key's share", f"spread of the final {probe.state} across up to 8 different step-0 keys "
             "divided by its overall size (1: the key decides everything, 0: forgotten)")
        )
        section["figures"].append(
            _figure(figure_anchor("memory-probe"), "memory-length probe: how long the stack keeps step 0",
                    figs.plot_memory_probe, probe)
        )
    return section


# -- trajectories ------------------------------------------------------------------------------------------


def _trajectory_reading(analysis: Analysis) -> str:
    parts = []
    by_prefix: dict[str, dict[str, Any]] = {}
    for traj in analysis.trajectories:
        by_prefix.setdefault(traj.prefix, {})[traj.series] = traj
    for prefix, trajs in by_prefix.items():
        c, h = trajs.get("c"), trajs.get("h")
        if c is not None and h is not None:
            if c.jumpiness < 0.75 * h.jumpiness:
                verdict = "c moves smoothly while h jumps"
            elif h.jumpiness < 0.75 * c.jumpiness:
                verdict = "unusually, h moves more smoothly than c"
            else:
                verdict = "c and h move alike"
            parts.append(
                f"In {prefix}, {verdict} (jumpiness {c.jumpiness:.2f} vs {h.jumpiness:.2f}); the first two "
                f"components hold {_pct(sum(c.explained))} of c's variance and {_pct(sum(h.explained))} of h's."
            )
        elif h is not None:
            parts.append(
                f"In {prefix}, h has jumpiness {h.jumpiness:.2f}; the first two components hold "
                f"{_pct(sum(h.explained))} of its variance."
            )
    return " ".join(parts)


def trajectories_section(analysis: Analysis) -> dict[str, Any] | None:
    """PCA trajectories of c and h per layer and direction."""
    if not analysis.trajectories:
        return None
    section = _section("state-trajectories", "State trajectories", _trajectory_reading(analysis))
    section["definitions"] = [
        ("PC1, PC2", "the two directions of largest variance of the state over the sample (PCA by SVD)"),
        ("jumpiness", "median distance between consecutive states over their RMS distance from the mean: "
         "near 0 a smooth path, near 1.4 independent jumps"),
    ]
    tokens = _display_tokens(analysis)
    for prefix in dict.fromkeys(t.prefix for t in analysis.trajectories):
        trajs = [t for t in analysis.trajectories if t.prefix == prefix]
        section["figures"].append(
            _figure(figure_anchor("trajectory", prefix), f"{prefix}: states projected on their first two "
                    "principal components, coloured by time", figs.plot_trajectories, trajs, tokens, prefix)
        )
    return section


# -- diagnostics -----------------------------------------------------------------------------------------

_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
FINDING_DEFINITIONS = {
    "dead_units": "share of the layer's units whose h never leaves a band dead_range wide",
    "saturated_gate": "share of the gate's units saturated (either side) at least saturated_unit of the time",
    "forget_pinned_low": "share of units whose forget (GRU: update) gate stays below saturation_low 95% of the time",
    "forget_pinned_high": "share of units whose forget (GRU: update) gate stays above forget_pinned_high 95% of the time",
    "exploding_cell": "largest |c| anywhere in the layer, against cell_max",
    "vanishing_gradient": "mean saliency of the oldest 10% of steps over the peak saliency",
}


def _diagnostics_reading(analysis: Analysis) -> str:
    counts = {sev: sum(1 for f in analysis.findings if f.severity == sev) for sev in ("error", "warning", "info")}
    if not analysis.findings:
        return "No threshold is crossed: no dead units, saturated or pinned gates, exploding cell state or vanishing gradient."
    head = ", ".join(f"{n} {sev}{'s' if n != 1 else ''}" for sev, n in counts.items() if n)
    worst = min(analysis.findings, key=lambda f: _SEVERITY_ORDER.get(f.severity, 3))
    return f"{head}. The most serious: {worst.message}."


def diagnostics_section(analysis: Analysis, run: Any) -> dict[str, Any]:
    """Findings with severity, each linked to the figure that shows it, and the unit-activity figures."""
    section = _section("diagnostics", "Diagnostics", _diagnostics_reading(analysis))
    th = analysis.thresholds
    ordered = sorted(analysis.findings, key=lambda f: (_SEVERITY_ORDER.get(f.severity, 3),))
    section["findings"] = [
        {
            "severity": f.severity,
            "code": f.code,
            "prefix": f.prefix or "model",
            "units": units_text(f.units) if f.units else "–",
            "message": f.message,
            "value": f"{f.value:.3g}",
            "threshold": f"{f.threshold:.3g}",
            "anchor": f.anchor,
            "definition": FINDING_DEFINITIONS.get(f.code, ""),
        }
        for f in ordered
    ]
    section["definitions"] = [
        ("severity", "warning: a threshold is crossed for a large share of a layer; info: a few units only, "
         "or a property worth knowing; error: far past the threshold"),
        *[(code.replace("_", " "), text) for code, text in FINDING_DEFINITIONS.items()],
        ("thresholds", ", ".join(f"{k} = {v:g}" for k, v in th.to_json().items())),
    ]
    trace = _trace(run)
    for layer in getattr(trace, "layers", []):
        h = valid_rows(layer.series["h"]) if "h" in layer.series else None
        c = valid_rows(layer.series["c"]) if "c" in layer.series else None
        h_range = h.max(axis=0) - h.min(axis=0) if h is not None and len(h) else None
        c_peak = np.abs(c).max(axis=0) if c is not None and len(c) else None
        if h_range is None and c_peak is None:
            continue
        section["figures"].append(
            _figure(figure_anchor("activity", layer.prefix), f"{layer.prefix}: how far each unit's h moves, and "
                    "its largest |c|", figs.plot_activity, layer.prefix, h_range, c_peak, th)
        )
    return section


def analysis_context(run: Any, analysis: Analysis, view: Any) -> dict[str, Any]:
    """Everything `_analysis.html.j2` renders, plus the table-of-contents entries it adds."""
    stats = gate_stats_section(analysis)

    if any(s.frac_low is not None and s.frac_high is not None for s in analysis.gate_stats):
        stats["figures"].append(_figure("fig-gate-statistics", "share of saturated values per gate",
                                        figs.plot_gate_stats, analysis.gate_stats, analysis.thresholds))
    sections = [
        stats,
        saturation_section(analysis),
        units_section(analysis, run),
        memory_section(analysis, run),
        trajectories_section(analysis),
        diagnostics_section(analysis, run),
    ]
    sections = [s for s in sections if s is not None]
    return {
        "toc": [(s["id"], s["title"]) for s in sections],
        "sections": sections,
        "prediction": {
            "note": analysis.prediction.note if analysis.prediction else "",
            "rows": prediction_rows(analysis),
        },
        "notes": list(analysis.notes),
    }
