"""Interpretable units, with evidence: what a unit tracks, whether that is real, and whether the model uses it.

Units are ranked by their correlation with per-step text features (or --labels); each ranked pair
carries a family-wise corrected block-permutation p-value and the same feature's best |r| in an
untrained model (`explain.significance`, `explain.control`). Only significant pairs are ranked; the
top units are checked causally by clamping them during the forward pass (`explain.intervention`).
"""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.evidence import UnitAblation, UnitCorrelation
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import UnitAblationData, UnitFeaturesData, UnitPanel
from lstmviz_cli.page.model import (
    Block,
    Cell,
    Definitions,
    FigureRef,
    FigureSpec,
    Paragraph,
    Row,
    Section,
    Span,
    Table,
)

UNIT_FEATURES_SHOWN = 4  # features whose best unit gets a highlighted text and a plot


def _feature(name: str) -> str:
    return name.replace("_", " ")


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2g}" if value >= 0.001 else f"{value:.1e}"


def _control(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


# A trained unit within this much |r| of the untrained control says no more than the architecture does.
CONTROL_MARGIN = 0.05


def _as_untrained(u: UnitCorrelation) -> str:
    """ ", as much: ..." when the unit's |r| is hardly above the untrained control's (a significant r the
    architecture alone gives is no evidence that training made the unit track the feature)."""
    if u.control_r is None or abs(u.r) - u.control_r >= CONTROL_MARGIN:
        return ""
    return ", about as much: no more than the architecture gives untrained"


def _loss_phrase(a: UnitAblation) -> str:
    """What the check changed, in words: the loss where the feature is present / absent, else overall."""
    if a.present_change is not None and a.absent_change is not None and a.feature is not None:
        return (f"next-token loss {a.present_change:+.4f} nats per step where {_feature(a.feature)} is present, "
                f"{a.absent_change:+.4f} where it is absent")
    if a.loss_change is not None:
        return f"loss {a.loss_change:+.4g} nats ({a.loss_kind})"
    return f"{a.quantity} of {a.target_label} {a.target_change:+.4g}"


def verdict(a: UnitAblation) -> str:
    """Does the model use the unit? A check that moves nothing says so."""
    if not a.changed:
        return "changes nothing: the model does not use this unit on this sample"
    if a.present_change is not None and a.absent_change is not None and a.feature is not None:
        if a.present_change > 0 and a.present_change > a.absent_change:
            return f"used: the loss rises most where {_feature(a.feature)} is present"
        return f"changes the output, but not most where {_feature(a.feature)} is present"
    return "changes the output"


def _checks_of(analysis: Analysis, row: UnitCorrelation) -> list[UnitAblation]:
    return [a for a in analysis.ablations if any((u.prefix, u.unit) == (row.prefix, row.unit) for u in a.units)]


def reading(analysis: Analysis) -> str:
    if not analysis.features:
        return (
            "No text is known for this sample (the built-in features need a text input, such as a character "
            "model's .txt sample), so there are no built-in per-step features to compare units with. "
            "Pass --labels labels.csv (one column per feature, one row per step) to rank units against your own."
        )
    tests = analysis.unit_tests
    over = ("every step of every sequence of the corpus" if analysis.corpus is not None else "the sample's steps")
    if tests is not None and not tests.ranked and tests.note.startswith("no unit can be significant"):
        return tests.note[0].upper() + tests.note[1:] + "."  # too few permutations: chance was not even tested
    if tests is not None and not tests.ranked:
        candidates = ", ".join(f"{_feature(u.feature)}: unit {u.unit} of {u.key} (r = {u.r:+.2f}, p = {_p(u.p)})"
                               for u in tests.not_significant[:4])
        return (f"No unit is significantly correlated with any feature (family-wise α = {tests.alpha:g} over "
                f"{tests.pairs_tested:,} unit–feature pairs), so no unit is ranked: on this input any apparent "
                f"tracking is what chance gives. The best candidates were {candidates}." if candidates else tests.note)
    if not analysis.units:
        return "No unit varies together with any feature on this input (every feature or every unit is constant)."
    best = analysis.units[0]
    parts = [f"The unit most tied to a feature is unit {best.unit} of {best.key}: it follows {_feature(best.feature)} "
             f"with r = {best.r:+.2f} over {over}"]
    if best.p is not None:
        parts[0] += f" (p = {_p(best.p)}, corrected for every unit and feature tested"
        parts[0] += (f"; an untrained model of the same architecture reaches |r| = {best.control_r:.2f} for this "
                     f"feature{_as_untrained(best)})" if best.control_r is not None else ")")
    parts[0] += "."
    for check in _checks_of(analysis, best)[:1]:
        parts.append(f"Does the model use it? {check.how.capitalize()}: {_loss_phrase(check)}: {verdict(check)}.")
    seen = {best.feature}
    for u in analysis.units[1:]:
        if u.feature in seen or len(seen) >= 3:
            continue
        seen.add(u.feature)
        parts.append(f"For {_feature(u.feature)} the best is unit {u.unit} of {u.key} (r = {u.r:+.2f}"
                     + (f", p = {_p(u.p)}" if u.p is not None else "")
                     + (f"; an untrained model reaches {u.control_r:.2f}{_as_untrained(u)}" if u.control_r is not None
                        else "") + ").")
    if tests is not None:
        missing = [_feature(u.feature) for u in tests.not_significant]
        if missing:
            parts.append("No unit is significant for " + ", ".join(missing) + ".")
    else:
        parts.append("These correlations carry no p-values (--permutations 0): some will be chance.")
    return " ".join(parts)


def _ranked_table(analysis: Analysis) -> Table:
    rows = []
    for u in analysis.units:
        checks = _checks_of(analysis, u)
        effect = checks[0] if checks else None
        rows.append(Row((
            Cell((_feature(u.feature),)), Cell((u.key,)),
            Cell((Span(str(u.unit), "link", ref=FigureRef("heatmaps", u.key.rpartition("/")[0]), unit=int(u.unit)),),
                 numeric=True),
            Cell((f"{u.r:+.3f}",), numeric=True), Cell((_p(u.p),), numeric=True),
            Cell((_control(u.control_r),), numeric=True),
            Cell((verdict(effect) if effect is not None else "–",)),
        )))
    tests = analysis.unit_tests
    caption = "Units ranked by |r|, strongest first" + (
        f": only pairs significant at family-wise α = {tests.alpha:g}" if tests is not None else " (not tested)")
    return Table(("feature", "layer / series", "unit", "r", "p (corrected)", "untrained |r|", "causal check"),
                 tuple(rows), numeric=(False, False, True, True, True, True, False), caption=caption, analysis=True)


def _not_significant_table(analysis: Analysis) -> Table | None:
    tests = analysis.unit_tests
    if tests is None or not tests.not_significant:
        return None
    rows = tuple(Row((Cell((_feature(u.feature),)), Cell((u.key,)), Cell((str(u.unit),), numeric=True),
                      Cell((f"{u.r:+.3f}",), numeric=True), Cell((_p(u.p),), numeric=True),
                      Cell((_control(u.control_r),), numeric=True)))
                 for u in tests.not_significant)
    return Table(("feature", "best layer / series", "unit", "r", "p (corrected)", "untrained |r|"), rows,
                 numeric=(False, False, True, True, True, True),
                 caption="Not ranked: features with no significant unit (their best candidate)", analysis=True)


def _checks_table(analysis: Analysis) -> Table | None:
    if not analysis.ablations:
        return None
    rows = []
    for a in analysis.ablations:
        prefixes = {u.prefix for u in a.units}
        layer, units = ((next(iter(prefixes)), ", ".join(str(u.unit) for u in a.units)) if len(prefixes) == 1
                        else ("several", ", ".join(f"{u.prefix}:{u.unit}" for u in a.units)))
        rows.append(Row((
            Cell((layer,)), Cell((units,), numeric=len(prefixes) == 1), Cell((a.how,)),
            Cell((f"{a.target_change:+.4g}",), numeric=True),
            Cell(("–" if a.loss_change is None else f"{a.loss_change:+.4g}",), numeric=True),
            Cell(("–" if a.present_change is None else f"{a.present_change:+.4f}",), numeric=True),
            Cell(("–" if a.absent_change is None else f"{a.absent_change:+.4f}",), numeric=True),
            Cell((verdict(a),)),
        )))
    first = analysis.ablations[0]
    return Table(("layer", "unit", "what was done", f"Δ {first.quantity} of {first.target_label} at step {first.step}",
                  "Δ loss" + (f" ({first.loss_kind})" if first.loss_kind else ""), "Δ loss where the feature is present",
                  "… where absent", "verdict"), tuple(rows), numeric=(False, True, False, True, True, True, True, False),
                 caption="Causal checks: each unit's h clamped or silenced at every step while the model runs",
                 analysis=True)


def default_explained(analysis: Analysis) -> str:
    """Why clamping is the default, with this model's own numbers when both modes were run on one unit."""
    text = ("Clamping is the default check: a unit's h is held at its mean over the steps where its feature is "
            "absent (an --ablate unit without a feature: its mean over the sample). Silencing it (h = 0, --ablate-mode "
            "zero) is not neutral for a unit that rests away from 0: it then also disturbs the steps where the "
            "feature is absent.")
    modes: dict[str, UnitAblation] = {}
    for a in analysis.ablations:
        key = (a.units[0].prefix, a.units[0].unit)
        if len(a.units) == 1 and a.feature is not None and key == (analysis.ablations[0].units[0].prefix,
                                                                   analysis.ablations[0].units[0].unit):
            modes.setdefault("zero" if a.how == "set to 0" else "clamp", a)
    zero, clamp = modes.get("zero"), modes.get("clamp")
    if zero is not None and clamp is not None and zero.present_change is not None and clamp.present_change is not None:
        unit = zero.units[0]
        text += (f" On this sample, unit {unit.unit} of {unit.prefix} set to 0: {_loss_phrase(zero)}; "
                 f"{clamp.how}: {_loss_phrase(clamp)}.")
    return text


def units_section(ctx: PageContext) -> Section:
    """Ranked units with p-values, controls and causal checks; the best units' texts and activation plots."""
    analysis = ctx.analysis
    section_id = ctx.ids.take("interpretable-units")
    tables: list[Block] = []
    if analysis.units:
        tables.append(_ranked_table(analysis))
    not_significant = _not_significant_table(analysis)
    if not_significant is not None:
        tables.append(not_significant)
    checks = _checks_table(analysis)
    figures: list[Block] = []
    if checks is not None:
        tables.append(checks)
        tables.append(Paragraph((default_explained(analysis),), role="note"))
        first = analysis.ablations[0]
        if first.step_loss_before is not None and first.step_loss_after is not None:
            feature = analysis.features.get(first.feature) if first.feature is not None else None
            change = first.step_loss_after - first.step_loss_before
            unit = first.units[0]
            figures.append(FigureSpec(
                id=ctx.ids.take("fig", "unit-ablation"), ref=FigureRef("unit-ablation"),
                data=UnitAblationData(change, None if feature is None else np.asarray(feature[: len(change)]),
                                      f"unit {unit.unit} of {unit.prefix} {first.how}: change of the next-token loss "
                                      "per step" + ("" if feature is None else
                                                    f" (shaded: {_feature(first.feature or '')} present)"),
                                      ctx.display_tokens()),
                description="Causal check of the top unit: the next-token loss per step with the unit clamped, minus "
                            "without.",
                caption="the top unit's causal check: change of the next-token loss at each step (red: worse)",
                frame="analysis",
            ))
    for note in analysis.explain_notes:
        if note.method in ("significance", "control", "ablation"):
            tables.append(Paragraph((note.reason,), role="note"))
    layers = {layer.prefix: layer for layer in ctx.run.trace.layers}
    shown: list[str] = []
    panels = []
    highlights: list[Block] = []
    for u in analysis.units:
        if u.feature in shown or len(shown) >= UNIT_FEATURES_SHOWN:
            continue
        shown.append(u.feature)
        prefix, series = u.key.rsplit("/", 1)
        layer = layers.get(prefix)
        if layer is None:
            continue
        activation = np.asarray(layer.series[series][0, :, u.unit], dtype=np.float64)
        # No-break spaces: a wrapped title never parts "r =" from its value.
        caption = f"unit\u00a0{u.unit} of {u.key} · {_feature(u.feature)} · r\u00a0=\u00a0{u.r:+.2f}" + (
            f" · p\u00a0=\u00a0{_p(u.p)}" if u.p is not None else "")
        panels.append(UnitPanel(activation, analysis.features[u.feature], caption))
    if panels:
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "units"), ref=FigureRef("units"),
            data=UnitFeaturesData(tuple(panels), ctx.display_tokens()),
            description="The best unit for each of the strongest text features: its activation over time against "
                        "the feature.",
            caption="the best unit for each of the strongest features (black line) against the feature (grey)"
                    + (" · the sample shown, sequence 0 of the corpus" if analysis.corpus is not None else ""),
            frame="analysis",
        ))
    tests = analysis.unit_tests
    terms: list[tuple[str, str]] = []
    if analysis.units or not_significant is not None:  # the terms of the tables shown, no others
        terms += [
            ("r", "Pearson correlation between a unit's activation and a feature over "
             + ("every step of every sequence of the corpus" if analysis.corpus is not None
                else "the time steps of the sample")),
            ("p (corrected)", "the chance of a correlation this strong among all units if the feature had nothing to "
             "do with them: the feature is shuffled in blocks that keep its autocorrelation "
             + (f"({tests.permutations:,} times, over the first {tests.steps:,} steps), " if tests is not None else "")
             + "the best |r| over every unit is compared (max-T) and the result multiplied by the number of features "
             "(Bonferroni); a pair is ranked when p ≤ " + (f"{tests.alpha:g}" if tests is not None else "0.05")),
            ("untrained |r|", "the same feature's best |r| over every unit of a freshly initialised model of the same "
             "architecture, on the same input: what the architecture gives without training"),
        ]
    if checks is not None or analysis.units:  # the checks table, or the ranked table's column
        terms.append(("causal check", "the unit's h held at a value at every step while the model runs; the change of "
                      "the watched output and of the loss on the sample says whether the model uses the unit. A "
                      "feature is present at the steps where it is above its smallest value on the sample (a 0/1 "
                      "feature such as inside quotes: where it is 1; a count such as position in word: where it is "
                      "above 0) and absent at the others"))
    terms += [(_feature(name), text) for name, text in analysis.feature_definitions.items()]
    if panels and ctx.run.sample.kind == "tokens" and ctx.tokens is not None:
        # The text coloured by these units is the token section's (shown there first): not twice.
        highlights.append(Paragraph(("The sample text coloured by each of these units: ",
                                     Span("Token highlighting", "link", href="#tokens"), " (ranked units first).",),
                                    role="note"))
    blocks = (Paragraph((reading(analysis),), role="reading"), *tables, *figures, *highlights,
              *((Definitions(tuple(terms)),) if terms else ()))
    return Section(section_id, "Interpretable units, with evidence", blocks, toc="Interpretable units", analysis=True)
