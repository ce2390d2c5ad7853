"""Functions that cannot be plain value-to-value functions: lazy ones (IIF, Switch, Coalesce,
IgnoreFlowIfNullOrEmpty, SelectUniqueValue), Replace (whose mode follows from which arguments are
given) and those that read the clock or the random source (Guid, Now, RandomString)."""

from __future__ import annotations

import string
import uuid

from processors.expressions import dotnet_regex
from processors.expressions.context import EvaluationContext, Evaluator, IgnoreFlowSignal
from processors.expressions.dotnet_regex import Match, Pattern, PatternError, compile_dotnet, substitution
from processors.expressions.errors import ExpressionCheckError, ExpressionEvaluationError
from processors.expressions.syntax import Call, Missing, StringLiteral
from processors.expressions.values import Value, as_boolean, as_integer, as_text, is_null_or_empty


def build_iif(call: Call, arguments: list[Evaluator]) -> Evaluator:
    condition, if_true, if_false = arguments

    def iif(context: EvaluationContext) -> Value:
        # Only the chosen branch runs, so `IIF(…, [x], Error("…"))` errs only when it should.
        return if_true(context) if as_boolean(condition(context), "IIF") else if_false(context)

    return iif


def build_switch(call: Call, arguments: list[Evaluator]) -> Evaluator:
    if len(arguments) % 2:
        raise ExpressionCheckError(
            f"Switch() takes an even number of arguments (source, default, then key/value pairs), got {len(arguments)}",
            position=call.position,
        )
    source, default = arguments[0], arguments[1]
    keys, values = arguments[2::2], arguments[3::2]
    key_nodes = call.arguments[2::2]

    if all(isinstance(node, StringLiteral) for node in key_nodes):
        # Literal keys (the usual case): one dict lookup; the first of duplicate keys wins, as in a scan.
        table: dict[str, Evaluator] = {}
        for node, value in zip(key_nodes, values, strict=True):
            table.setdefault(node.value, value)  # type: ignore[union-attr]

        def switch_literal(context: EvaluationContext) -> Value:
            # NULL matches the "" key: the documented way to test for a missing attribute.
            return table.get(as_text(source(context), "Switch") or "", default)(context)

        return switch_literal

    def switch(context: EvaluationContext) -> Value:
        value = as_text(source(context), "Switch") or ""
        for key, result in zip(keys, values, strict=True):
            if (as_text(key(context), "Switch") or "") == value:  # case-sensitive, as documented
                return result(context)
        return default(context)

    return switch


def build_coalesce(call: Call, arguments: list[Evaluator]) -> Evaluator:
    def coalesce(context: EvaluationContext) -> Value:
        for argument in arguments:
            value = argument(context)
            if value is not None and value != []:
                return value
        return None

    return coalesce


def build_ignore_flow(call: Call, arguments: list[Evaluator]) -> Evaluator:
    (argument,) = arguments

    def ignore_flow_if_null_or_empty(context: EvaluationContext) -> Value:
        value = argument(context)
        if is_null_or_empty(value):
            raise IgnoreFlowSignal
        return value

    return ignore_flow_if_null_or_empty


def build_select_unique_value(call: Call, arguments: list[Evaluator]) -> Evaluator:
    def select_unique_value(context: EvaluationContext) -> Value:
        candidates = [as_text(rule(context), "SelectUniqueValue") for rule in arguments]
        for candidate in candidates:
            if candidate and (context.is_unique is None or context.is_unique(candidate)):
                return candidate
        # The Microsoft service escrows the object; here it is that object's error.
        raise ExpressionEvaluationError(f"SelectUniqueValue(): every candidate is already taken: {candidates}")

    return select_unique_value


def build_guid(call: Call, arguments: list[Evaluator]) -> Evaluator:
    return lambda context: str(uuid.UUID(int=context.rng.getrandbits(128), version=4))


def build_now(call: Call, arguments: list[Evaluator]) -> Evaluator:
    return lambda context: context.clock()


# Windows password-complexity character classes, which RandomString's documentation refers to.
_SPECIAL_CHARACTERS = "~!@#$%^&*_-+=`|\\(){}[]:;\"'<>,.?/"
RANDOM_STRING_MAX_LENGTH = 256


def build_random_string(call: Call, arguments: list[Evaluator]) -> Evaluator:
    counts, avoid = arguments[:5], arguments[5] if len(arguments) > 5 else None

    def random_string(context: EvaluationContext) -> Value:
        length, numbers, special, capital, lower = (as_integer(a(context), "RandomString") or 0 for a in counts)
        excluded = set(as_text(avoid(context), "RandomString") or "") if avoid else set()
        if not 0 < length <= RANDOM_STRING_MAX_LENGTH or min(numbers, special, capital, lower) < 0:
            raise ExpressionEvaluationError(f"RandomString(): length must be 1–256 and minimums ≥ 0, got {length}")
        if numbers + special + capital + lower > length:
            raise ExpressionEvaluationError("RandomString(): the minimums add up to more than the length")
        classes = [
            ([c for c in string.digits if c not in excluded], numbers),
            ([c for c in _SPECIAL_CHARACTERS if c not in excluded], special),
            ([c for c in string.ascii_uppercase if c not in excluded], capital),
            ([c for c in string.ascii_lowercase if c not in excluded], lower),
        ]
        pool = [c for characters, _ in classes for c in characters]
        if not pool or any(minimum and not characters for characters, minimum in classes):
            raise ExpressionEvaluationError("RandomString(): CharactersToAvoid excludes a required class")
        chosen = [context.rng.choice(characters) for characters, minimum in classes for _ in range(minimum)]
        chosen += [context.rng.choice(pool) for _ in range(length - len(chosen))]
        context.rng.shuffle(chosen)
        return "".join(chosen)

    return random_string


