"""The typed page: a `Page` is a title, sections of typed blocks, and notes; every renderer reads it.

Blocks say *what* is shown (a paragraph, a table, a figure, a highlighted text, findings...), never
how: the HTML renderer (`render.html`) gives each block its markup, `lstmviz figures` writes the
page's figures (`Page.figures()`) as files. Text in blocks is final, display-ready text (user text
already made visible, `glyphs.visible`); renderers escape it. Figures are `FigureSpec`s: an id, a
reference (kind + layer) that findings link to, and the data its plot function draws
(`page.figuredata`), so a figure exists once and every renderer draws it from there.

Every id on a page is given once by `page.ids.Ids` while the page is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from lstmviz_cli.analysis.records import FigureRef
from lstmviz_cli.page.figuredata import DIAGRAM_TYPES, FigureData, FloatArray

__all__ = [
    "Badge", "Banner", "Block", "Card", "Cell", "CheckRow", "Checks", "Definitions", "ExcerptBrowser", "ExcerptLine",
    "ExcerptUnit", "ExplorerSeries", "FigureRef", "FigureSpec", "FindingRow", "Findings", "Grid", "Heading", "Highlight",
    "HypothesisSearch", "Inline", "KeyValue", "KeyValues", "Legend", "LegendItem", "Page",
    "Paragraph", "Row", "Section", "SequencePicker", "Span", "Table", "UnitExplorer", "UnitPicker",
]

# -- inline text -------------------------------------------------------------------------------------
SpanStyle = Literal["user", "code", "sub", "link", "ramp", "ramp-div", "sev-error", "sev-warning", "sev-info", "err"]


@dataclass(frozen=True)
class Span:
    """A piece of text with a role: user text (isolated bidi), code, a subscript, a link, a colour ramp."""

    text: str
    style: SpanStyle = "user"
    href: str = ""  # "link" only: "#id" on the page, or a file next to it (the batch index)
    unit: int | None = None  # "link" to a heatmap only: the unit whose row the page's script outlines
    ref: FigureRef | None = None  # "link" to a figure of this page: its id is the page's (`Page.anchor`)


Inline = str | Span  # a plain str is plain text


def inline(*parts: Inline) -> tuple[Inline, ...]:
    """Parts of one line of text, empty strings dropped."""
    return tuple(part for part in parts if part != "")


# -- blocks ------------------------------------------------------------------------------------------
ParagraphRole = Literal["text", "lead", "reading", "note", "basis", "stamp", "verdict", "verdict-changed"]


@dataclass(frozen=True)
class Paragraph:
    """Running text: a section's lead, the reading of its numbers, a note, a warning stamp, a verdict."""

    block: ClassVar[str] = "paragraph"
    parts: tuple[Inline, ...]
    role: ParagraphRole = "text"
    user: bool = False  # the whole paragraph is user text
    id: str | None = None


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    block: ClassVar[str] = "heading"
    parts: tuple[Inline, ...]


BadgeStatus = Literal["ok", "bad", "warn", "info", "warning", "error"]


@dataclass(frozen=True)
class Badge:
    """A coloured status word: "ok", "differs", "not checked"."""

    status: BadgeStatus
    text: str


@dataclass(frozen=True)
class KeyValue:
    """One row of a key-value table, optionally with a badge and a list of details behind a toggle."""

    key: str
    value: str
    user: bool = True  # the value is user text
    badge: Badge | None = None
    details: tuple[str, ...] = ()
    details_label: str = ""


@dataclass(frozen=True)
class KeyValues:
    block: ClassVar[str] = "keyvalues"
    rows: tuple[KeyValue, ...]


@dataclass(frozen=True)
class Cell:
    """One table cell: its parts, whether it is a number (right-aligned) and how it moved (diff)."""

    parts: tuple[Inline, ...]
    numeric: bool = False
    user: bool = False
    trend: Literal["", "up", "down"] = ""
    span: int = 1  # columns it spans


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...]
    failed: bool = False  # a row about something that failed (the batch index)


