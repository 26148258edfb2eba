"""Summary: the checkpoint, the input, the prediction, what lstmviz knows about the model, the layers.

The "What lstmviz knows about this model" card states where the model came from, every tensor placed
or not, the head (rebuilt or not) and each verification level with its badge: every number below it
rests on these facts.
"""

from __future__ import annotations

import numpy as np

from lstmviz_cli.glyphs import visible
from lstmviz_cli.loading.records import ModelInfo
from lstmviz_cli.loading.summary import loading_notes
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.model import (
    Badge,
    Block,
    Card,
    Cell,
    Grid,
    Heading,
    KeyValue,
    KeyValues,
    Paragraph,
    Row,
    Section,
    Span,
    Table,
    inline,
)
from lstmviz_cli.page.view import total_steps, valid_steps
from lstmviz_cli.tracing.provenance import IN_MEMORY, Provenance

_BADGES: dict[str, Badge] = {
    "ok": Badge("ok", "ok"), "bad": Badge("bad", "differs"), "not-checked": Badge("warn", "not checked"),
}


def loading_rows(info: ModelInfo) -> list[tuple[str, str]]:
    """Summary rows on where the weights were, how they were stored and what loading skipped."""
    rows = []
    if info.weights_key or info.key_prefix:
        where = f"{info.weights_key!r} of the checkpoint dict" if info.weights_key else "the state dict"
        if info.key_prefix:
            owner = "the LightningModule's attribute" if info.lightning else "an attribute"
            where += f", keys without {owner} prefix {info.key_prefix!r}"
        rows.append(("weights", ("PyTorch Lightning checkpoint: " if info.lightning else "") + where))
    if info.stored_dtype and info.stored_dtype != "float32":
        stored = f"{info.stored_dtype} weights"
        if info.run_dtype and info.run_dtype not in info.stored_dtype.split("/"):
            stored += f", run in {info.run_dtype} (upcast" + (" on CPU)" if info.device == "cpu" else ")")
        elif info.run_dtype:
            stored += f", run in {info.run_dtype}"
        rows.append(("stored precision", stored))
    if info.vocab_source and info.vocab:
        rows.append(("vocabulary", f"{len(info.vocab)} tokens from {info.vocab_source!r}"))
    if info.labels_source and info.output_labels:
        rows.append(("output labels", f"{len(info.output_labels)} labels from {info.labels_source!r}"))
    rows.extend(("loading note", note) for note in loading_notes(info))
    return rows


def format_bytes(size: float) -> str:
    """1234567 -> "1.2 MB"."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(size)


def steps_text(ctx: PageContext) -> str:
    """The summary's step count: `8 (sequence 0: 6 valid, then padding)` when element 0 is padded."""
    total, valid = total_steps(ctx.run.trace), valid_steps(ctx.run.trace)
    return str(total) if valid == total else f"{total} (sequence 0: {valid} valid, then padding)"


def no_prediction_reason(facts: Provenance) -> str:
    """Why the page shows no prediction: said where the prediction would be."""
    if facts.recurrent_only:
        return ("No prediction: --recurrent-only traces the recurrent layers alone, without the model's head. "
                "Their output is hidden states, not classes or values.")
    if not facts.has_head:
        why = f" ({facts.head_note})" if facts.head_note else ""
        return ("No prediction: no output head was rebuilt" + why + ". The model's output here is the last "
                "recurrent layer's hidden states, which are not classes or values; pass --model-class to run "
                "your own model.")
    return "No prediction could be read from the model's output."


def knowledge_rows(facts: Provenance) -> list[KeyValue]:
    """The "What lstmviz knows" card: the model's source, its tensors, its head, every verification level."""
    rows = [KeyValue("model", visible(facts.description, 600))]
    if facts.accounting is not None:
        acc = facts.accounting
        text = (f"all {acc.total} tensors placed" if not acc.unused
                else f"placed {acc.placed} of {acc.total}; not used ({len(acc.unused)}): {acc.unused_text()}")
        details = tuple(visible(key, 200) for key in acc.unused) if len(acc.unused) > 1 else ()
        rows.append(KeyValue("tensors", visible(text, 600), details=details,
                             details_label=f"every tensor not used ({len(details)})"))
    if facts.source in ("rebuilt", "torchscript"):
        if facts.head is not None:
            text = facts.head.basis()
        else:
            text = "none rebuilt" + (f" ({facts.head_note})" if facts.head_note else "")
        rows.append(KeyValue("head", visible(text, 600)))
    for k, level in enumerate(facts.verification):
        rows.append(KeyValue("verified" if k == 0 else "", visible(level.text(), 400), badge=_BADGES[level.status]))
    return rows


