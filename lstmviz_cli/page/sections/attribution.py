"""Which inputs the prediction came from: gradient saliency beside two exact decompositions (issue 18).

Contextual decomposition and LRP each split the prediction into one part per input step plus a
rest; their conservation error (how far the parts miss the real output) is shown with them, and a
method that was refused, skipped or not available says so in the table instead of a figure.
"""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.evidence import Attribution, MethodNote
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import AttributionData, AttributionPanel
from lstmviz_cli.page.highlight import MAX_TOKENS, highlight
from lstmviz_cli.page.model import (
    Block,
    Cell,
    Definitions,
    FigureRef,
    FigureSpec,
    Paragraph,
    Row,
    Section,
    Table,
)

NAMES = {"cd": "contextual decomposition", "lrp": "layer-wise relevance (LRP)", "saliency": "gradient saliency"}
METHOD_NOTES = (
    ("gradient saliency", "how strongly the output would react to a small change of the input at each step "
     "(the size of the gradient ‖∂y/∂x_t‖; y here is {saliency_y}). A slope, not a share of the output: it "
     "does not add up to anything, and in recurrent networks it is known to fade with distance."),
    ("contextual decomposition", "the output written exactly as one part per input step plus a rest, by carrying "
     "every step's contribution through every gate and state of the network (Murdoch et al. 2018; an interaction "
     "between two steps is split equally between them). The rest is what the model outputs when every input "
     "vector is zero: a step's part is what it adds to that."),
    ("layer-wise relevance (LRP)", "the output handed back through the network, layer by layer and step by "
     "step, in proportion to what each input contributed to each sum (Arras et al. 2017); gates pass nothing on "
     "(the signal they let through takes it all). Biases and the stabiliser keep their share: the rest."),
    ("part of y", "a step's share of the explained output y, the logit (raw score) of the predicted class, or the "
     "value of a regression: red pushes y up, blue pushes it down. The parts and the rest add up to y."),
    ("conservation error", "|sum of the parts + rest − y| relative to max(|y|, sum of |parts|): 0 means the parts "
     "add up exactly. A decomposition whose error exceeds 1e-4 is refused, not shown."),
)


def _name(tokens: tuple[str, ...] | None, t: int) -> str:
    return f"step {t}" + (f" ({tokens[t]!r})" if tokens is not None and t < len(tokens) else "")


def _top(values: np.ndarray, count: int = 3) -> list[int]:
    order = np.argsort(-np.nan_to_num(values), kind="stable")
    return [int(t) for t in order[:count]]


def reading(ctx: PageContext, attributions: list[Attribution]) -> str:
    tokens = ctx.display_tokens()
    first = attributions[0]
    prediction = ctx.analysis.prediction
    what = "value" if prediction is not None and prediction.kind == "values" else "logit (raw score)"
    parts = [f"The prediction explained is {first.target_label} at step {first.step}, whose {what} is "
             f"y = {first.output:.4g}." if first.method in ("cd", "lrp") else ""]
    tops = {}
    for a in attributions:
        top = _top(a.values)
        tops[a.method] = top
        total = float(np.abs(a.values).sum()) or 1.0
        parts.append(f"By {NAMES[a.method]} the steps that contribute most are "
                     + ", ".join(f"{_name(tokens, t)} ({a.values[t]:+.3g}, {100 * abs(a.values[t]) / total:.0f}% of "
                                 "the parts' size)" for t in top[:2])
                     + f"; the parts add up to y within {a.conservation_error:.1e} (relative).")
    sal = ctx.analysis.saliency
    if sal is not None:
        values = np.nan_to_num(np.asarray(sal.values[: sal.step + 1], dtype=np.float64))
        tops["saliency"] = _top(values)
        parts.append(f"Gradient saliency is largest at {_name(tokens, tops['saliency'][0])}.")
    if len(tops) > 1:
        sets = {k: set(v[:2]) for k, v in tops.items()}
        agree = set.intersection(*sets.values())
        if agree:
            parts.append("All methods put " + " and ".join(_name(tokens, t) for t in sorted(agree))
                         + " among their two strongest steps.")
        else:
            parts.append("The methods disagree about the two strongest steps: read them as different questions "
                         "(sensitivity, share of the output).")
    return " ".join(p for p in parts if p)


