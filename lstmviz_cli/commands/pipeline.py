"""Load and trace, the first two stages every command runs: `load_and_trace(options) -> Run`.

The CLI only builds option records (`commands.options`) and calls one function per command; tests call
the same functions.
"""

from __future__ import annotations

import contextlib
import sys
from contextlib import AbstractContextManager

from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.errors import InputError
from lstmviz_cli.glyphs import for_terminal
from lstmviz_cli.loading.budget import parse_memory_size
from lstmviz_cli.loading.checkpoint import load_checkpoint
from lstmviz_cli.loading.corpus import corpus_sample, open_corpus
from lstmviz_cli.loading.inputs import load_sample
from lstmviz_cli.loading.records import LoadedModel, SampleInput
from lstmviz_cli.loading.summary import loading_notes, loading_summary
from lstmviz_cli.tracing import endtoend
from lstmviz_cli.tracing.forwardargs import parse_forward_args
from lstmviz_cli.tracing.records import Run
from lstmviz_cli.tracing.sample import trace_sample
from lstmviz_cli.tracing.verify import VerifyPolicy

__all__ = ["Run", "announce", "load_and_trace", "load_model", "trace_loaded"]


def announce(*runs: Run) -> None:
    """Print the runs' stderr notes; commands call this after their outputs are written."""
    for run in runs:
        for note in run.notes:
            _warn(note)


UNSAFE_WARNING = (
    "lstmviz: warning: {name} was loaded with unsafe deserialization ({flag}); "
    "only do this for files you trust"
)


def _warn(message: str) -> None:
    print(for_terminal(message), file=sys.stderr)  # module and file names come from the checkpoint


# A report keeps traces larger than this as float16 (figures need 3 digits, not 7): with the
# saliency budget this keeps T = 100,000 at hidden 1024 under 4 GB.
REPORT_FLOAT16_ABOVE = 1 << 30


def load_and_trace(options: LoadOptions, *, float16_above: int | None = None,
                   policy: VerifyPolicy | None = None, corpus: bool = False) -> Run:
    """Load the checkpoint safely, read the sample, and trace every recurrent layer.

    Loading through a trust flag is announced on stderr (and the report is stamped by render).
    `float16_above`: store the series as float16 when the float32 trace would exceed this many bytes.
    `policy`: how the trace is verified (default: refuse over the tolerance, or with `options.verify`
    off compute every error and refuse none: --no-verify shows them in red); `lstmviz check` passes its own.
    `corpus`: --input is a corpus (`loading.corpus`); the sample traced is its first sequence.
    """
    parse_forward_args(options.forward_args)  # a malformed --forward-arg fails before the checkpoint loads
    loaded = load_model(options)
    budget = parse_memory_size(options.max_memory) if options.max_memory else None
    if corpus:
        if options.input is None or options.tokens is not None:
            raise InputError("corpus mode reads --input (a text file, a folder of .txt files, .npy or .npz); "
                             "--tokens gives one sequence")
        if options.batch_index is not None:
            raise InputError("--batch-index picks one sequence of a batch; corpus mode pools every sequence: "
                             "drop one of them")
        sample = corpus_sample(open_corpus(loaded, options.input), loaded, max_memory_bytes=budget)
    else:
        sample = load_sample(loaded, path=options.input, tokens=options.tokens, max_memory_bytes=budget,
                             batch_index=options.batch_index)
    return trace_loaded(loaded, sample, options, float16_above=float16_above, policy=policy)


def load_model(options: LoadOptions) -> LoadedModel:
    """Load the checkpoint safely; loading through a trust flag and what loading skipped go to stderr."""
    loaded = load_checkpoint(
        options.checkpoint,
        device=options.device,
        trust_pickle=options.trust_pickle,
        trust_torchscript=options.trust_torchscript,
        model_class=options.model_class,
        model_kwargs=options.model_kwargs,
        weights_key=options.weights_key,
        head=options.head,
        recurrent_only=options.recurrent_only,
    )
    if loaded.info.unsafe:
        flag = "--trust-torchscript" if loaded.info.format == "torchscript" else "--trust-pickle"
        _warn(UNSAFE_WARNING.format(name=loaded.info.name, flag=flag))
    for note in loading_notes(loaded.info):
        _warn(f"lstmviz: note: {loaded.info.name}: {note}")
    return loaded


def trace_loaded(loaded: LoadedModel, sample: SampleInput, options: LoadOptions, *,
                 float16_above: int | None = None, policy: VerifyPolicy | None = None) -> Run:
    """Trace a loaded model on its sample and verify it as far as it can be: the stage after loading.

    A checkpoint (`load_and_trace`) and a model object passed from Python (`lstmviz_cli.report`) go
    through here alike: the user's own code is run again plainly and compared end to end.
    `policy` as for `load_and_trace` (None: from `options.verify`).
    """
    if policy is None:
        policy = VerifyPolicy() if options.verify else VerifyPolicy(refuse=False)
    forward_args = parse_forward_args(options.forward_args)
    compact = float16_above is not None and sample.trace_bytes > float16_above
    store = {"store_dtype": "float16"} if compact else {}
    archive = None
    if loaded.scripted is not None and not loaded.info.recurrent_only:
        # The archive's forward takes the other arguments; its rebuild takes `lengths` of its own.
        archive = endtoend.check_archive(loaded, sample, verify=policy.refuse, forward_args=forward_args)
        forward_args = {}
    own_code = not loaded.info.rebuilt  # --model-class or a pickled module: the real model runs
    watch: AbstractContextManager[endtoend.CapturedCall | None] = (
        endtoend.capture_call(loaded.model) if own_code else contextlib.nullcontext()
    )
    with watch as captured:
        trace = trace_sample(loaded, sample, verify=policy, module=options.module,
                             forward_args=forward_args, **store)
    end_to_end = None
    if captured is not None:  # own code: its first call was recorded
        end_to_end = endtoend.verify_user_model(loaded.model, captured, verify=policy, notes=trace.meta.notes)
    elif archive is not None:
        end_to_end = endtoend.verify_archive(archive, trace, verify=policy)
    loading = loading_summary(loaded.info)
    if loading:
        trace.meta.loading = loading
    notes = []
    if loaded.info.accounting is not None:
        notes.append(f"lstmviz: {loaded.info.name}: {loaded.info.accounting.line()}")
    return Run(loaded=loaded, sample=sample, trace=trace, end_to_end=end_to_end, notes=notes)
