"""`lstmviz figures`: publication style, stable names, PDF page size and embedded fonts, manifest."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, numpy_trace
from conftest_papers import sample

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.cli import main
from lstmviz_cli.commands import pipeline
from lstmviz_cli.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_SOME_FAILED,
    InputError,
    OutputError,
)
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.build import report_page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render import paper as export
from lstmviz_cli.render.mpl import SCREEN, Canvas, new_figure

pypdf = pytest.importorskip("pypdf")
VIEW = ViewOptions()


def _plot(canvas: Canvas = SCREEN) -> object:
    """A figure laid out for its canvas, as the report's plot functions do: its width, its font size."""
    fig = new_figure(canvas.width, canvas.width / 2)
    ax = fig.subplots()
    ax.plot(np.arange(10), np.arange(10) ** 0.5, color="#D55E00", label="forget gate $f_t$")
    ax.set_xlabel("time step", fontsize=canvas.small)
    ax.set_title("lstm/l0/fwd", fontsize=canvas.font)
    ax.legend()
    return fig


def _items() -> list[export.FigureItem]:
    import graphviz

    def diagram(_canvas: Canvas) -> graphviz.Digraph:
        graph = graphviz.Digraph("g")
        graph.node("a", "x_t", color="#0072B2")
        graph.node("b", "h_t" * 30)  # wider than a column: scaled down to it
        graph.edge("a", "b")
        return graph

    return [
        export.FigureItem("curve", "enc.lstm/l1/bwd", "a test curve", _plot),
        export.FigureItem("cell", "enc.lstm/l1/bwd", "a test diagram", diagram, kind="diagram"),
        export.FigureItem("nothing", None, "a builder with nothing to show", lambda _canvas: None),
    ]


def _fonts(page: object) -> list[tuple[str, str, bool]]:
    """(subtype, base font, embedded) of every font a PDF page uses, descendant fonts included.

    TrueType shows as /TrueType, or /Type0//CIDFontType2 (TrueType outlines behind a composite font).
    """
    found = []
    fonts = page["/Resources"].get_object().get("/Font", {})
    for ref in fonts.values():
        font = ref.get_object()
        subtype = str(font["/Subtype"])
        descriptor = font.get("/FontDescriptor")
        if descriptor is None and "/DescendantFonts" in font:
            descendant = font["/DescendantFonts"][0].get_object()
            subtype = f"{subtype}/{descendant['/Subtype']}"
            descriptor = descendant.get("/FontDescriptor")
        descriptor = descriptor.get_object() if descriptor is not None else {}
        embedded = any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))
        found.append((subtype, str(font.get("/BaseFont")), embedded))
    return found


# -- names and options --------------------------------------------------------------------------------
def test_stable_sanitized_names() -> None:
    assert export.export_name("charlm", "lstm/l0/fwd", "heatmaps", "pdf") == "charlm_lstm-l0_fwd_heatmaps.pdf"
    assert export.export_name("m", "enc.lstm/l1/bwd", "cell", "svg") == "m_enc-lstm-l1_bwd_cell.svg"
    assert export.export_name("m", None, "architecture", "png") == "m_model_all_architecture.png"
    assert export.export_name("m", "<script>/l0/fwd", "x y", "pdf") == "m_script-l0_fwd_x-y.pdf"
    assert export.model_stem("runs/epoch 3.safetensors") == "epoch-3"
    assert export.model_stem("sine.ts.pt") == "sine-ts"


def test_width_and_format_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert export.parse_width("single") == 3.5 and export.parse_width("double") == 7.16
    assert export.parse_width("5.5") == 5.5 and export.parse_width("5in") == 5.0
    for bad in ("wide", "0.2", "40"):
        with pytest.raises(InputError):
            export.parse_width(bad)
    assert export.check_format(".PDF") == "pdf"
    with pytest.raises(InputError, match="not one of pdf, svg, png, pgf"):
        export.check_format("eps")
    monkeypatch.setattr(export.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="--format pgf needs LaTeX"):
        export.check_format("pgf")


def test_latex_escape_keeps_math() -> None:
    assert export.latex_escape("lstm_0 50% #1 & $f_t$") == r"lstm\_0 50\% \#1 \& $f_t$"