def _table(attributions: list[Attribution], notes: list[MethodNote]) -> Table:
    rows = []
    for a in attributions:
        rows.append(Row((
            Cell((NAMES[a.method],)), Cell((f"{a.target_label} at step {a.step}",)),
            Cell((f"{float(a.values.sum()):+.4g}",), numeric=True), Cell((f"{a.rest:+.3g}",), numeric=True),
            Cell((f"{a.output:.4g}",), numeric=True), Cell((f"{a.conservation_error:.1e}",), numeric=True),
            Cell(("shown",)),
        )))
    for note in notes:
        rows.append(Row((Cell((NAMES.get(note.method, note.method),)), Cell(("–",)), Cell(("–",), numeric=True),
                         Cell(("–",), numeric=True), Cell(("–",), numeric=True), Cell(("–",), numeric=True),
                         Cell((f"{note.status}: {note.reason}",)))))
    return Table(("method", "explains", "sum of the steps' parts", "rest", "y (the model's output)",
                  "conservation error", "status"), tuple(rows),
                 numeric=(False, False, True, True, True, True, False),
                 caption="Each decomposition: its parts add up to the output it explains", analysis=True)


def attribution_section(ctx: PageContext) -> Section | None:
    """The prediction split over the input steps by saliency, contextual decomposition and LRP."""
    analysis = ctx.analysis
    notes = [n for n in analysis.explain_notes if n.method in ("cd", "lrp", "attribution")]
    attributions = list(analysis.attributions)
    if not attributions and not notes:
        return None
    section_id = ctx.ids.take("attribution")
    tokens = ctx.display_tokens()
    blocks: list[Block] = []
    if attributions:
        blocks.append(Paragraph((reading(ctx, attributions),), role="reading"))
        step = attributions[0].step
        panels = []
        sal = analysis.saliency
        if sal is not None:
            values = np.nan_to_num(np.asarray(sal.values, dtype=np.float64))
            total = values[: sal.step + 1].sum() or 1.0
            panels.append(AttributionPanel(NAMES["saliency"], values / total, False,
                                           f"gradient saliency of the {sal.target}: each step's share of ‖∂y/∂x_t‖"))
        for a in attributions:
            panels.append(AttributionPanel(NAMES[a.method], np.asarray(a.values, dtype=np.float64), True, (
                f"{NAMES[a.method]}: the steps' parts sum to {float(a.values.sum()):+.4g}, rest {a.rest:+.4g}, "
                f"y = {a.output:.4g} (conservation error {a.conservation_error:.1e})")))
        blocks.append(FigureSpec(
            id=ctx.ids.take("fig", "attribution"), ref=FigureRef("attribution"),
            data=AttributionData(tuple(panels), tokens, step),
            description=f"The prediction ({attributions[0].target_label} at step {step}) split over the input steps: "
                        "gradient saliency beside contextual decomposition and LRP.",
            caption="per input step: gradient saliency's share (grey), then each decomposition's signed parts "
                    "(red towards the prediction, blue against it); the dotted line is the predicted step",
            frame="analysis",
        ))
    if attributions or notes:
        blocks.append(_table(attributions, notes))
    if analysis.tokens is not None:
        separator = "" if ctx.run.sample.text is not None else " "
        for a in attributions:
            n = min(len(analysis.tokens), len(a.values), MAX_TOKENS)
            values = np.asarray(a.values[:n], dtype=np.float64)
            scale = float(np.abs(values).max()) or 1.0
            blocks.append(highlight(
                None, f"the sample coloured by {NAMES[a.method]} (red: towards {a.target_label}, blue: against; "
                      f"darkest = ±{scale:.3g})",
                analysis.tokens[:n], values / scale, [f"step {t}: part {values[t]:+.4g}" for t in range(n)],
                separator=separator,
            ))
    sal = analysis.saliency
    saliency_y = f"the {sal.target}" if sal is not None else "the watched output"  # the log-probability of ...
    blocks.append(Definitions(tuple((term, text.replace("{saliency_y}", saliency_y)) for term, text in METHOD_NOTES)))
    lead = Paragraph((
        "Which inputs did this prediction come from? Gradient saliency says where the output is sensitive; the two "
        "decompositions split the output itself into one part per input step, and their parts add up to it.",
    ), role="lead")
    return Section(section_id, "Which inputs the prediction came from", (lead, *blocks), toc="Attribution",
                   analysis=True)
