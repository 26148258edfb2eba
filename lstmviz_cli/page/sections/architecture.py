"""Architecture: the modules the sample passed through, in call order, with tensor shapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import ArchitectureData, PathStep
from lstmviz_cli.page.model import FigureRef, FigureSpec, Paragraph, Section


def _shapes(value: object) -> tuple[tuple[int, ...], ...]:
    """Shapes from `[2, 3]`, `[[2, 3], [4]]` or None."""
    if not value:
        return ()
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        return (tuple(int(v) for v in value),)
    if isinstance(value, (list, tuple)):
        return tuple(tuple(int(d) for d in shape) for shape in value if isinstance(shape, (list, tuple)))
    return ()


def read_path(meta_path: object, modules: Mapping[str, RecurrentConfig]) -> tuple[PathStep, ...]:
    """The trace's recorded data path (`Trace.meta.path`) as PathSteps, one per module name (calls
    summed); without one, the recurrent modules with shapes from their configs."""
    steps: list[PathStep] = []
    seen: dict[str, int] = {}
    if isinstance(meta_path, (list, tuple)):
        for entry in meta_path:
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("name", ""))
            calls = int(entry.get("calls", 1) or 1)
            if name in seen:  # a module met again (an older path, or interleaved calls): one node
                k = seen[name]
                steps[k] = replace(steps[k], calls=steps[k].calls + calls)
                continue
            seen[name] = len(steps)
            steps.append(
                PathStep(
                    name=name,
                    kind=str(entry.get("type", entry.get("kind", "?"))),
                    inputs=_shapes(entry.get("in", entry.get("input", entry.get("in_shapes")))),
                    outputs=_shapes(entry.get("out", entry.get("output", entry.get("out_shapes")))),
                    calls=calls,
                )
            )
    if steps:
        return tuple(steps)
    for name, cfg in modules.items():
        dirs = 2 if cfg.bidirectional else 1
        steps.append(
            PathStep(name, cfg.kind, ((-1, -1, cfg.input_size),), ((-1, -1, dirs * cfg.output_size),))
        )
    return tuple(steps)


def architecture_section(ctx: PageContext) -> Section:
    section_id = ctx.ids.take("architecture")
    trace = ctx.run.trace
    diagram = FigureSpec(
        id=ctx.ids.take("architecture-diagram"), ref=FigureRef("architecture"),
        data=ArchitectureData(read_path(trace.meta.path, trace.modules), dict(trace.modules)),
        description="Architecture: the model's modules along the data path with tensor shapes.", frame="scroll",
    )
    lead = Paragraph(("The modules the sample passed through, in call order, with the tensor shape on each edge.",),
                     role="lead")
    return Section(section_id, "Architecture", (lead, diagram))