def test_publication_rc_embeds_truetype_and_uses_a_colour_blind_safe_cycle() -> None:
    rc = export.publication_rc(export.PublicationStyle())
    assert rc["pdf.fonttype"] == 42 and rc["ps.fonttype"] == 42
    assert rc["axes.prop_cycle"].by_key()["color"][:3] == ["#0072B2", "#D55E00", "#009E73"]
    gray = export.publication_rc(export.PublicationStyle(grayscale=True))
    colors = gray["axes.prop_cycle"].by_key()["color"]
    assert all(re.fullmatch(r"#(..)\1\1", c) for c in colors)  # r == g == b


# -- writing --------------------------------------------------------------------------------------------
def test_pdf_has_the_column_width_and_embedded_truetype_fonts(tmp_path: Path) -> None:
    style = export.PublicationStyle(width=export.parse_width("single"))
    entries = export.export_items(_items(), model="m", out_dir=tmp_path, fmt="pdf", style=style)
    assert [e.file for e in entries] == ["m_enc-lstm-l1_bwd_curve.pdf", "m_enc-lstm-l1_bwd_cell.pdf"]
    plot = pypdf.PdfReader(tmp_path / entries[0].file)
    assert len(plot.pages) == 1
    box = plot.pages[0].mediabox
    assert float(box.width) == pytest.approx(3.5 * 72) and float(box.height) == pytest.approx(3.5 * 72 / 2, abs=1)
    assert (entries[0].width_in, entries[0].height_in) == (3.5, 1.75)
    fonts = _fonts(plot.pages[0])
    assert fonts and all(embedded for _, _, embedded in fonts)
    truetype = ("/TrueType", "/Type0//CIDFontType2")
    assert all(subtype in truetype for subtype, _, _ in fonts), fonts  # never Type 3
    assert any("DejaVuSans" in name for _, name, _ in fonts)
    diagram = pypdf.PdfReader(tmp_path / entries[1].file)
    assert float(diagram.pages[0].mediabox.width) <= 3.5 * 72 + 0.5  # scaled down to the column
    assert all(embedded for _, _, embedded in _fonts(diagram.pages[0]))


def test_figures_are_laid_out_for_the_column_and_font_size(tmp_path: Path) -> None:
    """The export draws each figure for the column (no screen figure shrunk): its text has the
    publication size, whatever the width."""
    from matplotlib.text import Text

    seen: list[Canvas] = []

    def build(canvas: Canvas) -> object:
        seen.append(canvas)
        return _plot(canvas)

    for width, font in ((3.5, 8.0), (7.16, 9.0)):
        style = export.PublicationStyle(width=width, font_size=font)
        item = export.FigureItem("curve", "lstm/l0/fwd", "a curve", build)
        entry = export.export_items([item], model="m", out_dir=tmp_path, fmt="svg", style=style, force=True)[0]
        assert seen[-1] == Canvas(width=width, font=font, max_height=export.PAGE_HEIGHT, fill=True)
        assert entry.width_in == width
        fig = _plot(seen[-1])
        sizes = {t.get_text(): t.get_fontsize() for t in fig.findobj(Text) if t.get_text()}
        assert sizes["lstm/l0/fwd"] == font and sizes["time step"] == font - 1
    with pytest.raises(InputError, match="--font-size"):
        export.PublicationStyle(font_size=2.0)


def test_outputs_are_byte_identical_across_runs(tmp_path: Path) -> None:
    style = export.PublicationStyle()
    for fmt in ("pdf", "svg", "png"):
        first = {e.file: (tmp_path / e.file).read_bytes()
                 for e in export.export_items(_items(), model="m", out_dir=tmp_path, fmt=fmt, style=style)}
        second = {e.file: (tmp_path / e.file).read_bytes()
                  for e in export.export_items(_items(), model="m", out_dir=tmp_path, fmt=fmt, style=style, force=True)}
        assert first == second, fmt
    pdf = (tmp_path / "m_enc-lstm-l1_bwd_cell.pdf").read_bytes()
    assert b"D:19700101000000Z" in pdf  # Graphviz's wall-clock date replaced
    assert b"/Producer (lstmviz-generated" in pdf and pypdf.PdfReader(tmp_path / "m_enc-lstm-l1_bwd_cell.pdf").pages


def test_png_resolution_and_svg_marker(tmp_path: Path) -> None:
    style = export.PublicationStyle(width=3.5)
    export.export_items(_items()[:1], model="m", out_dir=tmp_path, fmt="png", style=style)
    from PIL import Image  # matplotlib depends on Pillow

    with Image.open(tmp_path / "m_enc-lstm-l1_bwd_curve.png") as image:
        assert image.size == (1050, 525)  # 3.5 in x 300 dpi
    export.export_items(_items()[:2], model="m", out_dir=tmp_path, fmt="svg", style=style)
    for name in ("m_enc-lstm-l1_bwd_curve.svg", "m_enc-lstm-l1_bwd_cell.svg"):
        assert "lstmviz-generated" in (tmp_path / name).read_text()


