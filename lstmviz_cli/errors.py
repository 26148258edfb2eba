"""The tool's own errors: each carries a one-line, actionable message and the exit code it maps to."""

from __future__ import annotations

# Exit codes, documented in the README. Kept here so the CLI and the tests read the same numbers.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1
# A batch (`report --out-dir`, `figures`) where some checkpoint failed and the others were written.
EXIT_SOME_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class LstmvizError(Exception):
    """An expected failure the user can act on; the CLI prints its message, never a traceback."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class CheckpointError(LstmvizError):
    """The checkpoint file cannot be read, or holds nothing lstmviz can trace."""


class UnsafeCheckpointError(CheckpointError):
    """Loading the checkpoint would execute code, and the user did not opt in."""


class InputError(LstmvizError):
    """The sample input does not fit the model (shape, dtype, vocabulary, values)."""


class ModelError(LstmvizError):
    """The model could not be built or run on the sample input."""


class VerificationError(LstmvizError):
    """Reconstructed gates do not reproduce the module's real outputs.

    `measured`: the largest error found (absolute), when one was computed; `lstmviz check` reports it.
    """

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, measured: float | None = None) -> None:
        super().__init__(message)
        self.measured = measured


class OutputError(LstmvizError):
    """An output path cannot be written, or writing it would overwrite something we do not own."""


class ExplainError(LstmvizError):
    """An explanation method (attribution, ablation, control) cannot run on this model or input."""


class ConservationError(ExplainError):
    """A decomposition's parts do not add up to the model's real output (or its traced states)."""

    exit_code = EXIT_INTERNAL


class CheckFailed(LstmvizError):
    """`lstmviz check` found a threshold crossed."""

    exit_code = EXIT_CHECK_FAILED


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for one-line errors."""
    text = str(error).strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."
