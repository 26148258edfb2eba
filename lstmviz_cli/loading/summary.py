"""What loading skipped or found elsewhere, in words: for stderr, `trace --json` and the report's summary."""

from __future__ import annotations

from lstmviz_cli.loading.records import JSON, ModelInfo


def loading_summary(info: ModelInfo) -> dict[str, JSON]:
    """Where the weights were found and how they were stored, for `trace --json` (empty: nothing to say)."""
    fields: dict[str, JSON] = {
        "weights_key": info.weights_key,
        "key_prefix_removed": info.key_prefix,
        "lightning": info.lightning or None,
        "stored_dtype": info.stored_dtype if info.stored_dtype != "float32" else None,
        "run_dtype": info.run_dtype if info.stored_dtype not in (None, "float32") else None,
        "vocab_source": info.vocab_source,
        "output_labels_source": info.labels_source,
        "notes": list[JSON](loading_notes(info)) or None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def loading_notes(info: ModelInfo) -> list[str]:
    """What loading skipped or left unused, one sentence each (stderr and the report's summary)."""
    notes = []
    if info.skipped:
        used = ""
        source = info.vocab_source or ""
        if any(source == where or source.startswith(f"{where}/") for where, _cls in info.skipped):
            used = f"; the vocabulary inside ({source!r}, {len(info.vocab or ())} tokens) is used"
        objects = ", ".join(f"{where!r} ({cls})" for where, cls in info.skipped)
        notes.append(
            f"opened without running code: {objects} "
            f"({'a class' if len(info.skipped) == 1 else 'classes'} lstmviz did not import, read as plain data){used}"
        )
    source = info.vocab_source or ""
    for where, cls in info.objects_read:
        if source == where or source.startswith(f"{where}/"):
            notes.append(f"{where!r} is a {cls} object: the vocabulary inside ({source!r}, "
                         f"{len(info.vocab or ())} tokens) is used")
    notes.extend(info.load_notes)
    return notes
