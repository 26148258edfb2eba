"""The analysis stage of one run: the trace's numbers, plus the analyses that must run the model.

`analyze_run` reads the prediction once (it chooses saliency's target and is the analysis's prediction),
runs gradient saliency (and the memory probe when asked) on the model, turns what cannot be computed
into notes, and hands everything to `analyze_trace`. It imports both `analysis/` and `explain.saliency`, so neither imports the other.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lstmviz_cli._warncapture import captured_warnings
from lstmviz_cli.analysis.analyze import analyze_trace
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.prediction import predict
from lstmviz_cli.analysis.records import Analysis, MemoryProbe, SaliencyResult
from lstmviz_cli.analysis.textfeatures import read_labels_csv, step_tokens
from lstmviz_cli.analysis.thresholds import saturation_thresholds
from lstmviz_cli.errors import InputError, first_line
from lstmviz_cli.explain.corpus import Progress
from lstmviz_cli.explain.gather import ModelContext, gather_evidence
from lstmviz_cli.explain.probe import memory_probe
from lstmviz_cli.explain.saliency import compute_saliency, model_batch_first
from lstmviz_cli.loading.records import SampleInput
from lstmviz_cli.tracing.forwardargs import forward_kwargs
from lstmviz_cli.tracing.provenance import describe_run
from lstmviz_cli.tracing.records import Run, Trace
from lstmviz_cli.tracing.seeding import seeded


def analyze_run(run: Run, options: AnalysisOptions, *, progress: Progress | None = None) -> Analysis:
    """The pipeline's analysis stage: the trace's numbers, plus saliency from the model when it can run,
    plus the evidence of `explain.gather` (`progress` is told how far a corpus has been read).

    The prediction is read once, here: it picks saliency's target and is the analysis's prediction.
    A model that cannot be differentiated (or probed) costs only that section, with a note saying
    why; user mistakes (a step outside the sample, a bad labels file) are errors. `run` is not changed.
    """
    trace = run.trace
    sample = run.sample
    loaded = run.loaded
    info = loaded.info
    facts = describe_run(run)
    th = saturation_thresholds(options.saturation_low, options.saturation_high)
    notes: list[str] = []
    if trace.meta.store_dtype == "float16":
        notes.append(
            "this long trace is kept as float16 to bound memory: figures and statistics carry about 3 "
            "significant digits (verification ran in float32; `lstmviz trace` writes full precision)"
        )
    notes.extend(trace.meta.notes)
    notes.extend(f"the model warned while it ran: {line}" for line in trace.meta.model_warnings)
    if facts.recurrent_only:
        notes.append(
            "--recurrent-only: the recurrent layers were fed the sample directly; every statistic and "
            "finding here is about them alone, not about the model with the layers in front of them"
        )
    steps = _first_length(trace, sample)  # the valid steps of batch element 0 (the sequence the page shows)
    tokens = step_tokens(sample.text, sample.labels, sample.steps)
    tokens = tokens[:steps] if tokens is not None else None
    last_step = None
    if trace.output is not None and np.asarray(trace.output).ndim >= 3:
        # An output on the input's steps is read at sequence 0's last valid step; one with steps of
        # its own (a decoder's) at its own last step.
        own = trace.meta.output_follows_input is False
        last_step = np.asarray(trace.output).shape[1] - 1 if own else min(steps, np.asarray(trace.output).shape[1]) - 1
    labels = None
    if options.labels is not None:
        # One row per step of the input as padded, or per valid step of batch element 0.
        labels = read_labels_csv(options.labels, steps, padded_steps=sample.steps)
    chosen = options.saliency_step
    if chosen is not None and not 0 <= chosen < steps:
        if steps < sample.steps and steps <= chosen < sample.steps:
            raise InputError(
                f"--saliency-step {chosen} is padding of sequence 0, which has {steps} valid steps of "
                f"{sample.steps}: the model was not run there; choose a step in 0..{steps - 1}"
            )
        raise InputError(f"--saliency-step {chosen} is outside the sample's steps 0..{steps - 1}")
    prediction = predict(trace.output, info, last_step=last_step, provenance=facts)
    # Without a prediction the model's output is the last recurrent layer's own states: the
    # saliency is then of ‖h‖ at that step, and says so.
    kind = prediction.kind if prediction else ("topk" if facts.has_head else "state")
    saliency: SaliencyResult | None = None
    probe: MemoryProbe | None = None
    model: nn.Module | None = loaded.model
    values = np.asarray(sample.values)[:1, :steps]
    batch_first = trace.meta.model_batch_first
    if model is not None:
        device = loaded.device
        batch_first = trace.meta.model_batch_first
        if batch_first is None or trace.meta.packed:
            batch_first = model_batch_first(loaded)
        with captured_warnings() as caught:
            try:
                with seeded():  # from the traced run's random state (a model that draws random numbers)
                    saliency = compute_saliency(
                        model,
                        values,
                        step=chosen if chosen is not None else last_step,
                        kind=kind,
                        output_labels=list(info.output_labels or info.vocab or []),
                        device=device,
                        batch_first=bool(batch_first),
                        forward_kwargs=_saliency_forward_kwargs(trace, sample, model, device, steps),
                    )
            except Exception as error:  # noqa: BLE001 - the model is the user's code: lose one section only
                notes.append(f"gradient saliency skipped: {type(error).__name__}: {first_line(error)}")
            if saliency is not None and chosen is not None and saliency.step != chosen:
                notes.append(
                    f"--saliency-step {chosen} ignored: the model's output has no time axis, so the saliency "
                    f"is of its output after the last step ({saliency.step})"
                )
            if options.memory_probe:
                try:
                    probe = memory_probe(model, values, device=device)
                except Exception as error:  # noqa: BLE001 - as above
                    notes.append(f"memory-length probe skipped: {type(error).__name__}: {first_line(error)}")
        known = set(trace.meta.model_warnings)
        notes.extend(f"the model warned while its saliency was computed: {line}" for line in caught
                     if line not in known)
    analysis = analyze_trace(
        trace,
        prediction=prediction,
        tokens=tokens,
        text=sample.text is not None,
        labels=labels,
        thresholds=th,
        saliency=saliency,
        memory_probe=probe,
        notes=notes,
        provenance=facts,
    )
    # The evidence of issue 18 (decompositions, memory by ablation, unit p-values and causal checks,
    # corpus pooling), each within its budget: `explain.gather`.
    context = ModelContext(
        model=model, values=values, batch_first=bool(batch_first if batch_first is not None else True),
        step=(chosen if chosen is not None else last_step) if last_step is not None else None,
        task="regression" if prediction is not None and prediction.kind == "values" else info.task,
        output_labels=list(info.output_labels or info.vocab or []), has_prediction=prediction is not None,
    )
    with captured_warnings():  # the model's warnings were noted once, above
        return gather_evidence(run, analysis, options, context, progress=progress)


def _first_length(trace: Trace, sample: SampleInput) -> int:
    """Valid steps of batch element 0: its length when the model was told the lengths (packed, or
    passed to its forward), else every step of the input (a model that ran over the padding)."""
    lengths = sample.lengths
    plan = trace.meta.forward_args
    told = bool(trace.meta.packed) or (plan is not None and plan.passes_lengths)
    return int(lengths[0]) if lengths is not None and (told or trace.meta.packed is None) else sample.steps


def _saliency_forward_kwargs(trace: Trace, sample: SampleInput, model: nn.Module, device: str,
                             steps: int) -> dict[str, torch.Tensor]:
    """The forward's other arguments (lengths, .npz arrays) for batch element 0 cut to `steps`."""
    plan = trace.meta.forward_args
    if plan is None or not plan.params:
        return {}
    dtype = next((p.dtype for p in model.parameters()), None)
    return forward_kwargs(plan, sample, device=device, dtype=dtype, first_steps=steps)
