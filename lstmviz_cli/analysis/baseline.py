"""The baseline ratchet: a run's measures against those of an earlier `lstmviz check --json`, one case per measure.

A baseline is the JSON `lstmviz check --json` writes (`render.checkresults`, schema `CHECK_SCHEMA`): its
`measures`, the `architecture` and the `sample` they were measured on. `read_baseline` validates such a
document (the command reads the file); `ensure_comparable` refuses a baseline of another architecture or
another sample with one line; `compare` gives one `CheckCase` per measure: value, baseline, delta and the
measure's tolerance (`checksettings.Tolerances`). A measure fails when it moved by more than its
tolerance in either direction; the verification error only when it grew.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from lstmviz_cli.analysis.checks import CheckCase
from lstmviz_cli.analysis.checksettings import Tolerances, number_text
from lstmviz_cli.analysis.measures import Measure
from lstmviz_cli.errors import InputError

# The check JSON's schema version ("schema"): a baseline must carry this one. 1: before baselines (no
# measures). Bump it whenever a measure's name or meaning changes.
CHECK_SCHEMA = 2
# Slack for comparing rounded numbers (6 significant digits) with a tolerance.
_EPS = 1e-12


@dataclass(frozen=True)
class Baseline:
    """The measures of an earlier check of the same model, and what they were measured on."""

    source: str  # the file as the user named it
    model: str
    measures: dict[str, float | None]  # measure name -> value (None: not measured then)
    architecture: tuple[tuple[tuple[str, object], ...], ...]  # per layer: sorted (key, value) pairs
    sample: tuple[tuple[str, object], ...]


def read_baseline(document: object, source: str, *, model: str) -> Baseline:
    """The baseline in a parsed `lstmviz check --json` document, for `model` when it holds several.

    Raises InputError (one line) when it is no check JSON, one of another schema version, or one
    without this model.
    """
    if not isinstance(document, Mapping):
        raise InputError(f"baseline {source!r} is not the --json output of lstmviz check")
    if isinstance(document.get("models"), list):
        entries = [entry for entry in document["models"] if isinstance(entry, Mapping)]
        chosen = [entry for entry in entries if entry.get("model") == model] or (entries if len(entries) == 1 else [])
        if len(chosen) > 1:
            raise InputError(f"baseline {source!r} holds {len(chosen)} checks of checkpoints named {model}; write one "
                             "with the checkpoints' folders in their names (this lstmviz names them apart)")
        if not chosen:
            names = ", ".join(str(entry.get("model")) for entry in entries)
            raise InputError(f"baseline {source!r} holds the checks of {names}, not of {model}")
        document = chosen[0]
    if "gate_stats" in document and "cases" not in document:
        raise InputError(f"baseline {source!r} is the --json of lstmviz report; a baseline is the --json of "
                         "lstmviz check")
    if not isinstance(document.get("cases"), list):
        raise InputError(f"baseline {source!r} is not the --json output of lstmviz check")
    schema = document.get("schema", 1)
    if schema != CHECK_SCHEMA:
        written = document.get("lstmviz")
        by = f"lstmviz {written}" if isinstance(written, str) else "an earlier lstmviz"
        raise InputError(
            f"baseline {source!r} was written by {by} (check JSON schema {schema}); this lstmviz reads schema "
            f"{CHECK_SCHEMA}: write a new baseline with `lstmviz check MODEL --json {source}`"
        )
    rows = document.get("measures")
    if not isinstance(rows, list) or not rows:
        raise InputError(f"baseline {source!r} holds no measures (its check stopped before the model was "
                         "measured, e.g. at a failed verification): write a new one")
    measures: dict[str, float | None] = {}
    for row in rows:
        if not isinstance(row, Mapping) or not isinstance(row.get("name"), str):
            raise InputError(f"baseline {source!r}: a measure without a name")
        value = row.get("value")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InputError(f"baseline {source!r}: measure {row['name']!r} has no number ({value!r})")
        measures[row["name"]] = None if value is None else float(value)
    return Baseline(
        source=source, model=str(document.get("model", "")), measures=measures,
        architecture=_layers(document.get("architecture")), sample=_pairs(document.get("sample")),
    )


def _pairs(value: object) -> tuple[tuple[str, object], ...]:
    return tuple(sorted((str(k), v) for k, v in value.items())) if isinstance(value, Mapping) else ()


def _layers(value: object) -> tuple[tuple[tuple[str, object], ...], ...]:
    return tuple(_pairs(layer) for layer in value) if isinstance(value, list) else ()


def ensure_comparable(baseline: Baseline, architecture: Sequence[Mapping[str, object]],
                      sample: Mapping[str, object]) -> None:
    """Refuse (one line) a baseline of another recurrent architecture or measured on another sample."""
    here = tuple(_pairs(layer) for layer in architecture)
    if baseline.architecture != here:
        raise InputError(f"baseline {baseline.source!r} is of another architecture: "
                         f"{_architecture_difference(baseline.architecture, here)}; its measures cannot be compared")
    there = dict(baseline.sample)
    if there != dict(sample):
        raise InputError(
            f"baseline {baseline.source!r} was measured on another sample ({_sample_text(there)}) than this run "
            f"({_sample_text(sample)}): pass the --input it was measured on, or write a new baseline"
        )


def _layer_text(layer: Mapping[str, object]) -> str:
    proj = f", proj {layer.get('proj_size')}" if layer.get("proj_size") else ""
    return f"{layer.get('prefix')} is {layer.get('kind')} {layer.get('input_size')}→{layer.get('hidden_size')}{proj}"


def _architecture_difference(there: tuple[tuple[tuple[str, object], ...], ...],
                             here: tuple[tuple[tuple[str, object], ...], ...]) -> str:
    old = [dict(layer) for layer in there]
    new = [dict(layer) for layer in here]
    old_names = [str(layer.get("prefix")) for layer in old]
    new_names = [str(layer.get("prefix")) for layer in new]
    if old_names != new_names:
        return f"its layers are {', '.join(old_names) or 'none'}, this model's {', '.join(new_names)}"
    for before, after in zip(old, new, strict=True):
        if before != after:
            return f"{_layer_text(before)} there, {_layer_text(after).split(' is ', 1)[1]} here"
    return "its layers differ"


def _sample_text(sample: Mapping[str, object]) -> str:
    digest = str(sample.get("sha256", ""))[:12]
    return f"{sample.get('batch')}×{sample.get('steps')} steps, sha256 {digest}…" if digest else "unknown"


def compare(measures: Sequence[Measure], baseline: Baseline, tolerances: Tolerances) -> list[CheckCase]:
    """One case per measure whose tolerance is on: passed when it moved no further than its tolerance."""
    allowed = {item.name: getattr(tolerances, item.name) for item in fields(tolerances)}
    cases = []
    for measure in measures:
        tolerance = allowed[measure.measure]
        if tolerance is None:
            continue
        cases.append(_case(measure, baseline, tolerance))
    return cases


def _case(measure: Measure, baseline: Baseline, tolerance: float) -> CheckCase:
    # The baseline's memory horizon is the saliency's (`measures.memory_horizon`); said beside the
    # --min-memory-horizon case, which reads the context ablation when there is one.
    name = f"{measure.name}{' (saliency)' if measure.measure == 'memory_horizon' else ''} vs baseline"
    check = f"baseline:{measure.measure}"
    grows_only = measure.measure == "verify_error"
    limit = f"{'+' if grows_only else '±'}{number_text(tolerance)}"
    value = measure.value
    if measure.name not in baseline.measures:
        return CheckCase(check, name, measure.prefix, value, tolerance, True,
                         f"skipped: {measure.name} is not in the baseline", measure.figure, skipped=True)
    before = baseline.measures[measure.name]
    if before is None:
        return CheckCase(check, name, measure.prefix, value, tolerance, True,
                         f"skipped: {measure.name} was not measured in the baseline", measure.figure,
                         skipped=True)
    if value is None:
        return CheckCase(check, name, measure.prefix, None, tolerance, False,
                         f"{measure.name}: could not be measured in this run (baseline {number_text(before)})",
                         measure.figure, baseline=before)
    delta = value - before
    moved = delta if grows_only else abs(delta)
    ok = math.isfinite(moved) and moved <= tolerance + _EPS * max(1.0, abs(before))
    verb = "within" if ok else ("grew by more than" if grows_only else "moved by more than")
    return CheckCase(
        check, name, measure.prefix, value, tolerance, ok,
        f"{measure.name}: {number_text(value)} (baseline {number_text(before)}, Δ {delta_text(delta)}) {verb} {limit}",
        measure.figure, baseline=before,
    )


def delta_text(delta: float) -> str:
    """ "+0.481", "-2", "0": a change as every output writes it."""
    if delta == 0:
        return "0"
    if not math.isfinite(delta):
        return "+inf" if delta > 0 else "-inf"
    return ("+" if delta > 0 else "-") + number_text(abs(delta))