@dataclass(frozen=True)
class Table:
    """A table with named columns; `numeric` columns are right-aligned."""

    block: ClassVar[str] = "table"
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    caption: str = ""
    numeric: tuple[bool, ...] = ()  # per column; empty: none
    analysis: bool = False  # a table of the analysis sections (captioned, compact)
    wide: bool = False  # the page's full width (the batch index)


@dataclass(frozen=True)
class FigureSpec:
    """A figure or diagram, not yet drawn: its id, what findings call it, its data and its words.

    `ref.kind` is also its file name in `lstmviz figures` (`heatmaps`, `saturation`...), `ref.prefix`
    its layer. `description` is the one sentence `lstmviz figures` writes in its manifest.
    """

    block: ClassVar[str] = "figure"
    id: str
    ref: FigureRef
    data: FigureData
    description: str
    title: str = ""  # a heading above the figure (the layer's label)
    caption: str = ""
    caption_user: bool = False  # the caption is user text (a layer label)
    frame: Literal["plain", "analysis", "scroll", "unrolled"] = "plain"
    # The batch element this figure shows when its section shows several (a `SequencePicker` chooses
    # which is visible); None: the page's one sequence.
    sequence: int | None = None

    @property
    def is_diagram(self) -> bool:
        """A Graphviz diagram (drawn by `dot`), not a matplotlib plot."""
        return isinstance(self.data, DIAGRAM_TYPES)


Scale = Literal["diverging", "sequential"]


@dataclass(frozen=True)
class Highlight:
    """Text whose tokens are coloured by values: one unit's activation, or the saliency.

    `values` are positions on the colour scale: [−1, 1] for "diverging" (blue negative, red positive),
    [0, 1] for "sequential"; NaN: no value. `titles` are the tooltips (the exact numbers).
    """

    block: ClassVar[str] = "highlight"
    id: str | None
    caption: str
    tokens: tuple[str, ...]
    values: tuple[float, ...]
    titles: tuple[str, ...]
    scale: Scale = "diverging"

    def __post_init__(self) -> None:
        if not len(self.tokens) == len(self.values) == len(self.titles):
            raise ValueError("a Highlight needs one value and one title per token")


@dataclass(frozen=True, eq=False)
class ExplorerSeries:
    """One series of one layer for the unit explorer: `values` is (steps, units) over the shown tokens."""

    label: str  # "lstm · layer 0 · h"
    series: str  # "h" | "c"
    values: FloatArray


@dataclass(frozen=True, eq=False)
class UnitExplorer:
    """The sample text coloured by any unit the reader picks (the page's script colours it from the
    embedded values): every unit of every shown layer's h and c, not a few preselected."""

    block: ClassVar[str] = "explorer"
    id: str
    tokens: tuple[str, ...]  # display text of each token, as the highlighted texts show it
    series: tuple[ExplorerSeries, ...]
    start: int  # step of the first token


@dataclass(frozen=True)
class UnitPicker:
    """A chooser that shows one of the highlighted texts of its section (the page's script fills it)."""

    block: ClassVar[str] = "picker"
    choices: tuple[tuple[str, str], ...]  # (highlight id, label)


@dataclass(frozen=True)
class SequencePicker:
    """A chooser of the sequence of a batched sample whose figures its section shows (the page's script,
    js/sequences.js.j2): the section's figures with `FigureSpec.sequence == k` belong to choice k.
    Without the script every sequence's figures stay shown, each captioned with its sequence."""

    block: ClassVar[str] = "sequences"
    id: str
    choices: tuple[str, ...]  # one label per sequence shown, sequence 0 first: "sequence 0 of 4 (valid steps 60)"


@dataclass(frozen=True)
class ExcerptLine:
    """One context where a unit fires: the text before, the firing token (marked), the text after."""

    before: str
    token: str
    after: str
    value: str  # the unit's value at the token, as shown
    where: str  # "sequence 12, step 80"


@dataclass(frozen=True)
class ExcerptUnit:
    """One unit's top-activating contexts: where it is highest and where it is lowest."""

    key: str  # "lstm/l0/fwd:49" (what the picker selects)
    label: str
    highest: tuple[ExcerptLine, ...]
    lowest: tuple[ExcerptLine, ...]


