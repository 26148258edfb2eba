"""Figures for papers: publication style, stable file names, every format, and a manifest.

`lstmviz figures` exports exactly the report's figures: `page_items(page)` turns the page's figure
specs (`Page.figures()`) into items drawn by the same functions as the report (`render.draw`).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import graphviz
import matplotlib
import numpy as np
from cycler import cycler
from matplotlib.cm import ScalarMappable
from matplotlib.collections import Collection
from matplotlib.colors import Colormap, ListedColormap, to_hex, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.typing import ColorType, RcKeyType

from lstmviz_cli.errors import InputError, OutputError
from lstmviz_cli.output import GENERATOR_MARKER, is_lstmviz_output, write_atomic, write_json
from lstmviz_cli.page.figuredata import ArchitectureData, CellData, HeatmapData, UnrolledData
from lstmviz_cli.page.model import FigureSpec, Page
from lstmviz_cli.render.draw import diagram, plot
from lstmviz_cli.render.mpl import Canvas, finish

FORMATS = ("pdf", "svg", "png", "pgf")
# Column widths of the common two-column templates (IEEE, ACM, NeurIPS single column ~ 5.5 in).
WIDTHS = {"single": 3.5, "double": 7.16}
MANIFEST_NAME = "figures.json"
PNG_DPI = 300
# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_FIXED_PDF_DATE = b"D:19700101000000Z"
PAGE_HEIGHT = 8.5  # inches: the tallest figure a journal page holds with its caption


@dataclass(frozen=True)
class PublicationStyle:
    """How exported figures look: physical width, colour or grayscale, base font size."""

    width: float = WIDTHS["double"]  # inches; the report's figures are multi-panel: full width by default
    grayscale: bool = False
    font_size: float = 8.0  # points: what a caption-sized label in a paper uses

    def __post_init__(self) -> None:
        if not 1.0 <= self.width <= 20.0:
            raise InputError(f"figure width {self.width!r} in is out of range; use single, double or 1-20 inches")
        if not 4.0 <= self.font_size <= 24.0:
            raise InputError(f"--font-size {self.font_size!r} is out of range; use 4 to 24 points")

    @property
    def canvas(self) -> Canvas:
        """Figures are laid out for the column itself: its width, this font size, a page's height."""
        return Canvas(width=self.width, font=self.font_size, max_height=PAGE_HEIGHT, fill=True)


@dataclass
class FigureItem:
    """One figure of the report, not yet drawn: what it shows and how to build it."""

    figure: str  # short stable id, e.g. "heatmap_f" or "cell_diagram"
    layer: str | None  # the trace prefix "lstm/l0/fwd", or None for whole-model figures
    description: str  # one sentence for the manifest
    build: Callable[[Canvas], Figure | graphviz.Digraph | None]  # a Digraph when kind == "diagram"; None: nothing
    kind: str = "plot"  # "plot" | "diagram"
    subject: str = ""  # written into the file's metadata (the units a heatmap's rows show)


@dataclass
class ManifestEntry:
    """One written file and what it shows (a row of figures.json)."""

    file: str
    figure: str
    description: str
    model: str
    layer: str | None
    format: str
    width_in: float | None = None
    height_in: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _builder(spec: FigureSpec) -> Callable[[Canvas], Figure | graphviz.Digraph | None]:
    data = spec.data
    if isinstance(data, ArchitectureData | CellData | UnrolledData):
        return lambda canvas: diagram(data, canvas)
    return lambda canvas: plot(data, canvas)


def subject(spec: FigureSpec) -> str:
    """What a reader of the file needs beyond its picture: the unit of every heatmap row."""
    data = spec.data
    if isinstance(data, HeatmapData):
        rows = "; ".join(f"{panel.series}: units {', '.join(map(str, panel.units))}" for panel in data.panels)
        return f"{data.label or spec.ref.prefix or ''} rows (top to bottom) {rows}".strip()
    return ""


def page_items(page: Page) -> list[FigureItem]:
    """Every figure and diagram of the page, in page order, as items to export (named by kind and layer).

    The page's other sequences of a batch (its sequence picker) are not exported: a paper's figure is
    of one sequence, the first, or the one `--batch-index` picks.
    """
    return [
        FigureItem(spec.ref.kind, spec.ref.prefix, spec.description, _builder(spec),
                   kind="diagram" if spec.is_diagram else "plot", subject=subject(spec))
        for spec in page.figures() if not spec.sequence
    ]


