"""Validation errors as operators read them: one line per problem, naming the field by its path."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def error_lines(exc: ValidationError, hint: Callable[[ErrorDetails], str] | None = None) -> list[str]:
    """`path.to.field: what is wrong` for each error; `hint` may add to a line (a did-you-mean)."""
    lines = []
    for err in exc.errors():
        where = _field_path(err["loc"]) or "(top level)"
        lines.append(f"{where}: {err['msg']}{hint(err) if hint else ''}")
    return lines


def _field_path(loc: tuple[int | str, ...]) -> str:
    """A field's path as the file spells it: ("scope", "filters", 0, 1, "value") → scope.filters[0][1].value."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def describe_errors(exc: ValidationError, hint: Callable[[ErrorDetails], str] | None = None) -> str:
    """Every error on its own indented line, for a multi-line message or log record."""
    return "\n".join(f"  {line}" for line in error_lines(exc, hint))
