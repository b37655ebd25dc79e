"""Errors a user can cause and fix: the CLI prints their message as one sentence, no traceback."""

import math


class UserError(Exception):
    """A problem with the user's input (config value, data, file); the message says how to fix it."""


def first_line(error: BaseException | str) -> str:
    """The first line of an exception's message (or of a text): the rest is most often a long
    hint (CUDA_LAUNCH_BLOCKING) or a traceback. An exception without a message gives its type's
    name (EOFError from a 0-byte file says nothing)."""
    lines = str(error).strip().splitlines()
    if lines:
        return lines[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""


def require(condition: bool, message: str) -> None:
    """Raise UserError(message) unless condition holds."""
    if not condition:
        raise UserError(message)


def is_number(value: object) -> bool:
    """True for finite int and float values: bool is not a number in a config, and no setting
    means anything at nan or inf (optimizer.lr=inf would only end in a NaN loss)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(key: str, value: object, example: int = 10) -> int:
    """Return value if it is an integer >= 1, else raise a UserError naming the config key."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= 1,
        f"{key} must be a positive integer, got {value!r}; for example {key}={example}.",
    )
    return value  # type: ignore[return-value]