@dataclass(frozen=True)
class ExcerptBrowser:
    """Every unit's excerpts behind a picker (the page's script); the first unit is shown without it."""

    block: ClassVar[str] = "excerpts"
    id: str
    units: tuple[ExcerptUnit, ...]

    def payload(self) -> list[dict[str, object]]:
        """What the page's script reads: per unit its key, label and [before, token, after, value, where] lines."""
        def lines(found: tuple[ExcerptLine, ...]) -> list[list[str]]:
            return [[e.before, e.token, e.after, e.value, e.where] for e in found]

        return [{"key": u.key, "label": u.label, "highest": lines(u.highest), "lowest": lines(u.lowest)}
                for u in self.units]


@dataclass(frozen=True)
class HypothesisSearch:
    """LSTMVis-style search over the sample: select a span, list the units on inside and off around it.

    `data` is base64 of uint8 values, one per (step, unit) row-major: h quantised to 256 levels on
    [-1, 1] (`page.sections.hypothesis`); the page's script decodes and searches it.
    """

    block: ClassVar[str] = "hypothesis"
    id: str
    tokens: tuple[str, ...]  # display tokens of the steps searched
    units: tuple[str, ...]  # one label per unit column, e.g. "lstm/l0/fwd:49"
    data: str
    threshold: float  # the default "on" level


LegendSwatch = Literal["", "ink", "ramp", "ramp-div", "i", "f", "g", "o", "r", "z", "n", "c", "h"]


@dataclass(frozen=True)
class LegendItem:
    """A legend entry: a gate's colour swatch (or the ink, or a colour ramp) and its meaning."""

    text: str
    swatch: LegendSwatch = ""
    low: str = ""  # a ramp's end labels
    high: str = ""


@dataclass(frozen=True)
class Legend:
    block: ClassVar[str] = "legend"
    items: tuple[LegendItem, ...]


@dataclass(frozen=True)
class FindingRow:
    """One finding: severity, layer, units, the sentence, its numbers and the figure that shows it."""

    severity: str
    layer: str
    units: str
    message: str
    value: str
    threshold: str
    definition: str
    figure: FigureRef | None
    unit_links: tuple[Inline, ...] = ()  # the units as links to their heatmap rows (empty: `units` as text)


@dataclass(frozen=True)
class Findings:
    block: ClassVar[str] = "findings"
    rows: tuple[FindingRow, ...]


@dataclass(frozen=True)
class Banner:
    """A verdict across the page's width: the check passed or failed, with what it rests on."""

    block: ClassVar[str] = "banner"
    status: Literal["pass", "fail"]
    title: str
    parts: tuple[Inline, ...] = ()
    id: str | None = None


@dataclass(frozen=True)
class CheckRow:
    """One case of `lstmviz check`: its words and numbers as shown, and what shows its evidence.

    `figure` is resolved to its id when the page is drawn (like a finding's); `target` is a fixed id
    on the page for evidence that is no figure (the verification card).
    """

    name: str
    message: str
    value: str
    limit: str
    baseline: str
    delta: str
    status: Literal["fail", "pass", "skipped"]
    figure: FigureRef | None = None
    target: str = ""


@dataclass(frozen=True)
class Checks:
    """The check's table: every case, failures first; the baseline columns when a baseline was compared."""

    block: ClassVar[str] = "checks"
    rows: tuple[CheckRow, ...]
    baseline: bool = False


@dataclass(frozen=True)
class Definitions:
    """Terms and what they mean on this page (thresholds in force included)."""

    block: ClassVar[str] = "definitions"
    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Card:
    """A framed group with a small title: the summary's checkpoint, input and prediction facts."""

    block: ClassVar[str] = "card"
    title: str
    blocks: tuple[Block, ...]
    id: str | None = None
    wide: bool = False  # "What lstmviz knows": the full width, below the others


@dataclass(frozen=True)
class Grid:
    """Blocks side by side as the width allows: cards, cell diagrams, highlighted texts."""

    block: ClassVar[str] = "grid"
    items: tuple[Block, ...]
    kind: Literal["cards", "cells", "highlights"]


