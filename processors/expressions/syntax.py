"""The syntax tree the parser builds and the compiler turns into callables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StringLiteral:
    value: str
    position: int


@dataclass(frozen=True, slots=True)
class IntegerLiteral:
    value: int
    position: int


@dataclass(frozen=True, slots=True)
class BooleanLiteral:
    value: bool
    position: int


@dataclass(frozen=True, slots=True)
class EnumLiteral:
    """A bare enum name: vbTextCompare/vbBinaryCompare or an encoding (Unicode, ASCII, UTF8)."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Attribute:
    """`[name]`: a source attribute of the Entra object."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class TokenReference:
    """`%Name%`: a placeholder bound from configuration when the expression is compiled."""

    name: str
    position: int


@dataclass(frozen=True, slots=True)
class Missing:
    """An optional positional argument left empty, as in `Replace([mail], "x", , ,"", ,)`."""

    position: int


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    arguments: tuple[Node, ...]
    position: int


@dataclass(frozen=True, slots=True)
class BinaryOperation:
    """A comparison (`=`, `<>`, `>`, `>=`, `<`, `<=`) or `&` concatenation."""

    operator: str
    left: Node
    right: Node
    position: int


Literal = StringLiteral | IntegerLiteral | BooleanLiteral | EnumLiteral
Node = Literal | Attribute | TokenReference | Missing | Call | BinaryOperation


def attributes_in(node: Node) -> Iterator[str]:
    """The names of every `[attribute]` in the tree, in the order written."""
    match node:
        case Attribute():
            yield node.name
        case Call():
            for argument in node.arguments:
                yield from attributes_in(argument)
        case BinaryOperation():
            yield from attributes_in(node.left)
            yield from attributes_in(node.right)