def parse_width(text: str | float) -> float:
    """`single`, `double` or a number of inches -> inches."""
    if isinstance(text, (int, float)):
        return float(text)
    key = text.strip().lower()
    if key in WIDTHS:
        return WIDTHS[key]
    try:
        value = float(key.removesuffix("in"))
    except ValueError:
        raise InputError(f"--width {text!r} is not single, double or a number of inches (e.g. 5.5)") from None
    PublicationStyle(width=value)  # validates the range
    return value


def check_format(fmt: str) -> str:
    """Normalise and validate an export format; pgf needs a LaTeX installation to measure text."""
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "pgf":
        texsystem = matplotlib.rcParams["pgf.texsystem"]
        if shutil.which(texsystem) is None:
            raise InputError(
                f"--format pgf needs LaTeX ({texsystem!r} not found on PATH); install TeX Live or use --format pdf"
            )
    return fmt


def sanitize(part: str) -> str:
    """A file-name-safe, stable fragment: letters, digits, '-' only ('lstm.0/x' -> 'lstm-0-x')."""
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", part).strip("-").lower()
    return cleaned or "x"


def export_name(model: str, layer: str | None, figure: str, ext: str) -> str:
    """`<model>_<layer>_<dir>_<figure>.<ext>`; whole-model figures use `model` for layer and dir."""
    if layer:
        module, _, rest = layer.rpartition("/")  # "enc.lstm/l0/fwd" -> ("enc.lstm/l0", "fwd")
        module_name, _, level = module.rpartition("/")
        layer_part = f"{sanitize(module_name)}-{sanitize(level)}" if module_name else sanitize(module)
        direction = sanitize(rest)
    else:
        layer_part, direction = "model", "all"
    return f"{sanitize(model)}_{layer_part}_{direction}_{sanitize(figure)}.{ext}"


def model_stem(checkpoint_name: str) -> str:
    """`charlm.pt` -> `charlm`, `m.ts.pt` -> `m-ts`: the model part of every exported name."""
    name = Path(checkpoint_name).name
    for suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return sanitize(name)


# -- publication style ---------------------------------------------------------------------------
def publication_rc(style: PublicationStyle) -> dict[RcKeyType, Any]:
    """rcParams for print: embedded TrueType fonts, small consistent sizes, thin lines, CB-safe cycle."""
    size = style.font_size
    colors = [_to_gray(c) for c in OKABE_ITO] if style.grayscale else list(OKABE_ITO)
    rc: dict[RcKeyType, Any] = {
        "pdf.fonttype": 42,  # TrueType, embedded: journals reject Type 3 fonts
        "ps.fonttype": 42,
        "svg.fonttype": "path",  # the SVG renders the same without the font installed
        "svg.hashsalt": "lstmviz",
        "pdf.compression": 6,
        "font.family": "sans-serif",
        "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: same output on every machine
        "mathtext.fontset": "dejavusans",
        "font.size": size,
        "axes.titlesize": size,
        "axes.labelsize": size,
        "xtick.labelsize": size - 1,
        "ytick.labelsize": size - 1,
        "legend.fontsize": size - 1,
        "figure.titlesize": size + 1,
        "axes.linewidth": 0.6,
        "lines.linewidth": 1.0,
        "xtick.major.width": 0.5,
        "ytick.major.width": 0.5,
        "axes.prop_cycle": cycler(color=colors),
        "savefig.dpi": PNG_DPI,
        "savefig.bbox": None,  # keep the exact page size asked for
        "pgf.rcfonts": False,
        "pgf.preamble": "",
        "text.usetex": False,
    }
    if style.grayscale:
        rc["axes.prop_cycle"] = cycler(color=colors) + cycler(linestyle=["-", "--", ":", "-."] * 2)
        rc["image.cmap"] = "gray"
    return rc


@contextlib.contextmanager
def publication_context(style: PublicationStyle) -> Iterator[None]:
    """Figures built (not only saved) inside this context take the print style: fonts are set at creation."""
    with matplotlib.rc_context(publication_rc(style)):
        yield


def _to_gray(color: ColorType) -> str:
    r, g, b, a = to_rgba(color)
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b  # Rec. 709 luminance
    return to_hex((y, y, y, a), keep_alpha=a < 1)