Block = (
    Paragraph | Heading | KeyValues | Table | FigureSpec | Highlight | UnitPicker | Legend | Findings | Definitions
    | Card | Grid | Banner | Checks | UnitExplorer | ExcerptBrowser | HypothesisSearch | SequencePicker
)


# -- sections and the page ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """One part of the page, with its id, its title and its blocks in reading order."""

    id: str
    title: str
    blocks: tuple[Block, ...]
    toc: str = ""  # the table of contents' label (default: the title)
    analysis: bool = False  # a section of the analysis stage (reading first, then evidence)

    @property
    def toc_label(self) -> str:
        return self.toc or self.title


@dataclass(frozen=True)
class Page:
    """A whole page: report, check report, diff or batch index. Built once, read by every renderer."""

    title: str  # the document title (plain text)
    heading: tuple[Inline, ...]  # the page's h1
    sections: tuple[Section, ...]
    subtitle: str = ""
    intro: tuple[Block, ...] = ()  # blocks between the heading and the first section
    notes: tuple[str, ...] = ()  # analyses skipped and why, shown after the sections
    footer: str = ""
    layout: Literal["report", "plain"] = "report"  # report: contents in a sidebar; plain: one column
    lang: str = "en"
    heading_user: bool = True  # the h1 is user text (a report's title)
    _index: dict[FigureRef, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for block in self.blocks():
            ident = _block_id(block)
            if ident is None:
                continue
            if ident in seen:
                raise ValueError(f"id {ident!r} twice on one page")
            seen.add(ident)
        for section in self.sections:
            if section.id in seen:
                raise ValueError(f"id {section.id!r} twice on one page")
            seen.add(section.id)
        for spec in self.figures():
            if spec.ref in self._index:
                raise ValueError(f"two figures of kind {spec.ref.kind!r} for {spec.ref.prefix!r} on one page")
            self._index[spec.ref] = spec.id

    def blocks(self) -> Iterator[Block]:
        """Every block of the page in reading order, those inside cards and grids included."""
        yield from _walk(self.intro)
        for section in self.sections:
            yield from _walk(section.blocks)

    def figures(self) -> list[FigureSpec]:
        """Every figure and diagram of the page, in page order: what `lstmviz figures` exports."""
        return [block for block in self.blocks() if isinstance(block, FigureSpec)]

    def anchor(self, ref: FigureRef) -> str | None:
        """The id of the figure `ref` names (`#id` links to it), or None when the page does not show it."""
        return self._index.get(ref)

    def evidence(self, row: CheckRow) -> str | None:
        """The id a check row links to: its figure's, else its fixed target when the page has it."""
        if row.figure is not None and (ident := self.anchor(row.figure)) is not None:
            return ident
        return row.target if row.target and self.has_id(row.target) else None

    def has_id(self, ident: str) -> bool:
        """Whether an element of the page (section, figure, card, paragraph...) has this id."""
        return any(section.id == ident for section in self.sections) or any(
            _block_id(block) == ident for block in self.blocks())

    def anchors(self) -> dict[FigureRef, str]:
        """Every figure's reference and its id: what the check's JSON links its cases with."""
        return dict(self._index)

    def toc(self) -> list[tuple[str, str]]:
        """(section id, label) in page order."""
        return [(section.id, section.toc_label) for section in self.sections]

    def pickers(self) -> list[tuple[str, str]]:
        """The highlighted texts a unit picker chooses between: (id, label)."""
        return [choice for block in self.blocks() if isinstance(block, UnitPicker) for choice in block.choices]


def _block_id(block: Block) -> str | None:
    if isinstance(block, Paragraph | FigureSpec | Highlight | Card | Banner | UnitExplorer | ExcerptBrowser
                  | HypothesisSearch | SequencePicker):
        return block.id
    return None


def _walk(blocks: tuple[Block, ...]) -> Iterator[Block]:
    for block in blocks:
        yield block
        if isinstance(block, Card):
            yield from _walk(block.blocks)
        elif isinstance(block, Grid):
            yield from _walk(block.items)