def _literal_pattern(call: Call, index: int) -> Pattern | None:
    node = call.arguments[index]
    if not isinstance(node, StringLiteral):
        return None
    try:
        return compile_dotnet(node.value)
    except PatternError as exc:
        raise ExpressionCheckError(f"Replace(): invalid regexPattern: {exc}", position=node.position) from None


def _pattern(literal: Pattern | None, argument: Evaluator, context: EvaluationContext) -> Pattern:
    if literal is not None:
        return literal
    try:
        return compile_dotnet(as_text(argument(context), "Replace") or "")
    except PatternError as exc:
        raise ExpressionEvaluationError(f"Replace(): invalid regexPattern: {exc}") from None


_REPLACE_FORMS = (
    "Replace() needs one of its five documented forms: oldValue+replacementValue, oldValue+template, "
    "regexPattern+replacementValue, regexPattern+regexGroupName+replacementValue, "
    "regexPattern+regexGroupName+replacementAttributeName"
)


REPLACE_ARITY = 7


def _nothing(context: EvaluationContext) -> Value:
    return None


def build_replace(call: Call, arguments: list[Evaluator]) -> Evaluator:
    """Replace(source, oldValue, regexPattern, regexGroupName, replacementValue, replacementAttributeName,
    template): the form is chosen once, here, from which positions are filled (`""` counts as given)."""
    # Trailing optional arguments may be left out: Replace([a], "x", , , "y") is the value form.
    missing = REPLACE_ARITY - len(arguments)
    given = tuple(not isinstance(node, Missing) for node in call.arguments) + (False,) * missing
    source, old, pattern_argument, group_argument, replacement, attribute, template = [
        *arguments,
        *[_nothing] * missing,
    ]
    form = {
        (True, False, False, True, False, False): "value",
        (True, False, False, False, False, True): "template",
        (False, True, False, True, False, False): "regex",
        (False, True, True, True, False, False): "regex group",
        (False, True, True, False, True, False): "regex attribute",
    }.get(given[1:])
    if form is None:
        raise ExpressionCheckError(_REPLACE_FORMS, position=call.position)
    literal = _literal_pattern(call, 2) if form.startswith("regex") else None
    group_node = call.arguments[3]
    if literal is not None and isinstance(group_node, StringLiteral) and group_node.value not in literal.groupindex:
        raise ExpressionCheckError(
            f"Replace(): regexPattern has no group named {group_node.value!r}", position=group_node.position
        )

    def text(argument: Evaluator, context: EvaluationContext) -> str | None:
        return as_text(argument(context), "Replace")

    match form:
        case "value":

            def replace_value(context: EvaluationContext) -> Value:
                value = text(source, context)
                if value is None:
                    return None
                return value.replace(text(old, context) or "", text(replacement, context) or "")

            return replace_value
        case "template":

            def replace_template(context: EvaluationContext) -> Value:
                value = text(source, context)
                if value is None:
                    return None
                return (text(template, context) or "").replace(text(old, context) or "", value)

            return replace_template
        case "regex":

            def replace_regex(context: EvaluationContext) -> Value:
                value = text(source, context)
                if value is None:
                    return None
                expand = substitution(text(replacement, context) or "")
                return dotnet_regex.sub(_pattern(literal, pattern_argument, context), expand, value)

            return replace_regex
        case "regex group":

            def replace_group(context: EvaluationContext) -> Value:
                value = text(source, context)
                if value is None:
                    return None
                group, new = text(group_argument, context) or "", text(replacement, context) or ""

                def swap(match: Match) -> str:
                    start, end = match.span(group)
                    if start < 0:
                        return match.group()
                    whole, offset = match.group(), match.start()
                    return whole[: start - offset] + new + whole[end - offset :]

                try:
                    return dotnet_regex.sub(_pattern(literal, pattern_argument, context), swap, value)
                except IndexError:
                    raise ExpressionEvaluationError(f"Replace(): regexPattern has no group named {group!r}") from None

            return replace_group

    # §8.3 conflict. FUNC: "if source has a value, source is returned; if not, the regexPattern is applied
    # to replacementAttributeName and the value of regexGroupName returned". CSFUNC describes the opposite.
    # We follow FUNC: it is the maintained provisioning reference, its worked example (vector 26) only
    # holds under FUNC's reading, and CSFUNC's reading is already expressible as the regex-group form.
    def replace_from_attribute(context: EvaluationContext) -> Value:
        value = text(source, context)
        if value:
            return value
        fallback = text(attribute, context)
        if fallback is None:
            return None
        match = dotnet_regex.search(_pattern(literal, pattern_argument, context), fallback)
        try:
            return match.group(text(group_argument, context) or "") if match else None
        except IndexError:
            raise ExpressionEvaluationError("Replace(): regexPattern has no group of that name") from None

    return replace_from_attribute
