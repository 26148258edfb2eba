"""State trajectories: c and h of each layer projected on their first two principal components."""

from __future__ import annotations

from lstmviz_cli.analysis.records import Analysis, Trajectory
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import TrajectoryData
from lstmviz_cli.page.model import Definitions, FigureRef, FigureSpec, Paragraph, Section
from lstmviz_cli.page.numbers import percent


def reading(analysis: Analysis) -> str:
    parts = []
    by_prefix: dict[str, dict[str, Trajectory]] = {}
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
                f"components hold {percent(sum(c.explained))} of c's variance and {percent(sum(h.explained))} of h's."
            )
        elif h is not None:
            parts.append(
                f"In {prefix}, h has jumpiness {h.jumpiness:.2f}; the first two components hold "
                f"{percent(sum(h.explained))} of its variance."
            )
    return " ".join(parts)


def trajectories_section(ctx: PageContext) -> Section | None:
    """PCA trajectories of c and h per layer and direction."""
    analysis = ctx.analysis
    if not analysis.trajectories:
        return None
    section_id = ctx.ids.take("state-trajectories")
    labels = {layer.prefix: layer.label for layer in ctx.run.trace.layers}
    tokens = ctx.display_tokens()
    figures = [
        FigureSpec(
            id=ctx.ids.take("fig", "trajectory", prefix), ref=FigureRef("trajectories", prefix),
            data=TrajectoryData(tuple(t for t in analysis.trajectories if t.prefix == prefix), tokens, prefix),
            description=f"States of {labels.get(prefix, prefix)} on their first two principal components.",
            caption=visible(f"{prefix}: states projected on their first two principal components, coloured by time",
                            300),
            frame="analysis",
        )
        for prefix in dict.fromkeys(t.prefix for t in analysis.trajectories)
    ]
    definitions = Definitions((
        ("PC1, PC2", "the two directions of largest variance of the state over the sample (PCA by SVD)"),
        ("jumpiness", "median distance between consecutive states over their RMS distance from the mean: "
         "near 0 a smooth path, near 1.4 independent jumps"),
    ))
    return Section(section_id, "State trajectories", (Paragraph((reading(analysis),), role="reading"), *figures,
                                                       definitions), analysis=True)
