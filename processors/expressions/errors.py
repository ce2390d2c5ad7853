"""Error types of the expression language: syntax, static check and per-object evaluation."""

from __future__ import annotations


class ExpressionError(Exception):
    """Base of every expression error; carries the position and, in a mapping set, the target attribute."""

    def __init__(self, message: str, *, position: int | None = None, attribute: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.attribute = attribute

    def with_attribute(self, attribute: str) -> ExpressionError:
        """The same error, naming the target attribute whose expression it belongs to."""
        return type(self)(self.message, position=self.position, attribute=attribute)

    def __str__(self) -> str:
        where = f" at position {self.position}" if self.position is not None else ""
        owner = f"{self.attribute}: " if self.attribute else ""
        return f"{owner}{self.message}{where}"


class ExpressionSyntaxError(ExpressionError):
    """The text is not a well-formed expression."""


class ExpressionCheckError(ExpressionError):
    """Well-formed, but wrong: unknown function, wrong arity, wrong literal type, unbound %Token%."""


class ExpressionEvaluationError(ExpressionError):
    """Evaluating against one object failed (including Error()); it is that object's error."""
