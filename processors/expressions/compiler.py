"""Static check and compilation: syntax tree → checked tree → one Python callable per node.

The check runs when the configuration is loaded (unknown function, arity, literal types, unbound
%Token%), so a wrong mapping fails there and then, not at the first object.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from difflib import get_close_matches

from processors.expressions import dates
from processors.expressions.context import EvaluationContext, Evaluator, IgnoreFlowSignal
from processors.expressions.errors import (
    ExpressionCheckError,
    ExpressionError,
    ExpressionEvaluationError,
)
from processors.expressions.functions import (
    COMPARE,
    DATE_FORMAT,
    ENCODING,
    FUNCTIONS,
    INDEX,
    INTEGER,
    INTERVAL,
    STYLES,
    FunctionSpec,
    Parameter,
    lookup_function,
)
from processors.expressions.parser import parse
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
    attributes_in,
)
from processors.expressions.values import IGNORE_FLOW, Value, as_text, format_datetime, single

_COMPARE_NAMES = frozenset({"vbTextCompare", "vbBinaryCompare"})
_ENCODING_NAMES = frozenset({"Unicode", "ASCII", "UTF8"})
_SYSTEM_RANDOM = random.SystemRandom()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _constant(value: Value) -> Evaluator:
    return lambda context: value


def _attribute(name: str) -> Evaluator:
    lowered = name.lower()

    def read(context: EvaluationContext) -> Value:
        source = context.source
        if name in source:
            return source[name]  # type: ignore[return-value]
        # Entra attribute names are case-insensitive; the exact spelling above is only the fast path.
        for key, value in source.items():
            if key.lower() == lowered:
                return value  # type: ignore[return-value]
        return None

    return read


def _concatenate(left: Evaluator, right: Evaluator) -> Evaluator:
    def concatenate(context: EvaluationContext) -> Value:
        return (as_text(left(context), "&") or "") + (as_text(right(context), "&") or "")

    return concatenate


def _comparable(value: Value, other: Value) -> tuple[int, object]:
    # Numbers compare as numbers (`DateDiff(…) > 5`), dates as dates, everything else as ordinal text;
    # NULL compares as "" (the reference warns that Microsoft's service fails such conditions instead).
    if type(value) is int or (type(other) is int and type(value) is str and value.strip().lstrip("-").isdigit()):
        return 0, int(value)
    if type(value) is datetime:
        return 1, value
    return 2, as_text(value, "comparison") or ""


_COMPARISONS: dict[str, Callable[[object, object], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _compare(operator: str, left: Evaluator, right: Evaluator) -> Evaluator:
    test = _COMPARISONS[operator]

    def compare(context: EvaluationContext) -> Value:
        a, b = single(left(context), operator), single(right(context), operator)
        kind_a, key_a = _comparable(a, b)
        kind_b, key_b = _comparable(b, a)
        if kind_a != kind_b:
            kind_a, key_a, kind_b, key_b = 2, as_text(a, operator) or "", 2, as_text(b, operator) or ""
        return test(key_a, key_b)

    return compare


def _call(function: Callable[..., Value], arguments: list[Evaluator]) -> Evaluator:
    # Unrolled for the common arities: a closure per arity is measurably faster than `*args`.
    match arguments:
        case []:
            return lambda context: function()
        case [a]:
            return lambda context: function(a(context))
        case [a, b]:
            return lambda context: function(a(context), b(context))
        case [a, b, c]:
            return lambda context: function(a(context), b(context), c(context))
    return lambda context: function(*[argument(context) for argument in arguments])


class _Compiler:
    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = tokens
        self.errors: list[ExpressionCheckError] = []

    def _error(self, message: str, position: int) -> None:
        self.errors.append(ExpressionCheckError(message, position=position))

    def compile(self, node: Node, *, top_level: bool = False) -> Evaluator:
        match node:
            case StringLiteral() | IntegerLiteral() | BooleanLiteral():
                return _constant(node.value)
            case EnumLiteral():
                self._error(f"{node.name} is only valid as a compare or encoding argument", node.position)
                return _constant(node.name)
            case Missing():
                return _constant(None)
            case Attribute():
                return _attribute(node.name)
            case TokenReference():
                if node.name not in self._tokens:
                    self._error(f"token %{node.name}% is not defined in the configuration (tokens:)", node.position)
                return _constant(self._tokens.get(node.name))
            case BinaryOperation():
                left, right = self.compile(node.left), self.compile(node.right)
                if node.operator == "&":
                    return _concatenate(left, right)
                return _compare(node.operator, left, right)
            case Call():
                return self._compile_call(node, top_level)
        raise AssertionError(f"unexpected node {node!r}")

    def _compile_call(self, call: Call, top_level: bool) -> Evaluator:
        spec = lookup_function(call.name)
        if spec is None:
            self._error(_unknown_function(call.name), call.position)
            return _constant(None)
        if spec.adapt is not None:
            call = spec.adapt(call)
        if spec.top_level_only and not top_level:
            self._error(f"{spec.name}() must be the whole expression; it cannot be nested", call.position)
        if not self._check_arity(spec, call):
            return _constant(None)
        for index, argument in enumerate(call.arguments):
            self._check_argument(spec, spec.parameter(index), index, argument)
        arguments = [
            _constant(argument.name) if isinstance(argument, EnumLiteral) else self.compile(argument)
            for argument in call.arguments
        ]
        if spec.function is not None:
            return _call(spec.function, arguments)
        assert spec.build is not None
        try:
            return spec.build(call, arguments)
        except ExpressionCheckError as error:
            self.errors.append(error)
            return _constant(None)

    def _check_arity(self, spec: FunctionSpec, call: Call) -> bool:
        count = len(call.arguments)
        most = None if spec.variadic else len(spec.parameters)
        if spec.required <= count and (most is None or count <= most):
            return True
        if most is None:
            expected = f"at least {spec.required}"
        elif spec.required == most:
            expected = f"exactly {most}"
        else:
            expected = f"{spec.required} to {most}"
        signature = ", ".join(p.name + ("?" if p.optional else "") for p in spec.parameters)
        suffix = ", …" if spec.variadic else ""
        self._error(
            f"{spec.name}() takes {expected} argument{'s' if expected != 'exactly 1' else ''} "
            f"({spec.name}({signature}{suffix})), got {count}",
            call.position,
        )
        return False

    def _check_argument(self, spec: FunctionSpec, parameter: Parameter, index: int, node: Node) -> None:
        where = f"{spec.name}() argument {index + 1} ({parameter.name})"
        if isinstance(node, Missing):
            if not parameter.optional:
                self._error(f"{where} is required and cannot be left empty", node.position)
            return
        kind = parameter.kind
        if isinstance(node, EnumLiteral):
            allowed = _COMPARE_NAMES if kind == COMPARE else _ENCODING_NAMES if kind == ENCODING else frozenset()
            if node.name not in allowed:
                self._error(f"{where} cannot be the enum {node.name}", node.position)
            return
        if not isinstance(node, StringLiteral | IntegerLiteral | BooleanLiteral):
            return  # attributes and calls are only known per object
        value = node.value
        problem = _literal_problem(kind, value)
        if problem:
            self._error(f"{where} {problem}", node.position)


def _literal_problem(kind: str, value: str | int | bool) -> str | None:
    """Why a literal does not fit a parameter kind, or None when it does."""
    if kind in (INTEGER, INDEX):
        if isinstance(value, bool) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
            return f"must be an integer, got {value!r}"
        if kind == INDEX and int(value) < 1:
            return f"is 1-based: {value} is not a valid index (the first is 1)"
    elif kind == COMPARE:
        return f"must be vbTextCompare or vbBinaryCompare, got {value!r}"
    elif kind == ENCODING and value not in _ENCODING_NAMES:
        return f"must be one of {', '.join(sorted(_ENCODING_NAMES))}, got {value!r}"
    elif kind == INTERVAL and value not in dates.INTERVALS:
        return f"must be one of {', '.join(sorted(dates.INTERVALS))}, got {value!r}"
    elif kind == STYLES and isinstance(value, str):
        names = {n.strip().removeprefix("DateTimeStyles.") for n in value.replace("|", ",").split(",")} - {""}
        if unknown := names - dates.DATE_TIME_STYLES:
            return f"has unknown DateTimeStyles {', '.join(sorted(unknown))}"
    elif kind == DATE_FORMAT and isinstance(value, str):
        try:
            dates.check_format(value)
        except ValueError as exc:
            return str(exc)
    return None


def _unknown_function(name: str) -> str:
    close = get_close_matches(name, FUNCTIONS, n=1)
    hint = f", did you mean {close[0]!r}?" if close else ""
    return f"unknown function {name!r}{hint}"


def _output(value: Value) -> Value:
    if type(value) is str:
        return value or None  # "" flows NULL to the target (how-to-expression-builder)
    if type(value) is datetime:
        return format_datetime(value)
    if type(value) is list:
        values = [format_datetime(v) if type(v) is datetime else v for v in value]
        return values or None
    return value


class Expression:
    """A compiled, checked expression; evaluate it once per object."""

    __slots__ = ("_root", "text")

    def __init__(self, text: str, root: Evaluator) -> None:
        self.text = text
        self._root = root

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def evaluate(
        self,
        source: Mapping[str, object],
        *,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
        is_unique: Callable[[str], bool] | None = None,
    ) -> object:
        """The value to flow for `source`: str, int, bool, list, None (NULL, also for ""), or IGNORE_FLOW.

        Raises ExpressionEvaluationError when this object cannot be evaluated (including Error()).
        """
        context = EvaluationContext(source, clock or _utc_now, rng or _SYSTEM_RANDOM, is_unique)
        try:
            return _output(self._root(context))
        except IgnoreFlowSignal:
            return IGNORE_FLOW
        except ExpressionEvaluationError:
            raise
        except Exception as exc:
            # The source values come from the tenant: whatever a function cannot take (a date out of
            # range, a number where text was expected, a regex that gives up, or a defect of ours that
            # a value finds) is this object's error, never a crash of the pipeline.
            raise ExpressionEvaluationError(f"cannot evaluate {self.text!r}: {type(exc).__name__}: {exc}") from exc


def _compile(text: str, tokens: Mapping[str, str] | None) -> tuple[Expression | None, list[ExpressionError]]:
    try:
        tree = parse(text)
    except ExpressionError as error:
        return None, [error]
    compiler = _Compiler(tokens or {})
    root = compiler.compile(tree, top_level=True)
    if compiler.errors:
        return None, list(compiler.errors)
    return Expression(text, root), []


def compile_expression(text: str, *, tokens: Mapping[str, str] | None = None) -> Expression:
    """Parse and statically check `text`; raises ExpressionSyntaxError or ExpressionCheckError (the first found)."""
    expression, errors = _compile(text, tokens)
    if errors:
        raise errors[0]
    assert expression is not None
    return expression


def check_mappings(mappings: Mapping[str, str], *, tokens: Mapping[str, str] | None = None) -> list[ExpressionError]:
    """Every error of a whole mapping set (target attribute → expression), each naming its target attribute."""
    return [
        error.with_attribute(attribute) for attribute, text in mappings.items() for error in _compile(text, tokens)[1]
    ]


def referenced_attributes(text: str) -> list[str]:
    """The source attributes `text` reads, each once, in the order written; raises ExpressionSyntaxError."""
    return list(dict.fromkeys(attributes_in(parse(text))))
