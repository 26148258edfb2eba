"""`lstmviz trace`: every series of every recurrent layer saved as arrays (.npz), with a JSON summary."""

from __future__ import annotations

from pathlib import Path

from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.output import check_distinct, check_writable, write_atomic, write_json
from lstmviz_cli.tracing.provenance import describe_run


def run_trace_command(
    options: LoadOptions, *, output: Path, json_path: Path | None, dtype: str, force: bool
) -> str:
    """`lstmviz trace`: save every series to .npz (and a JSON summary)."""
    check_distinct({"-o": output, "--json": json_path}, inputs={"--input": options.input})
    check_writable(output, force=force)
    if json_path is not None:
        check_writable(json_path, force=force)
    run = pipeline.load_and_trace(options)
    facts = describe_run(run)
    model = {"model": facts.to_json()}
    write_atomic(output, lambda tmp: run.trace.save_npz(tmp, dtype=dtype, extra=model), force=force)
    if json_path is not None:
        write_json(json_path, {**run.trace.summary(), **model}, force=force)
    pipeline.announce(run)
    keys = run.trace.keys()
    levels = "; ".join(v.text() for v in facts.verification)
    return f"wrote {output} ({len(keys)} arrays; {levels})"
