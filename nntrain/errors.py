"""Errors a user can cause and fix: the CLI prints their message as one sentence, no traceback."""

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any


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


def check_fraction(key: str, value: object, example: float = 0.1) -> float:
    """Return value if it is a number strictly between 0 and 1, else raise a UserError."""
    require(
        is_number(value) and 0 < value < 1,  # type: ignore[operator]
        f"{key} must be a number between 0 and 1 (exclusive), got {value!r}; "
        f"for example {key}={example}.",
    )
    return float(value)  # type: ignore[arg-type]


def settings_of(key: str, value: object, takes: Callable[..., object]) -> dict[str, Any]:
    """A group of settings (trainer.ema, trainer.lookahead, ...) as keyword arguments for
    `takes`: null is none given; a value that is no group (trainer.ema=abc) or a key `takes`
    does not know (+trainer.ema.foo=1, silently ignored or a TypeError otherwise) is refused."""
    if value is None:
        return {}
    known = [name for name in inspect.signature(takes).parameters if name != "self"]
    require(
        isinstance(value, Mapping),
        f"{key} must be a group of settings ({', '.join(known)}), e.g. {key}.{known[0]}=..., "
        f"got {value!r}.",
    )
    assert isinstance(value, Mapping)
    unknown = sorted(str(name) for name in value if name not in known)
    require(
        not unknown,
        f"{key} has no setting {unknown[0] if unknown else ''}; its settings are "
        f"{', '.join(known)}.",
    )
    return dict(value)
