"""`lstmviz_cli.Monitor`: gate statistics of a model while it trains, as reports and one timeline page.

Call `monitor.step(epoch)` once per epoch (or per step) from a training loop or a framework callback;
every `every`-th call writes that moment's report (or only its JSON summary) into `out_dir` and
rewrites `out_dir/index.html`, the timeline page of every report so far (`page.timeline`: the same
page `lstmviz check` draws over several checkpoints), and `out_dir/timeline.json`. A call that does
not fire only counts. The model's train/eval mode, the autograd mode and the random states are given
back after each report (`api.memory.preserved`), so training goes on exactly as it would have.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from lstmviz_cli.analysis.timeline import Timeline, TimelinePoint
from lstmviz_cli.api.memory import Vocab
from lstmviz_cli.api.report import Report, Sample, prepare, report
from lstmviz_cli.errors import InputError, LstmvizError, OutputError
from lstmviz_cli.output import is_lstmviz_output, json_text, write_atomic
from lstmviz_cli.page.timeline import build_timeline_page
from lstmviz_cli.render.html import render_html

# report()'s options that say how the model and its sample are read (checked when the Monitor is made).
_PREPARE = ("task", "output_labels", "description", "input", "tokens", "device", "max_memory")
# report()'s keywords a Monitor passes on: not the name (the Monitor's), nor how a checkpoint file is opened.
_CHECKPOINT_ONLY = ("trust_pickle", "trust_torchscript", "model_class", "model_kwargs", "weights_key", "head",
                    "recurrent_only")
_OPTIONS = tuple(name for name, parameter in inspect.signature(report).parameters.items()
                 if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("name", *_CHECKPOINT_ONLY))
# The files a Monitor rewrites after every report.
_INDEX_FILES = ("index.html", "timeline.json")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse (OutputError, one line) a folder the Monitor could not write into, or one holding an index.html or
    timeline.json of the user's; nothing is created (that waits for the first report)."""
    for file in _INDEX_FILES:
        if (out_dir / file).exists() and not is_lstmviz_output(out_dir / file):
            raise OutputError(f"out_dir {str(out_dir)!r} holds a {file} lstmviz did not write; give the Monitor "
                              "its own folder")
    existing = next(folder for folder in (out_dir, *out_dir.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise OutputError(f"cannot create out_dir {str(out_dir)!r}: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into out_dir {str(out_dir)!r}: {str(existing)!r} is not writable")


class Monitor:
    """Writes a report every `every` calls of `step` and keeps `out_dir/index.html`: gate statistics over time.

    `model`, `sample`, `vocab` and `options` are `lstmviz_cli.report`'s (a model object; every report
    uses the same sample, so the points compare). `html=False` writes only each report's JSON summary
    (no figures drawn: faster), the index still charts them. `axis` names what `step` counts
    ("epoch" or "step"). Files: `<axis>_<n>.html` / `.json` per report, `index.html`, `timeline.json`;
    files lstmviz did not write are never replaced.

    A report that fails with lstmviz's own error (a sample the model refuses, a NaN in the weights)
    becomes a failed point on the timeline and a warning, so a long training run is never stopped by
    its monitor; `strict=True` raises it instead.
    """

    def __init__(self, model: nn.Module, sample: Sample, vocab: Vocab | None = None, *, every: int = 1,
                 out_dir: str | os.PathLike[str] = "lstmviz", html: bool = True, axis: str = "epoch",
                 name: str | None = None, strict: bool = False, **options: object) -> None:
        if not isinstance(every, int) or every < 1:
            raise InputError(f"every={every!r} must be a whole number of calls, at least 1")
        if axis not in ("epoch", "step", "iteration"):
            raise InputError(f"axis={axis!r} must be 'epoch', 'step' or 'iteration'")
        if not isinstance(model, nn.Module):
            raise InputError(f"Monitor takes a torch.nn.Module, not a {type(model).__name__}")
        self.model = model
        self.sample = sample
        self.vocab = vocab
        self.every = every
        self.out_dir = Path(out_dir)
        self.html = html
        self.axis = axis
        self.name = name or type(model).__name__
        self.strict = strict
        self.options: Mapping[str, object] = dict(options)
        self.calls = 0
        self.points: list[TimelinePoint] = []
        self.last: Report | None = None
        unknown = sorted(set(self.options) - set(_OPTIONS))
        if unknown:
            raise InputError(f"Monitor: unknown option {unknown[0]!r}; it takes report()'s options: "
                             f"{', '.join(_OPTIONS)}")
        # Where the reports go is checked now, not after the first epoch of a long training run.
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InputError(f"out_dir {str(self.out_dir)!r} is a file, not a folder")
        _check_out_dir(self.out_dir)
        # A sample the model cannot take fails here, not after the first epoch (nothing runs the model).
        loading = {key: value for key, value in self.options.items() if key in _PREPARE}
        prepare(model, sample, vocab, name=self.name, **loading)  # type: ignore[arg-type]  # checked there

    @property
    def index(self) -> Path:
        """The timeline page, rewritten after every report."""
        return self.out_dir / "index.html"

    @property
    def timeline(self) -> Timeline:
        return Timeline(tuple(self.points), axis=self.axis)

    def step(self, epoch: int | None = None, *, force: bool = False) -> Report | None:
        """Count one epoch (or step); on every `every`-th call (or with `force`), report and update the index.

        `epoch` labels the point (default: the number of calls so far). Returns the report written,
        else None. Costs one addition when it does not fire.
        """
        self.calls += 1
        if self.calls % self.every and not force:
            return None
        return self.record(self.calls if epoch is None else epoch)

    def record(self, epoch: int) -> Report | None:
        """Report now, as point `epoch` (a point with that number is replaced); None when the report failed."""
        stem = f"{self.axis}_{int(epoch):04d}"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            failed = OutputError(f"cannot create out_dir {str(self.out_dir)!r}: {error.strerror or error}")
            if self.strict:
                raise failed from None
            warnings.warn(f"lstmviz Monitor: {self.axis} {epoch}: {failed.message}", RuntimeWarning, stacklevel=3)
            return None
        options = {key: value for key, value in self.options.items() if key != "title"}
        title = f"{self.options.get('title') or self.name} · {self.axis} {epoch}"
        try:
            made = report(self.model, self.sample, self.vocab, name=self.name, title=title,
                          **options)  # type: ignore[arg-type]  # report()'s own keywords, checked there
            if self.html:
                made.save(self.out_dir / f"{stem}.html")
            made.save_json(self.out_dir / f"{stem}.json")
            written = f"{stem}.html" if self.html else f"{stem}.json"
            point = TimelinePoint(written, int(epoch), made.measures, link=written)
        except LstmvizError as error:
            if self.strict:
                raise
            warnings.warn(f"lstmviz Monitor: {self.axis} {epoch}: {error.message}", RuntimeWarning, stacklevel=3)
            made, point = None, TimelinePoint(stem, int(epoch), None, error=error.message)
        self.points = sorted([p for p in self.points if p.step != point.step] + [point],
                             key=lambda p: p.step if p.step is not None else -1)
        self.last = made
        try:
            self._write_index()
        except LstmvizError as error:
            if self.strict:
                raise
            warnings.warn(f"lstmviz Monitor: {self.axis} {epoch}: the index was not updated: {error.message}",
                          RuntimeWarning, stacklevel=3)
        return made

    def _write_index(self) -> None:
        timeline = self.timeline
        page = build_timeline_page(timeline, title=f"lstmviz monitor: {self.name}", what="report",
                                   ordering=f"One point per report, in {self.axis} order; each links to its "
                                            f"{'report' if self.html else 'JSON summary'}.")
        write_atomic(self.out_dir / "timeline.json", json_text(timeline.to_json()))
        write_atomic(self.index, render_html(page, workers=1))

    def __repr__(self) -> str:
        return f"<lstmviz Monitor of {self.name}: every {self.every} {self.axis}(s), {len(self.points)} reports in {self.out_dir}>"
