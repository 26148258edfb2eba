"""`lstmviz_cli.report(model, sample)`: the report of a model object (or a checkpoint) from Python, as a `Report`.

The same stages as `lstmviz report`: a loaded-model record (`api.memory.module_loaded` for a model
object, `loading.checkpoint` for a path), `commands.pipeline.trace_loaded`, `commands.report.report_stages`
(analysis, `--layers`, the page), `render.html.render_html`. So `Report.save` writes the page the CLI
writes: byte for byte for a checkpoint path; for a model object the page differs only where it says
where the model came from (in memory, not a file) and what the sample was (a tensor, not a file).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from lstmviz_cli.analysis.measures import Measure, measure_run, scalars
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.analysis.serialize import report_json
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.api.display import DEFAULT_HEIGHT, iframe_html, open_in_browser, temporary_page
from lstmviz_cli.api.memory import Vocab, module_loaded, preserved
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.commands.report import report_stages
from lstmviz_cli.errors import InputError
from lstmviz_cli.loading.budget import parse_memory_size
from lstmviz_cli.loading.inputs import load_sample
from lstmviz_cli.loading.records import LoadedModel, SampleInput
from lstmviz_cli.output import check_writable, json_text, write_atomic
from lstmviz_cli.page.model import Page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render import draw
from lstmviz_cli.render.html import render_html
from lstmviz_cli.render.jobs import default_workers
from lstmviz_cli.render.paper import model_stem
from lstmviz_cli.tracing.records import Run, Trace

if TYPE_CHECKING:  # matplotlib is imported by render/ when figures are drawn
    from matplotlib.figure import Figure

Sample = torch.Tensor | np.ndarray | Sequence[int] | Sequence[Sequence[float]] | str | os.PathLike[str]


class Report:
    """One model traced on one sample, analyzed, and its page built: what `lstmviz report` writes.

    `save(path)` writes the self-contained HTML page, `summary` is the typed analysis behind `--json`
    (`to_json()` its JSON), `measures` the run's named measures (`scalars()` for trackers), `trace` every
    recorded series,
    `figures()` the page's plots as matplotlib Figures. In a notebook the report shows itself inline.
    """

    def __init__(self, run: Run, analysis: Analysis, page: Page, *, workers: int | None = None) -> None:
        self.run = run
        self.page = page
        self._analysis = analysis
        self._workers = workers
        self.path: Path | None = None  # where `save` last wrote the page
        self.height = DEFAULT_HEIGHT  # the notebook frame's height in pixels

    # -- the records ------------------------------------------------------------------------------
    @property
    def trace(self) -> Trace:
        """Every gate and state of every recurrent layer: `trace["lstm/l0/fwd/f"]` is (batch, time, units)."""
        return self.run.trace

    @property
    def summary(self) -> Analysis:
        """The typed analysis the page and `--json` are built from (cut to `layers=` like the page)."""
        return self._analysis

    @cached_property
    def measures(self) -> tuple[Measure, ...]:
        """The run's named measures (`analysis.measures`): gate means and stds, saturation, dead units, |c| and
        its growth per layer, memory horizon, verification error; what `--json` writes as "measures" and
        `lstmviz check --baseline` compares. Cut to `layers=` like the page."""
        return tuple(measure_run(self.run.trace, self._analysis))

    def scalars(self) -> dict[str, float]:
        """The measures as a flat {tag: value} for TensorBoard, W&B or MLflow ("lstm/l0/fwd/gate_mean_f", ...,
        "memory_horizon"; `analysis.measures.scalars`), leaving out those without a value."""
        return scalars(self.measures)

    def to_json(self) -> dict[str, object]:
        """The JSON summary `lstmviz report --json` writes (schema: `analysis.serialize`)."""
        return report_json(self._analysis, self.measures, self.page.anchor)

    @property
    def notes(self) -> list[str]:
        """What the CLI prints on stderr after a report (the tensor accounting of a rebuild)."""
        return list(self.run.notes)

    # -- outputs ----------------------------------------------------------------------------------
    @cached_property
    def html(self) -> str:
        """The self-contained page (drawn on first use: the figures take most of a report's time)."""
        with warnings.catch_warnings():
            # Python 3.12 warns when a process with threads (a notebook kernel) forks the figure workers;
            # they only draw with matplotlib and dot (render.jobs).
            warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks.*")
            return render_html(self.page, workers=self._workers or default_workers())

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the page (atomically); a file lstmviz did not write is replaced only with `force`.

        Raises OutputError (one line) when the file cannot or must not be written.
        """
        target = Path(path)
        check_writable(target, force=force)
        write_atomic(target, self.html, force=force)
        self.path = target
        return target

    def save_json(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the JSON summary, as `lstmviz report --json` does."""
        target = Path(path)
        write_atomic(target, json_text(self.to_json()), force=force)
        return target

    def figures(self) -> dict[str, Figure]:
        """The page's plots as matplotlib Figures by their page id, in page order (diagrams are Graphviz: left out).

        Drawn by the functions that draw the page (`render.draw.plot` over `page.figures()`).
        """
        drawn: dict[str, Figure] = {}
        for spec in self.page.figures():
            if spec.is_diagram:
                continue
            figure = draw.plot(spec.data)  # type: ignore[arg-type]  # not a diagram: plot data
            if figure is not None:
                drawn[spec.id] = figure
        return drawn

    def show(self) -> Path:
        """Open the page in the default browser; the file `save` wrote, else one in the temporary folder.

        Returns the page's path. Where no browser can be started (a server, a container) it says so on
        stderr, as `lstmviz report --open` does, and the path is still returned.
        """
        path = self.path if self.path is not None and self.path.is_file() else temporary_page(
            self.html, model_stem(self.run.loaded.info.name) or "report")
        if not open_in_browser(path):
            print(f"lstmviz: note: no browser could be started; open {path} yourself", file=sys.stderr)
        return path

    def _repr_html_(self) -> str:
        """Jupyter: the page inline, isolated in an iframe (its own styles, script and CSP)."""
        return iframe_html(self.html, title=self.page.title, height=self.height)

    def __repr__(self) -> str:
        info = self.run.loaded.info
        layers = len(self.run.trace.layers)
        return (f"<lstmviz Report of {info.name}: {layers} recurrent layer{'s' if layers != 1 else ''}, "
                f"{self.run.sample.description}>")


def _given(sample: Sample) -> tuple[np.ndarray | str, str]:
    """A sample passed from Python as values or text, and how messages name it."""
    if isinstance(sample, str):
        return sample, "text"
    if isinstance(sample, torch.Tensor):
        tensor = sample.detach().to("cpu")
        if tensor.dtype == torch.bfloat16 or tensor.dtype == torch.float16:
            tensor = tensor.float()
        return tensor.numpy().copy(), "tensor"
    if isinstance(sample, np.ndarray):
        return sample.copy(), "array"
    try:
        values = np.asarray(sample)
    except (ValueError, TypeError) as error:
        raise InputError(f"the sample is not a rectangular array ({error})") from None
    if values.dtype == object:
        raise InputError(f"the sample must be a tensor, an array, token ids or text, not a {type(sample).__name__}")
    return values, "list"


def _load_options(checkpoint: Path, *, input: str | os.PathLike[str] | None, tokens: str | None, device: str,
                  verify: bool, module: str | None, max_memory: str | None, forward_args: Sequence[str],
                  trust_pickle: bool, trust_torchscript: bool, model_class: str | None, model_kwargs: str | None,
                  weights_key: str | None, head: str | None, recurrent_only: bool) -> LoadOptions:
    return LoadOptions(
        checkpoint=checkpoint, input=None if input is None else Path(input), tokens=tokens, device=device,
        trust_pickle=trust_pickle, trust_torchscript=trust_torchscript, model_class=model_class,
        model_kwargs=model_kwargs, verify=verify, module=module, max_memory=max_memory, weights_key=weights_key,
        forward_args=tuple(forward_args), head=head, recurrent_only=recurrent_only,
    )


def prepare(model: nn.Module, sample: Sample | None, vocab: Vocab | None = None, *, name: str | None = None,
            task: str | None = None, output_labels: Sequence[str] | None = None, description: str | None = None,
            input: str | os.PathLike[str] | None = None, tokens: str | None = None, device: str | None = None,
            max_memory: str | None = None) -> tuple[LoadedModel, SampleInput]:
    """A model object and its sample as the loading stage's records, checked (nothing runs the model yet).

    Raises InputError / ModelError with the CLI's one-line messages.
    """
    if sample is None and input is None and tokens is None:
        raise InputError("report() needs a sample for a model object: a tensor, token ids, text or input=FILE")
    loaded = module_loaded(model, name=name, vocab=vocab, task=task, output_labels=output_labels,
                           description=description, device=device)
    budget = parse_memory_size(max_memory) if max_memory else None
    if sample is None:
        return loaded, load_sample(loaded, path=None if input is None else Path(input), tokens=tokens,
                                   max_memory_bytes=budget)
    given, given_as = _given(sample)
    if isinstance(given, str) and loaded.meta.get("vocab") is None:
        if Path(given).is_file():  # a file's name as text: say how a file is passed
            raise InputError(f"the sample {given!r} is text, read as characters; to read that file pass "
                             f"pathlib.Path({given!r}) or input={given!r}")
        raise InputError("text needs a vocabulary to become token ids: pass vocab=[...] (id -> token), or token ids")
    return loaded, load_sample(loaded, given=given, given_as=given_as, max_memory_bytes=budget)


def report(
    model: nn.Module | str | os.PathLike[str],
    sample: Sample | None = None,
    vocab: Vocab | None = None,
    *,
    # what a checkpoint's metadata would say (loading.metadata); for a model object only
    name: str | None = None,
    task: str | None = None,
    output_labels: Sequence[str] | None = None,
    description: str | None = None,
    # lstmviz report's options, by the same names
    input: str | os.PathLike[str] | None = None,
    tokens: str | None = None,
    title: str | None = None,
    layers: str | None = None,
    units: str | int | None = None,
    steps: str | None = None,
    at_step: int | None = None,
    sort_units: str = "variance",
    labels: str | os.PathLike[str] | None = None,
    saturation_low: float = Thresholds.saturation_low,
    saturation_high: float = Thresholds.saturation_high,
    saliency_step: int | None = None,
    memory_probe: bool = False,
    device: str | None = None,
    verify: bool = True,
    module: str | None = None,
    max_memory: str | None = None,
    forward_args: Sequence[str] = (),
    jobs: int | None = None,
    # how a checkpoint is opened (a path only), as in the CLI
    trust_pickle: bool = False,
    trust_torchscript: bool = False,
    model_class: str | None = None,
    model_kwargs: str | None = None,
    weights_key: str | None = None,
    head: str | None = None,
    recurrent_only: bool = False,
) -> Report:
    """Trace a model on a sample, analyze it and build its report, as `lstmviz report` does.

    `model`: an `nn.Module` (any model the CLI traces: stock LSTM/GRU/RNN layers, cells in a loop,
    hand-written cells), or a checkpoint's path (then every CLI load option applies and the page is
    the CLI's, byte for byte). `sample`: a tensor or array in the CLI's input convention (float
    (time, features) or (batch, time, features); integer token ids (time,) or (batch, time)), a
    list of token ids, text (encoded with `vocab`, id -> token), or a `pathlib.Path` to an input file
    (as `input=`). A model object runs where it is, in eval mode; its train/eval mode, the autograd mode
    and the random states are given back afterwards. The other options are `lstmviz report`'s, by the
    same names (`units=32` or `"0,5,9"`; `jobs`: processes drawing the figures).

    Raises the CLI's own errors (InputError, ModelError, CheckpointError, VerificationError, ...) with
    its one-line messages; nothing is printed.
    """
    view = ViewOptions(title=title, layers=layers, units=None if units is None else str(units), steps=steps,
                       at_step=at_step, sort_units=sort_units)
    analysis_options = AnalysisOptions(
        labels=None if labels is None else Path(labels), saturation_low=saturation_low,
        saturation_high=saturation_high, saliency_step=saliency_step, memory_probe=memory_probe,
    )
    if isinstance(sample, os.PathLike):
        if input is not None:
            raise InputError("pass the sample's file either as sample or as input=, not both")
        sample, input = None, sample
    if sample is not None and tokens is not None:
        raise InputError("pass either a sample or tokens=, not both")
    if isinstance(model, (str, os.PathLike)):
        options = _load_options(
            Path(model), input=input, tokens=tokens, device=device or "cpu", verify=verify, module=module,
            max_memory=max_memory, forward_args=forward_args, trust_pickle=trust_pickle,
            trust_torchscript=trust_torchscript, model_class=model_class, model_kwargs=model_kwargs,
            weights_key=weights_key, head=head, recurrent_only=recurrent_only)
        if sample is not None:
            loaded = pipeline.load_model(options)
            given, given_as = _given(sample)
            budget = parse_memory_size(max_memory) if max_memory else None
            run = pipeline.trace_loaded(loaded, load_sample(loaded, given=given, given_as=given_as,
                                                            max_memory_bytes=budget), options,
                                        float16_above=pipeline.REPORT_FLOAT16_ABOVE)
        else:
            run = pipeline.load_and_trace(options, float16_above=pipeline.REPORT_FLOAT16_ABOVE)
        run, analysis, page = report_stages(run, analysis_options, view)
        return Report(run, analysis, page, workers=jobs)
    opened = {"trust_pickle": trust_pickle, "trust_torchscript": trust_torchscript, "model_class": model_class,
              "model_kwargs": model_kwargs, "weights_key": weights_key, "head": head, "recurrent_only": recurrent_only}
    given_flags = [key for key, value in opened.items() if value]
    if given_flags:
        raise InputError(f"{given_flags[0]}= applies to a checkpoint's path; a model object runs as it is")
    loaded, sample_input = prepare(model, sample, vocab, name=name, task=task, output_labels=output_labels,
                                   description=description, input=input, tokens=tokens, device=device,
                                   max_memory=max_memory)
    options = _load_options(Path(loaded.info.name), input=input, tokens=tokens, device=loaded.device, verify=verify,
                            module=module, max_memory=max_memory, forward_args=forward_args, trust_pickle=False,
                            trust_torchscript=False, model_class=None, model_kwargs=None, weights_key=None, head=None,
                            recurrent_only=False)
    with preserved(model):
        loaded.model.eval()
        run = pipeline.trace_loaded(loaded, sample_input, options, float16_above=pipeline.REPORT_FLOAT16_ABOVE)
        run, analysis, page = report_stages(run, analysis_options, view)
    return Report(run, analysis, page, workers=jobs)
