"""Argument checks shared by the library: one wording for every "must be a positive integer".

Each check returns the value (converted where that is safe) or raises an error whose message
starts with the Python argument's name and whose ``argument`` attribute holds it, so the CLI
can say ``--budget`` where the library says ``budget`` (:func:`gpunet.cli.main` maps them).
The error type is :class:`ArgumentError` unless the caller names its own (``error=``), which
must accept one message string.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Optional, Type

from .errors import GPUNetError

__all__ = ["ArgumentError", "argument_error", "positive_int", "non_negative_int", "int_at_least", "non_negative",
           "positive", "one_of"]


class ArgumentError(GPUNetError, ValueError):
    """A function argument has a value it cannot take; ``argument`` names it."""

    argument: Optional[str] = None


def argument_error(argument: str, message: str, error: Type[Exception] = ArgumentError) -> Exception:
    """``error(message)`` tagged with the argument it is about (``message`` starts with its name)."""
    e = error(message)
    e.argument = argument
    return e


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_at_least(value: Any, name: str, lo: int, what: str, error: Type[Exception]) -> int:
    if not _is_int(value) or value < lo:
        raise argument_error(name, f"{name} must be {what}, got {value!r}", error)
    return int(value)


def positive_int(value: Any, name: str, error: Type[Exception] = ArgumentError) -> int:
    """``value`` as an int >= 1 (bools refused)."""
    return _int_at_least(value, name, 1, "a positive integer", error)


def non_negative_int(value: Any, name: str, error: Type[Exception] = ArgumentError) -> int:
    """``value`` as an int >= 0 (bools refused)."""
    return _int_at_least(value, name, 0, "an integer >= 0", error)


def int_at_least(value: Any, name: str, lo: int, error: Type[Exception] = ArgumentError) -> int:
    """``value`` as an int >= ``lo`` (bools refused)."""
    return _int_at_least(value, name, lo, f"an integer >= {lo}", error)


def _number(value: Any, name: str, ok, what: str, error: Type[Exception]) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise argument_error(name, f"{name} must be {what}, got {value!r}", error)
    return float(value)


def positive(value: Any, name: str, error: Type[Exception] = ArgumentError) -> float:
    """``value`` as a finite float > 0."""
    return _number(value, name, lambda v: v > 0, "a positive number", error)


def non_negative(value: Any, name: str, error: Type[Exception] = ArgumentError) -> float:
    """``value`` as a finite float >= 0."""
    return _number(value, name, lambda v: v >= 0, "a number >= 0", error)


def one_of(value: Any, choices: Iterable[Any], name: str, error: Type[Exception] = ArgumentError) -> Any:
    """``value`` if it is one of ``choices``, else an error listing them."""
    choices = tuple(choices)
    if value not in choices:
        shown = ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)
        raise argument_error(name, f"{name} must be one of {shown}, got {value!r}", error)
    return value
