"""The runtime value model shared by the functions: NULL, text, integers, booleans, dates, multi-values.

NULL is `None` (an absent attribute). A multi-valued attribute is a `list`. Dates are timezone-aware
`datetime`s in UTC; they become the documented `M/d/yyyy h:mm:ss tt` text wherever text is needed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from processors.expressions.errors import ExpressionEvaluationError

Value = str | int | bool | datetime | list | None


class _IgnoreFlow:
    """Sentinel result: IgnoreFlowIfNullOrEmpty dropped the target attribute from the flow."""

    _instance: _IgnoreFlow | None = None

    def __new__(cls) -> _IgnoreFlow:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "IGNORE_FLOW"


IGNORE_FLOW: Final = _IgnoreFlow()


def format_datetime(value: datetime) -> str:
    """The .NET `M/d/yyyy h:mm:ss tt` form (invariant culture) that CDate, DateAdd and Now document."""
    hour = value.hour % 12 or 12
    meridiem = "AM" if value.hour < 12 else "PM"
    return f"{value.month}/{value.day}/{value.year} {hour}:{value.minute:02d}:{value.second:02d} {meridiem}"


def single(value: Value, function: str) -> Value:
    """The one value of a possibly multi-valued argument; functions on scalars reject several values."""
    if type(value) is not list:
        return value
    if not value:
        return None
    if len(value) == 1:
        return value[0]
    raise ExpressionEvaluationError(f"{function}() expects a single value, got {len(value)} values")


def as_text(value: Value, function: str) -> str | None:
    """Text form of a value as .NET would render it (booleans as True/False); NULL stays None."""
    if type(value) is str or value is None:
        return value
    if type(value) is list:
        return as_text(single(value, function), function)
    if type(value) is bool:
        return "True" if value else "False"
    if type(value) is datetime:
        return format_datetime(value)
    return str(value)


def as_integer(value: Value, function: str) -> int | None:
    """Integer form of a number or a numeric string (decimal or `&H` hex); NULL stays None."""
    value = single(value, function)
    if value is None or type(value) is int:
        return value
    if type(value) is bool:
        # Only BitAnd/Left/… take numbers; a boolean there is a mistake worth reporting, not coercing.
        raise ExpressionEvaluationError(f"{function}() expects a number, got {value}")
    if type(value) is str:
        text = value.strip()
        try:
            return int(text, 16) if text[:2] in ("&H", "&h") else int(text)
        except ValueError:
            pass
    raise ExpressionEvaluationError(f"{function}() expects a number, got {value!r}")


def as_boolean(value: Value, function: str) -> bool | None:
    """Boolean form: booleans, "True"/"False" (any case, as .NET Boolean.Parse) and numbers (non-zero)."""
    value = single(value, function)
    if value is None or type(value) is bool:
        return value
    if type(value) is int:
        return value != 0
    if type(value) is str:
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        try:
            return int(lowered) != 0
        except ValueError:
            pass
    raise ExpressionEvaluationError(f"{function}() expects True or False, got {value!r}")


def as_values(value: Value) -> list:
    """The values of a possibly multi-valued argument (NULL has none)."""
    if value is None:
        return []
    return value if type(value) is list else [value]


def is_null_or_empty(value: Value) -> bool:
    return value is None or value == "" or value == []