def _gray_cmap(cmap: Colormap) -> ListedColormap:
    """The colormap's own luminance as a gray ramp, so light/dark order is kept (viridis, RdBu...)."""
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    y = 0.2126 * rgba[:, 0] + 0.7152 * rgba[:, 1] + 0.0722 * rgba[:, 2]
    if abs(y[-1] - y[0]) < 0.25:  # diverging: both ends about as dark; a plain ramp keeps the sign readable
        y = np.linspace(0.0, 1.0, 256)
    return ListedColormap(np.stack([y, y, y, rgba[:, 3]], axis=1), name=f"{cmap.name}_gray")


def apply_grayscale(fig: Figure) -> None:
    """Convert every artist's colour to its luminance; colormaps become gray ramps of the same order."""
    for artist in fig.findobj():
        if isinstance(artist, ScalarMappable) and artist.get_array() is not None:
            artist.set_cmap(_gray_cmap(artist.get_cmap()))
        if isinstance(artist, Line2D):
            artist.set_color(_to_gray(artist.get_color()))
            artist.set_markerfacecolor(_to_gray(artist.get_markerfacecolor()))
            artist.set_markeredgecolor(_to_gray(artist.get_markeredgecolor()))
        elif isinstance(artist, Collection):
            if not (isinstance(artist, ScalarMappable) and artist.get_array() is not None):
                faces = artist.get_facecolor()
                if len(faces):
                    artist.set_facecolor([_to_gray(cast(ColorType, c)) for c in faces])
            edges = artist.get_edgecolor()
            if len(edges):
                artist.set_edgecolor([_to_gray(cast(ColorType, c)) for c in edges])
        elif isinstance(artist, Patch):
            artist.set_facecolor(_to_gray(artist.get_facecolor()))
            artist.set_edgecolor(_to_gray(artist.get_edgecolor()))
        elif isinstance(artist, Text):
            artist.set_color(_to_gray(artist.get_color()))
    for ax in fig.axes:
        ax.set_facecolor(_to_gray(ax.get_facecolor()))


def latex_escape(text: str) -> str:
    """Escape LaTeX specials in plain-text labels (tokens, module names) for pgf output; keeps $math$."""
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    parts = re.split(r"(\$[^$]+\$)", text)
    out = []
    for part in parts:
        if part.startswith("$") and part.endswith("$") and len(part) > 1:
            out.append(part)
        else:
            out.append("".join(specials.get(ch, ch) for ch in part).replace("$", r"\$"))
    return "".join(out)


def _escape_texts_for_pgf(fig: Figure) -> None:
    for artist in fig.findobj(Text):
        text = artist.get_text()
        if text:
            artist.set_text(latex_escape(text))


# -- writing -------------------------------------------------------------------------------------
def figure_bytes(fig: Figure, fmt: str, *, grayscale: bool = False, subject: str = "") -> bytes:
    """Render one matplotlib Figure deterministically (no dates, fixed ids) in `fmt`, laid out once
    and its tick labels thinned where they would overlap (`render.mpl.finish`).

    `subject` goes into the file's metadata (PDF Subject, SVG and PNG Description).
    """
    finish(fig)
    if grayscale:
        apply_grayscale(fig)
    buffer = io.BytesIO()
    if fmt == "pdf":
        metadata: dict[str, Any] = {"Creator": GENERATOR_MARKER, "Producer": None, "CreationDate": None}
        if subject:
            metadata["Subject"] = subject
    elif fmt == "svg":
        metadata = {"Creator": GENERATOR_MARKER, "Date": None}
        if subject:
            metadata["Description"] = subject
    elif fmt == "png":
        metadata = {"Software": GENERATOR_MARKER}
        if subject:
            metadata["Description"] = subject
    else:  # pgf writes a header comment only
        metadata = {}
        _escape_texts_for_pgf(fig)
    fig.savefig(buffer, format=fmt, metadata=metadata or None, dpi=PNG_DPI if fmt == "png" else None)
    data = buffer.getvalue()
    if fmt == "pgf":
        data = f"%% {GENERATOR_MARKER}\n".encode() + data
        if subject:
            data = f"%% {subject}\n".encode() + data
    return data