def _prediction(ctx: PageContext) -> tuple[Block, ...]:
    prediction = ctx.analysis.prediction
    if prediction is None:
        return (Paragraph((no_prediction_reason(ctx.facts),), role="note", user=True),)
    if prediction.kind == "topk":
        rows = [(label, f"{100 * value:.1f}%") for label, value in prediction.items]
    else:
        rows = [(label, f"{value:.4g}") for label, value in prediction.items]
    if not rows:
        return (Paragraph((no_prediction_reason(ctx.facts),), role="note", user=True),)
    blocks: list[Block] = [Paragraph((prediction.note,), role="note")]
    if prediction.basis:
        blocks.append(Paragraph((visible(prediction.basis, 300),), role="basis", user=True))
    table_rows = tuple(Row((Cell((visible(str(label), 40),), user=True), Cell((value,)))) for label, value in rows)
    blocks.append(Table(columns=(), rows=table_rows))
    return tuple(blocks)


def _stamps(ctx: PageContext) -> list[Block]:
    info = ctx.run.loaded.info
    blocks: list[Block] = []
    if info.unsafe:
        blocks.append(Paragraph(("Loaded with unsafe deserialization: this checkpoint was allowed to run code "
                                 "(--trust-pickle / --trust-torchscript).",), role="stamp"))
    if ctx.facts.recurrent_only:
        embedding = info.embedding
        front = ", ".join(ctx.facts.accounting.front) if ctx.facts.accounting else ""
        parts = inline(
            "Recurrent layers only (--recurrent-only): they were fed the sample directly",
            *((" (token ids through the rebuilt embedding ", Span(visible(str(embedding), 60)), ")")
              if embedding else ()),
            *((", without ", Span(visible(front, 200)), ", which may run before them in your model")
              if front else ()),
            ". No head and no prediction; every number on this page is about the recurrent layers alone.",
        )
        blocks.append(Paragraph(parts, role="stamp", id=ctx.ids.take("recurrent-only")))
    return blocks


def summary_section(ctx: PageContext) -> Section:
    """Checkpoint facts, recurrent layer configurations, input, prediction, verification."""
    section_id = ctx.ids.take("summary")
    info = ctx.run.loaded.info
    in_memory = info.format == IN_MEMORY
    source = [("model", f"{info.name}, passed from Python (in memory; no file was read)")] if in_memory else [
        ("file", info.name),
        ("format", info.format + (" (rebuilt from its weights)" if info.rebuilt else "")),
        ("size", format_bytes(info.size_bytes)),
    ]
    checkpoint = [
        *source,
        ("parameters", f"{info.n_params:,}"),
        ("device", info.device),
        *loading_rows(info),
    ]
    if info.task:
        checkpoint.append(("task", info.task))
    if info.description:
        checkpoint.append(("description", info.description))
    batch = int(np.asarray(ctx.run.sample.values).shape[0])
    sample = (
        KeyValue("sample", visible(ctx.run.sample.description, 200)),
        KeyValue("steps", steps_text(ctx), user=False),
        KeyValue("batch", f"{batch}" + (" (figures show element 0)" if batch > 1 else ""), user=False),
    )
    cards = Grid((
        Card("Model" if in_memory else "Checkpoint", (KeyValues(tuple(KeyValue(k, visible(v, 400)) for k, v in checkpoint)),)),
        Card("Input", (KeyValues(sample),)),
        Card("Prediction", _prediction(ctx)),
    ), kind="cards")
    knowledge = Card("What lstmviz knows about this model", (KeyValues(tuple(knowledge_rows(ctx.facts))),),
                     id=ctx.ids.take("model-knowledge"), wide=True)
    modules = Table(
        columns=("module", "type", "input", "hidden", "proj", "layers", "bidirectional", "batch_first"),
        rows=tuple(
            Row((
                Cell((visible(name, 60),), user=True), Cell((cfg.kind,)), Cell((str(cfg.input_size),)),
                Cell((str(cfg.hidden_size),)), Cell((str(cfg.proj_size or "–"),)), Cell((str(cfg.num_layers),)),
                Cell(("yes" if cfg.bidirectional else "no",)), Cell(("not known" if cfg.batch_first is None else "yes" if cfg.batch_first else "no",)),
            ))
            for name, cfg in ctx.run.trace.modules.items()
        ),
    )
    blocks = (*_stamps(ctx), cards, knowledge, Heading(("Recurrent layers",)), modules)
    return Section(section_id, "Summary", blocks)
