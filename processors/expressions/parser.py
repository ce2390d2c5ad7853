"""Lexer and recursive-descent parser for the Entra attribute-mapping expression syntax (reference §3.1).

Grammar (VBA-like; `&` binds tighter than comparisons, comparisons do not chain):

    expression := concat [("=" | "<>" | ">" | ">=" | "<" | "<=") concat]
    concat     := primary {"&" primary}
    primary    := NAME "(" [argument {"," argument}] ")" | "[" attribute "]" | STRING | INTEGER
                | "&H" HEX | True | False | ENUM | "%" TOKEN "%" | "(" expression ")"
    argument   := expression | <empty>        (an empty positional argument)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from processors.expressions.errors import ExpressionSyntaxError
from processors.expressions.syntax import (
    Attribute,
    BinaryOperation,
    BooleanLiteral,
    Call,
    EnumLiteral,
    IntegerLiteral,
    Missing,
    Node,
    StringLiteral,
    TokenReference,
)

ENUM_NAMES = frozenset({"vbTextCompare", "vbBinaryCompare", "Unicode", "ASCII", "UTF8"})
COMPARISONS = frozenset({"=", "<>", ">", ">=", "<", "<="})
# Limits checked when the configuration loads, each far above any real mapping: deep enough, long
# enough, and small enough that neither the compiler's nor the evaluator's recursion (a chain of
# `&` is a nested tree too) can reach Python's limit, and no literal costs much to hold or convert.
MAX_NESTING = 100  # nested calls, parentheses and `&` terms together
MAX_LENGTH = 10_000  # characters of one expression
MAX_LITERAL = 4_000  # characters of one string literal
MAX_INTEGER_DIGITS = 19  # a 64-bit integer, as .NET's expressions take them

# `&H` directly followed by a hex digit is a hex literal (VB), otherwise `&` is concatenation.
_TOKEN_PATTERN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<hex>&H[0-9A-Fa-f]+)
  | (?P<op><>|<=|>=|=|<|>|&)
  | (?P<integer>-?[0-9]+)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<attribute>\[[^\[\]]*\])
  | (?P<token>%[A-Za-z_][A-Za-z0-9_.-]*%)
  | (?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_STRING_ESCAPE = re.compile(r"\\([\\\"])")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int


def _unescape(body: str) -> str:
    # Only `\\` and `\"` are escapes; any other backslash stays, as regexes and DN strings (`"\,"`,
    # `"\2C"`) in Microsoft's examples rely on it.
    return _STRING_ESCAPE.sub(r"\1", body)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN_PATTERN.match(text, position)
        if match is None:
            char = text[position]
            if char == '"':
                raise ExpressionSyntaxError("unterminated string: missing closing '\"'", position=position)
            if char == "[":
                raise ExpressionSyntaxError("unterminated attribute: missing closing ']'", position=position)
            if char == "%":
                raise ExpressionSyntaxError("malformed token: expected %Name%", position=position)
            raise ExpressionSyntaxError(f"unexpected character {char!r}", position=position)
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = _tokenize(text)
        self._index = 0
        self._depth = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def parse(self) -> Node:
        if self._peek().kind == "end":
            raise ExpressionSyntaxError("empty expression", position=0)
        node = self._expression()
        token = self._peek()
        if token.kind != "end":
            what = "')' without a matching '('" if token.text == ")" else repr(token.text)
            raise ExpressionSyntaxError(f"unexpected {what} after the end of the expression", position=token.position)
        return node

    def _expression(self) -> Node:
        self._deeper(self._peek())
        left = self._concat()
        token = self._peek()
        if token.kind == "op" and token.text in COMPARISONS:
            self._advance()
            left = BinaryOperation(token.text, left, self._concat(), token.position)
        self._depth -= 1
        return left

    def _concat(self) -> Node:
        depth = self._depth
        left = self._primary()
        while (token := self._peek()).kind == "op" and token.text == "&":
            self._advance()
            self._deeper(token)
            left = BinaryOperation("&", left, self._primary(), token.position)
        self._depth = depth
        return left

    def _deeper(self, token: _Token) -> None:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise ExpressionSyntaxError(
                f"expression nested deeper than {MAX_NESTING} (calls, parentheses and '&' terms together)",
                position=token.position,
            )

    def _primary(self) -> Node:
        token = self._advance()
        match token.kind:
            case "string":
                if len(token.text) - 2 > MAX_LITERAL:
                    raise ExpressionSyntaxError(
                        f"string literal of {len(token.text) - 2} characters: at most {MAX_LITERAL}",
                        position=token.position,
                    )
                return StringLiteral(_unescape(token.text[1:-1]), token.position)
            case "integer":
                return IntegerLiteral(int(_digits(token, token.text.lstrip("-"))), token.position)
            case "hex":
                return IntegerLiteral(int(_digits(token, token.text[2:]), 16), token.position)
            case "attribute":
                name = token.text[1:-1].strip()
                if not name:
                    raise ExpressionSyntaxError("empty attribute name '[]'", position=token.position)
                return Attribute(name, token.position)
            case "token":
                return TokenReference(token.text[1:-1], token.position)
            case "name":
                return self._name(token)
            case "punct" if token.text == "(":
                inner = self._expression()
                self._expect_close(token)
                return inner
        raise ExpressionSyntaxError(
            f"expected a function call, an attribute [name], a string, a number, True/False or %Token%, "
            f"found {_describe(token)}",
            position=token.position,
        )

    def _name(self, token: _Token) -> Node:
        if self._peek().text == "(":
            self._advance()
            return Call(token.text, self._arguments(token), token.position)
        if token.text in ("True", "False"):
            return BooleanLiteral(token.text == "True", token.position)
        if token.text in ENUM_NAMES:
            return EnumLiteral(token.text, token.position)
        raise ExpressionSyntaxError(
            f"unknown name {token.text!r}: expected '(' after a function name "
            f"(or one of True, False, {', '.join(sorted(ENUM_NAMES))})",
            position=token.position,
        )

    def _arguments(self, opener: _Token) -> tuple[Node, ...]:
        if self._peek().text == ")":
            self._advance()
            return ()
        arguments: list[Node] = []
        while True:
            token = self._peek()
            if token.text in (",", ")"):
                arguments.append(Missing(token.position))
            else:
                arguments.append(self._expression())
            token = self._advance()
            if token.text == ",":
                continue
            if token.text == ")":
                return tuple(arguments)
            if token.kind == "end":
                raise ExpressionSyntaxError(
                    f"missing ')' to close '{opener.text}(' opened at position {opener.position}",
                    position=token.position,
                )
            raise ExpressionSyntaxError(
                f"expected ',' or ')' in the arguments of {opener.text}(), found {_describe(token)}",
                position=token.position,
            )

    def _expect_close(self, opener: _Token) -> None:
        token = self._advance()
        if token.text != ")":
            raise ExpressionSyntaxError(
                f"expected ')' to close '(' opened at position {opener.position}, found {_describe(token)}",
                position=token.position,
            )


def _digits(token: _Token, digits: str) -> str:
    if len(digits.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise ExpressionSyntaxError(
            f"integer literal of {len(digits)} digits: at most {MAX_INTEGER_DIGITS}", position=token.position
        )
    return token.text if token.kind == "integer" else digits


def _describe(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


def parse(text: str) -> Node:
    """Parse expression text into a syntax tree; raises ExpressionSyntaxError naming position and expectation."""
    if len(text) > MAX_LENGTH:
        raise ExpressionSyntaxError(f"expression of {len(text)} characters: at most {MAX_LENGTH}", position=MAX_LENGTH)
    return _Parser(text).parse()