def diagram_bytes(graph: graphviz.Digraph, fmt: str, *, grayscale: bool = False, width: float | None = None) -> bytes:
    """Render a graphviz Digraph with `dot` in the same format; pgf falls back to pdf (dot has no pgf).

    With `width`, a diagram wider than the column is scaled down to it (never up).
    """
    source = graph.copy()
    if width is not None:
        # size excludes margin and pad: drop the margin and keep a thin pad inside the width.
        source.attr(margin="0", pad="0.04", size=f"{width - 0.08:g},{3 * width:g}")
    render_format = "pdf" if fmt == "pgf" else fmt
    if render_format == "png":
        source.attr(dpi=str(PNG_DPI))
    if grayscale:
        source = _gray_dot(source)
    data: bytes = source.pipe(format=render_format)
    if render_format == "pdf":
        # cairo stamps the wall clock; an equal-length fixed date keeps the xref offsets valid.
        data = re.sub(rb"D:\d{14}[^)]*", lambda m: _FIXED_PDF_DATE.ljust(len(m.group(0)), b" "), data)
        # ...and names itself as producer, "(cairo 1.16.0 (https://cairographics.org))": a PDF string
        # with balanced parentheses. Replaced whole, at the same length, by our marker.
        data = _PRODUCER.sub(lambda m: _producer(len(m.group(1))), data)
    if render_format == "svg":
        data = data.replace(b"<svg", f"<!-- {GENERATOR_MARKER} -->\n<svg".encode(), 1)
    return data


# A PDF literal string: balanced parentheses (two levels are all cairo writes) and backslash escapes.
_PDF_STRING = rb"\(((?:[^()\\]|\\.|\((?:[^()\\]|\\.|\((?:[^()\\]|\\.)*\))*\))*)\)"
_PRODUCER = re.compile(rb"/Producer " + _PDF_STRING, re.S)


def _producer(length: int) -> bytes:
    """`/Producer (lstmviz-generated   )` with `length` bytes inside the parentheses (xref offsets stay valid)."""
    marker = GENERATOR_MARKER.encode()
    return b"/Producer (" + (marker if len(marker) <= length else b"lstmviz")[:length].ljust(length, b" ") + b")"


def _gray_dot(graph: graphviz.Digraph) -> graphviz.Source:
    """Replace every #rrggbb colour in the DOT source by its luminance."""
    text = re.sub(r"#[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?", lambda m: _to_gray(m.group(0)), graph.source)
    return graphviz.Source(text)


def manifest_owned(out_dir: Path) -> set[str]:
    """File names an earlier lstmviz run listed in `out_dir/figures.json` (ours to replace)."""
    path = out_dir / MANIFEST_NAME
    if not is_lstmviz_output(path):
        return set()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {entry["file"] for entry in data.get("figures", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def write_manifest(out_dir: Path, entries: list[ManifestEntry], style: PublicationStyle, fmt: str, *,
                   force: bool, failures: dict[str, str] | None = None) -> Path:
    """figures.json: every file with what it shows, sorted, with the style used (deterministic)."""
    document = {
        "format": fmt,
        "style": asdict(style),
        "figures": [asdict(e) for e in sorted(entries, key=lambda e: e.file)],
        "failed": dict(sorted((failures or {}).items())),
    }
    path = out_dir / MANIFEST_NAME
    write_json(path, document, force=force)
    return path


def export_items(items: list[FigureItem], *, model: str, out_dir: Path, fmt: str, style: PublicationStyle,
                 force: bool = False, owned: set[str] | None = None) -> list[ManifestEntry]:
    """Build every item inside the publication style and write it; returns the manifest rows.

    A file is replaced when lstmviz wrote it (its marker, or listed in the old manifest) or with --force.
    """
    owned = owned if owned is not None else manifest_owned(out_dir)
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for item in items:
        name = export_name(model, item.layer, item.figure, "pdf" if (item.kind == "diagram" and fmt == "pgf") else fmt)
        if name in seen:
            raise OutputError(f"two figures map to the same file name {name!r}; rename one of the modules")
        seen.add(name)
        with publication_context(style):
            built = item.build(style.canvas)
            if built is None:  # a builder with nothing to show for this model
                continue
            if isinstance(built, graphviz.Digraph):
                data = diagram_bytes(built, fmt, grayscale=style.grayscale, width=style.width)
                size: tuple[float | None, float | None] = (None, None)
            else:
                width, height = (round(float(v), 3) for v in built.get_size_inches())
                size = (width, height)
                data = figure_bytes(built, fmt, grayscale=style.grayscale, subject=item.subject)
        path = out_dir / name
        write_atomic(path, data, force=force or name in owned)
        entries.append(ManifestEntry(
            file=name, figure=item.figure, description=item.description, model=model, layer=item.layer,
            format=path.suffix.lstrip("."), width_in=size[0], height_in=size[1],
        ))
    return entries
