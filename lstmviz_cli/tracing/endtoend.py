"""End-to-end verification: the traced run's output against the real model, run as itself.

Two references exist. With the user's own code (--model-class, --trust-pickle) the same model
object runs again, plainly (no lstmviz hooks, no swapped forwards), on exactly the arguments the
traced call received. A TorchScript archive (--trust-torchscript) cannot be hooked, so lstmviz
traces a rebuild from its weights; the archive itself then runs on the sample, and the rebuild
must reproduce its output (the head's wiring, when the checkpoint does not declare it, is the one
that does), or lstmviz refuses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmviz_cli.errors import CheckpointError, ModelError, VerificationError, first_line
from lstmviz_cli.loading.rebuild import RebuiltModel
from lstmviz_cli.loading.records import HEAD_WIRINGS, HeadInfo, LoadedModel, SampleInput
from lstmviz_cli.tracing.forwardargs import forward_kwargs, plan_forward_args
from lstmviz_cli.tracing.layout import locate_output_axes, to_batch_major
from lstmviz_cli.tracing.records import Trace
from lstmviz_cli.tracing.sample import sample_tensor
from lstmviz_cli.tracing.seeding import SEED, seeded
from lstmviz_cli.tracing.verify import OUTPUT_TOLERANCE, Verification, VerifyPolicy

YOUR_MODEL = "model output vs your model"
ARCHIVE = "model output vs the TorchScript archive"


@dataclass
class CapturedCall:
    """The first call of a model: its arguments and what it returned (inside the traced run)."""

    args: tuple[object, ...] | None = None
    kwargs: dict[str, object] = field(default_factory=dict)
    output: object = None
    done: bool = False


@contextlib.contextmanager
def capture_call(model: nn.Module) -> Iterator[CapturedCall]:
    """Record the arguments and the output of the model's first call while the block runs."""
    captured = CapturedCall()

    def before(_module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        if not captured.done:  # a call that failed (another layout tried after it) is not the traced call
            captured.args, captured.kwargs = args, dict(kwargs)

    def after(_module: nn.Module, _args: tuple[object, ...], _kwargs: dict[str, object], output: object) -> None:
        if not captured.done:
            captured.output, captured.done = output, True

    handles = [
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The warnings the tracer also silences (torch's notes on its own kernel choices), nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        warnings.filterwarnings("ignore", message=".*projections is not supported with oneDNN.*")
        yield


def _tensors(value: object) -> list[torch.Tensor]:
    """Every tensor of a (nested) model output, in order; a PackedSequence counts as its padded data."""
    if isinstance(value, PackedSequence):
        return [pad_packed_sequence(value, batch_first=True)[0]]
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def output_error(reference: np.ndarray, value: np.ndarray) -> float:
    """max |reference - value| of two arrays of one shape (inf when the shapes differ; NaN in both agrees)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(value, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.abs(np.where(both_nan, 0.0, a - b))
    return float(np.nan_to_num(diff, nan=math.inf).max())


def output_matches(error: float, reference: np.ndarray) -> bool:
    """Whether `error` is within OUTPUT_TOLERANCE of an output of this size."""
    ref = np.asarray(reference, dtype=np.float64)
    scale = float(np.nanmax(np.abs(ref))) if ref.size and np.isfinite(ref).any() else 0.0
    return math.isfinite(error) and error <= OUTPUT_TOLERANCE * max(1.0, scale)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    array: np.ndarray = tensor.detach().to("cpu").double().numpy()
    return array


def _compare(reference: list[np.ndarray], traced: list[np.ndarray]) -> tuple[float, bool]:
    """(max |difference| over every tensor, whether each is within tolerance of its size)."""
    if len(reference) != len(traced) or not reference:
        return math.inf, False
    errors = [output_error(r, t) for r, t in zip(reference, traced, strict=True)]
    ok = all(output_matches(e, r) for e, r in zip(errors, reference, strict=True))
    return max(errors), ok


def _result(label: str, error: float, ok: bool, detail: str = "") -> Verification:
    return Verification("model", label, error if math.isfinite(error) else None, "ok" if ok else "bad", detail)


def _kept_state(model: nn.Module) -> dict[str, int]:
    """Tensors a model keeps as plain attributes (`self.hidden = ...`, not parameters or buffers), by
    name, with the identity of what each holds: a forward that replaces one keeps state between calls."""
    kept: dict[str, int] = {}
    for prefix, module in model.named_modules():
        for name, value in vars(module).items():
            items = value if isinstance(value, (tuple, list)) else (value,)
            if items and all(isinstance(item, torch.Tensor) for item in items):
                kept[f"{prefix}.{name}" if prefix else name] = hash(tuple(id(item) for item in items))
            elif value is None and not name.startswith("_"):
                kept[f"{prefix}.{name}" if prefix else name] = 0
    return kept


def _plain_run(model: nn.Module, captured: CapturedCall, seed: int = SEED) -> tuple[list[np.ndarray], bool]:
    """The model run plainly (eval, no grad, no hooks of lstmviz) on the traced call's arguments, from the
    random state `seed`: its output tensors, and whether it drew random numbers."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), _quiet(), seeded(seed) as rng:
            plain = model(*(captured.args or ()), **captured.kwargs)
    finally:
        model.train(was_training)
    return [_numpy(t) for t in _tensors(plain)], rng.drew


def verify_user_model(model: nn.Module, captured: CapturedCall, *, verify: bool | VerifyPolicy = True,
                      notes: list[str] | None = None) -> Verification:
    """Run the user's model again, plainly, on the traced call's arguments, and compare every output.

    Both runs start from the same random state (`tracing.seeding`). When the plain run draws random
    numbers and a run from another state gives another output, a note (appended to `notes`, the
    trace's) says the model's output depends on them. Raises VerificationError (when `verify`'s
    policy refuses) when the traced run's output is not the model's own, and ModelError when two
    identical plain calls differ (a model that keeps state between calls).
    """
    policy = VerifyPolicy.of(verify)
    if captured.args is None or not captured.done:
        return Verification("model", YOUR_MODEL, None, "not-checked", "the model was not called as a whole")
    try:
        reference, drew = _plain_run(model, captured)
    except Exception as failure:  # noqa: BLE001 - the user's code; the traced call of it worked
        return Verification("model", YOUR_MODEL, None, "not-checked",
                            f"your model failed when run again: {type(failure).__name__}")
    traced = [_numpy(t) for t in _tensors(captured.output)]
    error, ok = _compare(reference, traced)
    detail = "" if len(reference) == len(traced) else (
        f"your model returned {len(reference)} tensors, the traced run {len(traced)}")
    if ok and drew and notes is not None:
        other, _ = _plain_run(model, captured, seed=SEED + 1)
        spread, same = _compare(reference, other)
        if not same:
            notes.append(f"your model's output depends on the random numbers it draws (two runs from different "
                         f"random states differ by {spread:.2e}): what is shown is its run from seed {SEED}")
    if not ok:
        before = _kept_state(model)
        again, _ = _plain_run(model, captured)
        changed = sorted(name for name, held in _kept_state(model).items() if before.get(name) != held)
        drift, same = _compare(reference, again)
        # The model itself does not repeat (it keeps state between calls): a state attribute it replaces
        # explains any difference; without one, only a difference over the tolerance says so.
        if not same or (changed and drift > 0):
            what = (f"your model's output changes between two identical calls (by {max(drift, error):.2e}): it keeps "
                    f"state between calls ({', '.join(f'self.{n}' for n in changed[:3]) or 'e.g. self.hidden'} "
                    "changes on every call), so no run of it can be checked against another")
            if policy.refuse:
                raise ModelError(f"{what}; reset that state at the start of forward")
            return Verification("model", YOUR_MODEL, None, "not-checked", what)
    result = _result(YOUR_MODEL, error, ok, detail)
    if not ok and policy.refuse:
        shown = f"differs by {error:.2e}" if math.isfinite(error) else "has another shape"
        raise VerificationError(policy.refusal(
            f"the traced run's output {shown} from your model's own output (tolerance {OUTPUT_TOLERANCE:.0e} of "
            "its size)"))
    return result


# -- TorchScript -------------------------------------------------------------------------------------


@dataclass
class ArchiveReference:
    """The archive's own outputs on the sample: one per sequence when lengths differ, else one batch."""

    outputs: list[np.ndarray]
    per_sequence: bool


def _unequal(sample: SampleInput) -> list[int] | None:
    if sample.lengths is None:
        return None
    values = [int(v) for v in np.asarray(sample.lengths).tolist()]
    return values if len(set(values)) > 1 else None


def _rebuild(loaded: LoadedModel) -> RebuiltModel:
    """The eager rebuild a TorchScript archive is traced through (only archives are checked here)."""
    assert isinstance(loaded.model, RebuiltModel)
    return loaded.model


def _archive_batch_first(scripted: nn.Module, rnn_name: str) -> bool:
    """The archive's recurrent layer's own layout (a scripted nn.LSTM keeps its attributes)."""
    module: object = scripted
    for part in rnn_name.split("."):  # ScriptModules have no get_submodule
        module = getattr(module, part, None)
        if module is None:
            return True
    return bool(getattr(module, "batch_first", True))


def _run_archive(scripted: nn.Module, x: torch.Tensor, batch_first: bool, kwargs: dict[str, torch.Tensor]) -> np.ndarray:
    """The archive's first output on batch-major `x`, batch-major as the traced output is stored
    (`tracing.layout`: a tagger's (T, tags) is (1, T, tags))."""
    batch, steps = int(x.shape[0]), int(x.shape[1])
    with torch.no_grad(), _quiet(), seeded():
        out = scripted(x if batch_first else x.transpose(0, 1), **kwargs)
    tensors = _tensors(out)
    if not tensors:
        raise TypeError(f"it returned {type(out).__name__}, not a tensor")
    first = _numpy(tensors[0])
    axes = locate_output_axes(first.shape, batch=batch, steps=steps, batch_first=batch_first)
    return np.ascontiguousarray(to_batch_major(first, axes, batch=batch, steps=steps))


def archive_reference(loaded: LoadedModel, sample: SampleInput,
                      forward_args: Mapping[str, str] | None = None) -> ArchiveReference:
    """Run the TorchScript archive itself on the sample.

    Its forward's other parameters are filled as a model's are (`tracing.forwardargs`: its lengths,
    arrays of an .npz, `forward_args`); an archive that takes the lengths runs the padded batch
    once, any other runs each sequence at its own length when they differ.
    """
    scripted = loaded.scripted
    assert scripted is not None
    dtype = next((p.dtype for p in scripted.parameters() if p.is_floating_point()), torch.float32)
    x = sample_tensor(sample.values, sample.kind, scripted, loaded.device)
    batch_first = _archive_batch_first(scripted, _rebuild(loaded).lstmviz_rnn)
    plan = plan_forward_args(scripted, sample, forward_args)
    kwargs = forward_kwargs(plan, sample, device=loaded.device, dtype=dtype)
    lengths = None if plan.params else _unequal(sample)
    try:
        if lengths is None:
            return ArchiveReference([_run_archive(scripted, x, batch_first, kwargs)], per_sequence=False)
        return ArchiveReference(
            [_run_archive(scripted, x[b : b + 1, :n], batch_first, {}) for b, n in enumerate(lengths)],
            per_sequence=True)
    except Exception as error:  # noqa: BLE001 - the archive's own code
        raise ModelError(f"the TorchScript archive failed on the sample ({sample.description}): "
                         f"{first_line(error)}") from None


def _against(reference: ArchiveReference, output: np.ndarray | None) -> tuple[float, bool]:
    """Compare a (batch-major) model output with the archive's, sequence by sequence when lengths differ."""
    if output is None:
        return math.inf, False
    output = np.asarray(output, dtype=np.float64)
    if not reference.per_sequence:
        ref = reference.outputs[0]
        error = output_error(ref, output)
        return error, output_matches(error, ref)
    worst, ok = 0.0, True
    for b, ref in enumerate(reference.outputs):
        ref_b, out_b = ref[0], output[b]
        if out_b.shape != ref_b.shape and out_b.ndim == ref_b.ndim and out_b.ndim >= 1 and \
                out_b.shape[1:] == ref_b.shape[1:] and out_b.shape[0] > ref_b.shape[0]:
            out_b = out_b[: ref_b.shape[0]]  # padded steps past this sequence's length
        error = output_error(ref_b, out_b)
        worst, ok = max(worst, error), ok and output_matches(error, ref_b)
    return worst, ok


def _rebuild_output(loaded: LoadedModel, sample: SampleInput) -> np.ndarray:
    model = _rebuild(loaded)
    x = sample_tensor(sample.values, sample.kind, model, loaded.device)
    lengths = _unequal(sample)
    with torch.no_grad(), _quiet():
        out = model(x, lengths=torch.as_tensor(lengths)) if lengths is not None else model(x)
    return _numpy(out)


def _shape_text(reference: ArchiveReference) -> str:
    return str(tuple(reference.outputs[0].shape))


def check_archive(loaded: LoadedModel, sample: SampleInput, *, verify: bool = True,
                  forward_args: Mapping[str, str] | None = None) -> ArchiveReference:
    """Before tracing: the rebuild must reproduce the archive's output on the sample.

    A head whose wiring the checkpoint does not declare gets the wiring that reproduces the
    archive (recorded as source "archive"). Raises CheckpointError with one line when no wiring
    does (unless `verify` is false), naming what to pass instead.
    """
    reference = archive_reference(loaded, sample, forward_args)
    model = _rebuild(loaded)
    info = loaded.info
    head: HeadInfo | None = info.head
    declared = head is not None and head.source in ("option", "metadata")
    if head is None:  # no head: the rebuild returns the recurrent output, whatever its wiring
        candidates = [model.lstmviz_head_on]
    elif declared:
        candidates = [head.wiring]
    else:
        candidates = [head.wiring] + [w for w in HEAD_WIRINGS if w != head.wiring]
    tried: list[tuple[str, float, np.ndarray]] = []
    for wiring in candidates:
        model.lstmviz_head_on = wiring
        output = _rebuild_output(loaded, sample)
        error, ok = _against(reference, output)
        tried.append((wiring, error, output))
        if ok:
            if head is not None and not declared and (wiring != head.wiring or head.source == "default"):
                loaded.info = dataclasses.replace(info, head=dataclasses.replace(head, wiring=wiring, source="archive"))
            return reference
    wiring, error, output = min(tried, key=lambda item: item[1])
    model.lstmviz_head_on = wiring
    if not verify:
        return reference
    name = info.name
    if math.isfinite(error):
        what = f"the archive's own output differs from its rebuild from weights by {error:.2e}"
        if head is not None and not declared:
            what += f" (head {head.describe()} tried on {', '.join(candidates)})"
    else:
        rebuilt = str(tuple(output.shape[1:] if reference.per_sequence else output.shape))
        what = (f"the archive returns {_shape_text(reference)} but its rebuild from weights "
                f"{rebuilt}" + (f" ({info.head_note})" if head is None and info.head_note else ""))
    raise CheckpointError(
        f"{name!r} (TorchScript): {what}: its code does something a rebuild from its weights does not reproduce; "
        "pass --model-class with the eager class (file.py:Class) to trace the model as it runs, or "
        "--recurrent-only to trace the recurrent layers alone with the sample as their direct input"
    )


def verify_archive(reference: ArchiveReference, trace: Trace, *, verify: bool | VerifyPolicy = True) -> Verification:
    """After tracing: the traced run's output against the archive's own."""
    policy = VerifyPolicy.of(verify)
    error, ok = _against(reference, trace.output)
    result = _result(ARCHIVE, error, ok)
    if not ok and policy.refuse:
        raise VerificationError(policy.refusal(
            f"the traced run's output differs from the TorchScript archive's own output by {error:.2e}"))
    return result