def test_grayscale_leaves_no_colour(tmp_path: Path) -> None:
    style = export.PublicationStyle(grayscale=True)
    export.export_items(_items()[:2], model="m", out_dir=tmp_path, fmt="svg", style=style)
    for name in ("m_enc-lstm-l1_bwd_curve.svg", "m_enc-lstm-l1_bwd_cell.svg"):
        text = (tmp_path / name).read_text()
        colours = set(re.findall(r"#[0-9a-fA-F]{6}\b", text))
        assert colours, name
        assert all(c[1:3].lower() == c[3:5].lower() == c[5:7].lower() for c in colours), (name, colours)


def test_refuses_foreign_files_but_replaces_its_own(tmp_path: Path) -> None:
    style = export.PublicationStyle()
    (tmp_path / "m_enc-lstm-l1_bwd_curve.pdf").write_bytes(b"%PDF-1.4 my paper's figure")
    with pytest.raises(OutputError, match="pass --force"):
        export.export_items(_items(), model="m", out_dir=tmp_path, fmt="pdf", style=style)
    assert (tmp_path / "m_enc-lstm-l1_bwd_curve.pdf").read_bytes() == b"%PDF-1.4 my paper's figure"
    entries = export.export_items(_items(), model="m", out_dir=tmp_path, fmt="pdf", style=style, force=True)
    export.write_manifest(tmp_path, entries, style, "pdf", force=False)
    # A PDF's own marker sits at its end; the manifest is what lets the next run replace it.
    assert export.manifest_owned(tmp_path) == {e.file for e in entries}
    export.export_items(_items(), model="m", out_dir=tmp_path, fmt="pdf", style=style)


def _items_of(run: object, view: ViewOptions = VIEW) -> tuple[list[export.FigureItem], object]:
    page = report_page(run, analyze_run(run, AnalysisOptions()), view)
    return export.page_items(page), page


def test_report_items_cover_every_layer() -> None:
    run = make_run(numpy_trace("LSTM", num_layers=2, bidirectional=True, proj_size=3), name="sine.pt")
    items, _ = _items_of(run)
    names = {(i.figure, i.layer) for i in items}
    for prefix in ("lstm/l0/fwd", "lstm/l0/bwd", "lstm/l1/fwd", "lstm/l1/bwd"):
        for figure in ("cell", "heatmaps", "weights", "saturation", "trajectories", "activity"):
            assert (figure, prefix) in names
    assert {("architecture", None), ("unrolled", None), ("gate-stats", None)} <= names
    assert len({export.export_name("sine", i.layer, i.figure, "pdf") for i in items}) == len(items)


def test_exported_figures_are_exactly_the_reports() -> None:
    """`lstmviz figures` writes `Page.figures()`: every figure of the page, the analysis ones included."""
    from conftest import TEXT

    run = make_run(numpy_trace("LSTM", steps=len(TEXT), hidden_size=6), name="charlm.pt", text=TEXT)
    items, page = _items_of(run)
    assert [(i.figure, i.layer, i.description) for i in items] == [
        (spec.ref.kind, spec.ref.prefix, spec.description) for spec in page.figures()]
    assert {"units", "activity", "saturation", "gate-stats"} <= {i.figure for i in items}
    assert [i.kind for i in items].count("diagram") == 3  # architecture, cell, unrolled


# -- the command ------------------------------------------------------------------------------------------
def test_cli_two_models_manifest_and_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    runs = {
        "a.pt": make_run(numpy_trace("LSTM", hidden_size=4, steps=8), name="a.pt"),
        "b.pt": make_run(numpy_trace("GRU", hidden_size=4, steps=8, module="gru"), name="b.pt"),
    }

    def load(options):  # noqa: ANN001, ANN202
        name = Path(options.checkpoint).name
        if name not in runs:
            raise InputError(f"{name!r} is not a checkpoint")
        return runs[name]

    monkeypatch.setattr(pipeline, "load_and_trace", load)
    for name in ("a.pt", "b.pt", "broken.pt"):
        (tmp_path / name).write_bytes(b"x")
    out = tmp_path / "figs"
    code = main(["figures", str(tmp_path / "*.pt"), "-o", str(out), "--format", "svg", "--width", "single"])
    assert code == EXIT_SOME_FAILED == 1  # one checkpoint failed; the others were written
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["lstmviz: error: 'broken.pt' is not a checkpoint"]  # named once
    manifest = json.loads((out / "figures.json").read_text())
    files = [f["file"] for f in manifest["figures"]]
    assert files == sorted(files) and all((out / f).exists() for f in files)
    assert "a_lstm-l0_fwd_heatmaps.svg" in files and "b_gru-l0_fwd_cell.svg" in files
    assert {f["model"] for f in manifest["figures"]} == {"a", "b"}
    assert manifest["failed"] == {"broken.pt": "'broken.pt' is not a checkpoint"}
    assert manifest["style"]["width"] == 3.5
    entry = next(f for f in manifest["figures"] if f["file"] == "a_lstm-l0_fwd_heatmaps.svg")
    assert entry["layer"] == "lstm/l0/fwd" and "heatmaps" in entry["description"]


