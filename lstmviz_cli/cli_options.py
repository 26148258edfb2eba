"""The command line's shared declarations: option aliases, flags that look like flags, and the load options.

Every command that loads a model takes the same fifteen options (`--input`, `--device`, the trust
flags, ...). They are declared once here, in `LOAD_OPTIONS`, and `with_load_options` puts them into a
command's signature in place of its `load: LoadOptions` parameter, then builds that record from
them: a command function is its own options and one call. Defaults and help texts that state a
threshold are built from the records that hold it (`Thresholds`, `CheckConfig`), never restated.

No heavy imports: `lstmviz --help` reads this module.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.core import Context  # the vendored Click Typer's commands are built on
from typer._click.exceptions import UsageError
from typer.core import TyperCommand, TyperGroup, TyperOption
from typer.models import OptionInfo

from lstmviz_cli.analysis.checksettings import CheckConfig
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.commands.options import LoadOptions


# -- flags --------------------------------------------------------------------------------------------
def flag(name: str, help: str) -> OptionInfo:
    """A boolean flag. Typer shows a value type (`<bool>`) after every option unless it has a metavar,
    which reads as if `--force true` were the way to write it (issue 17): flags show none."""
    option: OptionInfo = typer.Option(name, help=help, metavar="")
    return option


_BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0"})


class Command(TyperCommand):
    """A command whose `--help` option, too, is shown as a flag (Typer declares it, not us), and which says
    so when a flag is given a value (`--force true`) instead of calling the value an extra argument."""

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        given = list(args)  # the parser consumes the list it is given
        try:
            rest = super().parse_args(ctx, args)
        except UsageError as error:
            self._refuse_flag_value(ctx, given, error)
            raise
        # a command taking several paths (check A.pt B.pt) reads 'true' as one of them: refuse it the
        # same way unless a file of that name exists
        self._refuse_flag_value(ctx, given, None, missing_only=True)
        return rest

    def _refuse_flag_value(self, ctx: Context, given: list[str], error: UsageError | None, *,
                           missing_only: bool = False) -> None:
        """Raise UsageError when a flag in `given` is followed by a boolean word (`--force true`)."""
        flags = {name for param in self.get_params(ctx) if isinstance(param, TyperOption) and param.is_flag
                 for name in param.opts}
        for flag_word, value in zip(given, given[1:], strict=False):
            if flag_word in flags and value.lower() in _BOOLEAN_WORDS and not (missing_only and Path(value).exists()):
                raise UsageError(f"{flag_word} is a flag and takes no value: write {flag_word} alone "
                                 f"(or leave it out), not '{flag_word} {value}'", ctx) from error


class Group(TyperGroup):
    """The root `lstmviz` group, with the same flag-looking `--help`."""

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


# -- thresholds, in words, from the records that hold them ------------------------------------------------
SATURATION_BAND = f"< {Thresholds.saturation_low:g} or > {Thresholds.saturation_high:g}"
HORIZON_SHARE = f"{Thresholds.horizon_mass:.0%}"


def in_words(value: float | int | str | None) -> str:
    """A default as a help text writes it: 0.95 -> "0.95", "25%", 0.0001 -> "1e-4", None -> "off"."""
    if value is None:
        return "off"
    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- options several commands share ---------------------------------------------------------------------
CheckpointArg = Annotated[
    Path, typer.Argument(help="Checkpoint: .pt/.pth dict or state_dict, .safetensors, TorchScript, pickled module.")
]
CheckpointsArg = Annotated[
    list[str], typer.Argument(help="One or more checkpoints; glob patterns such as 'ckpts/*.pt' are expanded.")
]
LayersOpt = Annotated[
    str | None, typer.Option("--layers", help="Only these layers, e.g. 'lstm/l1' or 'lstm/l0,lstm/l1/bwd'.")
]

ColorScaleOpt = Annotated[
    str, typer.Option("--color-scale", help="Heatmap colours: fixed (gates 0-1, states -1..1), robust (each panel "
                      "its 1st-99th percentile) or auto (robust only where fixed would show one flat colour).")
]


def force_flag(what: str) -> OptionInfo:
    """`--force`, saying which outputs it may replace."""
    return flag("--force", f"Overwrite {what} lstmviz did not write.")


# -- the load options -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _LoadOption:
    """One load option: its parameter name (a LoadOptions field, or "no_verify"), type and default."""

    name: str
    annotation: object
    default: object


LOAD_OPTIONS: tuple[_LoadOption, ...] = (
    _LoadOption("input", Annotated[
        Path | None,
        typer.Option("--input", "-i",
                     help="Sample input: .npy .npz .csv .pt .txt (default: the checkpoint's own sample)."),
    ], None),
    _LoadOption("tokens", Annotated[str | None, typer.Option("--tokens", help="Inline token ids, e.g. 6,7,0,0,1.")],
                None),
    _LoadOption("device", Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")], "cpu"),
    _LoadOption("trust_pickle", Annotated[
        bool, flag("--trust-pickle", "Allow loading a whole pickled nn.Module (runs code from the file).")
    ], False),
    _LoadOption("trust_torchscript", Annotated[
        bool, flag("--trust-torchscript", "Allow loading a TorchScript archive (runs code from the file).")
    ], False),
    _LoadOption("model_class", Annotated[
        str | None,
        typer.Option("--model-class",
                     help="Build your own model: 'package.module:Class' or 'path/to/file.py:Class'."),
    ], None),
    _LoadOption("model_kwargs", Annotated[
        str | None, typer.Option("--model-kwargs", help="JSON keyword arguments for --model-class.")
    ], None),
    _LoadOption("module", Annotated[
        str | None,
        typer.Option(
            "--module",
            help="Open up this hand-written recurrent cell (its named_modules() name, or the model's class name). "
            "Default: stock LSTM/GRU/RNN layers, or any user-written module whose sigmoid/tanh calls repeat per step.",
        ),
    ], None),
    _LoadOption("max_memory", Annotated[
        str | None,
        typer.Option("--max-memory",
                     help="Refuse inputs whose trace would exceed this (e.g. 2G, 512MiB, 50%; default 25% of RAM)."),
    ], None),
    _LoadOption("weights_key", Annotated[
        str | None,
        typer.Option(
            "--weights-key",
            help="Which state dict of a checkpoint that holds several, by key: 'model', or 'checkpoint/model' one "
            "level down.",
        ),
    ], None),
    _LoadOption("forward_args", Annotated[
        list[str] | None,
        typer.Option(
            "--forward-arg",
            help="Pass an array of the .npz input to the model's forward: PARAM=ARRAY (repeatable), e.g. "
            "text_lengths=lengths. Arrays named like a parameter, and 'lengths' for a parameter named like "
            "lengths, are passed without it.",
        ),
    ], None),
    _LoadOption("head", Annotated[
        str | None,
        typer.Option(
            "--head",
            help="How a rebuilt Linear head reads the recurrent output: all (every step), last (the last step) or "
            "final-states (h_n of the last layer; both directions concatenated). Default: the checkpoint's "
            "config 'head_on', else 'all', labelled as assumed.",
        ),
    ], None),
    _LoadOption("recurrent_only", Annotated[
        bool,
        flag(
            "--recurrent-only",
            "Trace the recurrent layers alone, with the sample as their direct input, when modules that cannot "
            "be rebuilt from weights may run before them. No head, no prediction; the page and JSON say so.",
        ),
    ], False),
    _LoadOption("batch_index", Annotated[
        int | None,
        typer.Option("--batch-index",
                     help="Trace only sequence N (from 0) of a batched sample: the page, figures and JSON are about it."),
    ], None),
)
NO_VERIFY = _LoadOption("no_verify", Annotated[
    bool,
    flag("--no-verify", f"Do not fail when recorded gates miss the real outputs by > {in_words(CheckConfig.max_verify_error)}: "
         "show every error (in red) instead."),
], False)


def with_load_options(
    *, checkpoint: str, no_verify: bool = True
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Put the load options into a command's signature in place of its `load: LoadOptions` parameter.

    The command receives one `LoadOptions`, its checkpoint read from the parameter named `checkpoint`
    (the first one when that is a list: a batch replaces it per checkpoint). `no_verify=False` leaves
    out `--no-verify` (`check` decides verification from its settings).
    """
    extra = (*LOAD_OPTIONS, NO_VERIFY) if no_verify else LOAD_OPTIONS
    names = {option.name for option in extra}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        signature = inspect.signature(command, eval_str=True)
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name != "load":
                parameters.append(parameter)
                continue
            parameters.extend(
                inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, annotation=option.annotation,
                                  default=option.default)
                for option in extra
            )

        @functools.wraps(command)
        def run(**values: object) -> None:
            flags = {name: values.pop(name) for name in names}
            first = values[checkpoint]
            path = Path(str(first[0] if isinstance(first, Sequence) and not isinstance(first, str) else first))
            verify = not flags.pop("no_verify", False)
            command(load=_load_options(path, verify, flags), **values)

        # Typer reads this signature (inspect stops unwrapping at __signature__), not the command's own.
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def _load_options(checkpoint: Path, verify: bool, flags: dict[str, object]) -> LoadOptions:
    """The LoadOptions record of the flags' values (a repeated --forward-arg arrives as a list or None)."""
    fields: dict[str, Any] = dict(flags)  # Typer converted each value to its declared type above
    fields["forward_args"] = tuple(fields["forward_args"] or ())
    return LoadOptions(checkpoint=checkpoint, verify=verify, **fields)