def test_figures_of_one_refused_checkpoint_exit_2_with_one_line_and_no_manifest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """QA S8: a single checkpoint is no batch: its own exit code and line, nothing written."""
    (tmp_path / "bn_sd.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "figs"
    assert main(["figures", str(tmp_path / "bn_sd.pt"), "-o", str(out)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith(f"lstmviz: error: {str(tmp_path / 'bn_sd.pt')!r} is not a checkpoint lstmviz can read")
    assert line.count("bn_sd.pt") == 1 and captured.out == ""
    assert not (out / "figures.json").exists() and not any(out.iterdir())


def test_figures_of_one_crashing_checkpoint_exit_3_and_a_batch_that_all_fails_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def load(options):  # noqa: ANN001, ANN202
        if Path(options.checkpoint).name == "refused.pt":
            raise InputError("the sample has 3 features per step, the model reads 4")
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(pipeline, "load_and_trace", load)
    for name in ("crash.pt", "refused.pt"):
        (tmp_path / name).write_bytes(b"x")
    out = tmp_path / "figs"
    assert main(["figures", str(tmp_path / "crash.pt"), "-o", str(out)]) == EXIT_INTERNAL
    assert capsys.readouterr().err.splitlines() == [
        "lstmviz: internal error: ZeroDivisionError: division by zero (run with --debug for the traceback)"]
    assert main(["figures", str(tmp_path / "*.pt"), "-o", str(out)]) == EXIT_SOME_FAILED
    captured = capsys.readouterr()
    assert captured.out.strip() == "wrote 0 figures (no figures.json)"
    assert captured.err.splitlines() == [  # each named once, a message that does not name the file gets its name
        "lstmviz: error: crash.pt: internal error: ZeroDivisionError: division by zero",
        "lstmviz: error: refused.pt: the sample has 3 features per step, the model reads 4",
    ]
    assert not (out / "figures.json").exists()


@pytest.mark.slow
def test_sample_model_pdfs_open_with_page_size_and_fonts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = sample("gru_digitsum.safetensors")
    assert main(["figures", str(model), "-o", str(tmp_path), "--width", "double"]) == 0
    manifest = json.loads((tmp_path / "figures.json").read_text())
    files = {f["figure"]: f for f in manifest["figures"]}
    assert {"architecture", "unrolled", "cell", "heatmaps", "weights", "gate-stats", "saturation", "saliency",
            "trajectories", "activity"} <= set(files)
    for entry in manifest["figures"]:
        reader = pypdf.PdfReader(tmp_path / entry["file"])
        page = reader.pages[0]
        if entry["width_in"] is not None:  # matplotlib figures: exactly the double column
            assert float(page.mediabox.width) == pytest.approx(7.16 * 72, abs=0.5)
            assert float(page.mediabox.height) == pytest.approx(entry["height_in"] * 72, abs=0.5)
        else:  # diagrams: at most the column
            assert float(page.mediabox.width) <= 7.16 * 72 + 0.5
        fonts = _fonts(page)
        assert fonts and all(embedded for _, _, embedded in fonts), entry["file"]
        assert all(subtype in ("/TrueType", "/Type0//CIDFontType2") for subtype, _, _ in fonts), entry["file"]


def test_view_options_choose_the_layers_exported() -> None:
    run = make_run(numpy_trace("LSTM", num_layers=2, bidirectional=True), name="sine.pt")
    view = ViewOptions(layers="lstm/l1", steps="0:6")
    items, _ = _items_of(run, view)
    layers = {i.layer for i in items if i.layer is not None}
    assert layers == {"lstm/l1/fwd", "lstm/l1/bwd"}
