"""Every function of the Entra provisioning (FUNC) and Cloud Sync (CSFUNC) references: parameter kinds for
the static check and the implementation.

NULL handling, uniformly: a function returns NULL when its source is NULL, except where the references
say otherwise — Left and Word give "", Append and `&` treat NULL as "", Join and Coalesce skip it, Switch
matches it against the "" key, the Is* tests and Count look at it. Positions and lengths are 1-based and
counted in UTF-16 code units, as the .NET service counts them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from processors.expressions import dates, special
from processors.expressions.context import Evaluator
from processors.expressions.errors import ExpressionEvaluationError
from processors.expressions.syntax import Call, Missing
from processors.expressions.text import (
    NET_WHITESPACE,
    dn_components,
    normalize_diacritics,
    proper_case,
    python_index,
    to_lower,
    to_upper,
    utf16_index,
    utf16_slice,
)
from processors.expressions.values import (
    Value,
    as_boolean,
    as_integer,
    as_text,
    as_values,
    is_null_or_empty,
    single,
)

# Parameter kinds the static check knows: what a literal in that position may be.
TEXT, INTEGER, INDEX, ANY = "text", "integer", "index", "any"
COMPARE, ENCODING, INTERVAL, STYLES, DATE_FORMAT = "compare", "encoding", "interval", "styles", "date format"


@dataclass(frozen=True, slots=True)
class Parameter:
    name: str
    kind: str = TEXT
    optional: bool = False


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    parameters: tuple[Parameter, ...]
    # Eager functions get argument values; builders get the call node and the argument evaluators.
    function: Callable[..., Value] | None = None
    build: Callable[[Call, list[Evaluator]], Evaluator] | None = None
    variadic: bool = False  # the last parameter repeats
    minimum: int | None = None  # for variadic functions: the least number of arguments
    top_level_only: bool = False
    # Rewrites the argument list before checking, for a function documented with two signatures.
    adapt: Callable[[Call], Call] | None = None

    @property
    def required(self) -> int:
        if self.minimum is not None:
            return self.minimum
        return sum(1 for p in self.parameters if not p.optional)

    def parameter(self, index: int) -> Parameter:
        return self.parameters[min(index, len(self.parameters) - 1)]


def _per_value(function_name: str, transform: Callable[..., str]) -> Callable[..., Value]:
    # Documented for Trim ("for each value in the proxyAddress attribute"); the other one-string
    # transformations behave the same way on a multi-valued argument.
    def apply(value: Value, *rest: Value) -> Value:
        options = [as_text(option, function_name) for option in rest]
        if type(value) is list:
            return [None if (t := as_text(v, function_name)) is None else transform(t, *options) for v in value]
        text = as_text(value, function_name)
        return None if text is None else transform(text, *options)

    return apply


def _trim(value: Value) -> Value:
    if type(value) is str:  # the hot path of the default cn and description mappings
        return value.strip(NET_WHITESPACE)
    return _trim_values(value)


_trim_values = _per_value("Trim", lambda text: text.strip(NET_WHITESPACE))


def _append(source: Value, suffix: Value) -> Value:
    left, right = as_text(source, "Append"), as_text(suffix, "Append")
    if left is None:
        return right
    return left if right is None else left + right


def _left(source: Value, count: Value) -> Value:
    text, number = as_text(source, "Left"), as_integer(count, "Left")
    if text is None or number == 0:
        return ""
    if number is None or number < 0:
        return text
    return utf16_slice(text, 0, number)


def _mid(source: Value, start: Value, length: Value = None) -> Value:
    text, first, count = as_text(source, "Mid"), as_integer(start, "Mid"), as_integer(length, "Mid")
    if text is None or first is None:
        return None
    if first < 1:
        raise ExpressionEvaluationError(f"Mid(): start is 1-based, got {first}")
    if count is not None and count <= 0:
        return ""
    # CSFUNC's own example `Mid(Item(…), 6)` leaves out the length: then the rest of the string.
    return utf16_slice(text, first - 1, None if count is None else first - 1 + count)


def _join(separator: Value, *sources: Value) -> Value:
    glue = as_text(separator, "Join") or ""
    parts = [as_text(v, "Join") for source in sources for v in as_values(source)]
    return glue.join(part for part in parts if part)  # empty sources are skipped, as documented


def _item(attribute: Value, index: Value) -> Value:
    values, number = as_values(attribute), as_integer(index, "Item")
    if attribute is None or number is None:
        return None
    if not 1 <= number <= len(values):
        raise ExpressionEvaluationError(f"Item(): index {number} is out of range 1..{len(values)} (1-based)")
    return values[number - 1]


def _split(source: Value, delimiter: Value) -> Value:
    text, separator = as_text(source, "Split"), as_text(delimiter, "Split")
    if text is None:
        return None
    if not separator:
        return [text]
    # Like .NET String.Split: values are not trimmed (the documented output omits a space; see the tests).
    return text.split(separator)


def _word(source: Value, number: Value, delimiters: Value) -> Value:
    text, index, separators = as_text(source, "Word"), as_integer(number, "Word"), as_text(delimiters, "Word")
    if text is None or index is None or index < 1:
        return ""
    words = [text]
    for separator in separators or "":
        words = [piece for word in words for piece in word.split(separator)]
    words = [word for word in words if word]  # runs of delimiters separate, they do not make empty words
    return words[index - 1] if index <= len(words) else ""


def _instr(haystack: Value, needle: Value, start: Value = None, compare: Value = None) -> Value:
    text, sought = as_text(haystack, "InStr"), as_text(needle, "InStr")
    if text is None or sought is None:
        return None
    first = as_integer(start, "InStr") or 1
    if first < 1:
        raise ExpressionEvaluationError(f"InStr(): start is 1-based, got {first}")
    if compare == "vbTextCompare":
        text, sought = text.casefold(), sought.casefold()
    found = text.find(sought, python_index(text, first - 1))
    return 0 if found < 0 else utf16_index(text, found) + 1


def _contains(attribute: Value, search: Value, compare: Value = None) -> Value:
    sought = as_text(search, "Contains") or ""
    text_compare = compare == "vbTextCompare"
    if text_compare:
        sought = sought.casefold()
    for index, value in enumerate(as_values(attribute), 1):
        text = as_text(value, "Contains") or ""
        if sought in (text.casefold() if text_compare else text):
            return index
    return 0


def _bit_and(first: Value, second: Value) -> Value:
    left, right = as_integer(first, "BitAnd"), as_integer(second, "BitAnd")
    return None if left is None or right is None else left & right


def _c_bool(value: Value) -> Value:
    return bool(as_boolean(value, "CBool"))


def _not(value: Value) -> Value:
    # Documented as: "True" gives False, anything else gives True.
    return as_text(single(value, "Not"), "Not") not in ("True", "true", "TRUE")


def _date(value: Value, function: str) -> datetime | None:
    value = single(value, function)
    if value is None or type(value) is datetime:
        return value
    text = as_text(value, function) or ""
    try:
        return dates.parse_date(text)
    except ValueError:
        raise ExpressionEvaluationError(f"{function}(): {text!r} is not a date") from None


def _date_add(interval: Value, amount: Value, value: Value) -> Value:
    date, number = _date(value, "DateAdd"), as_integer(amount, "DateAdd")
    if date is None or number is None:
        return None
    return dates.date_add(as_text(interval, "DateAdd") or "", number, date)


def _date_diff(interval: Value, first: Value, second: Value) -> Value:
    start, end = _date(first, "DateDiff"), _date(second, "DateDiff")
    if start is None or end is None:
        return None
    return dates.date_diff(as_text(interval, "DateDiff") or "", start, end)


def _date_from_num(value: Value) -> Value:
    ticks = as_integer(value, "DateFromNum")
    return None if ticks is None else dates.date_from_filetime(ticks)


def _num_from_date(value: Value) -> Value:
    date = _date(value, "NumFromDate")
    return None if date is None else dates.filetime_from_date(date)


def _format_date_time(source: Value, styles: Value, input_format: Value, output_format: Value) -> Value:
    text = as_text(source, "FormatDateTime")
    if text is None:
        return None
    style_names = _style_names(as_text(styles, "FormatDateTime") or "")
    try:
        parsed = dates.parse_exact(text, as_text(input_format, "FormatDateTime") or "", style_names)
        return dates.format_date(parsed, as_text(output_format, "FormatDateTime") or "")
    except ValueError as exc:
        raise ExpressionEvaluationError(f"FormatDateTime(): {exc}") from None


def _style_names(styles: str) -> frozenset[str]:
    names = frozenset(n.strip().removeprefix("DateTimeStyles.") for n in styles.replace("|", ",").split(","))
    return names - {""}


def _c_date(value: Value) -> Value:
    return _date(value, "CDate")


def _encoding(name: Value) -> str:
    return {"ASCII": "ascii", "UTF8": "utf-8"}.get(as_text(name, "ConvertFromBase64") or "", "utf-16-le")


def _convert_from_base64(source: Value, encoding: Value = None) -> Value:
    text = as_text(source, "ConvertFromBase64")
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True).decode(_encoding(encoding))
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ExpressionEvaluationError(f"ConvertFromBase64(): {exc}") from None


def _convert_to_base64(source: Value) -> Value:
    text = as_text(source, "ConvertToBase64")
    # "Unicode" in .NET is UTF-16LE: the documented "Hello world!" → "SABlAGwA…".
    return None if text is None else base64.b64encode(text.encode("utf-16-le", "surrogatepass")).decode("ascii")


def _convert_to_utf8_hex(source: Value) -> Value:
    text = as_text(source, "ConvertToUTF8Hex")
    return None if text is None else text.encode("utf-8").hex().upper()


def _string_from_sid(value: Value) -> Value:
    value = single(value, "StringFromSid")
    if value is None:
        return None
    if isinstance(value, str):
        if value.upper().startswith("S-1-"):
            return value  # already the string form, as Graph's onPremisesSecurityIdentifier is
        try:
            value = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ExpressionEvaluationError("StringFromSid(): expected SID bytes or base64") from None
    if not isinstance(value, bytes | bytearray) or len(value) < 8 or len(value) != 8 + 4 * value[1]:
        raise ExpressionEvaluationError("StringFromSid(): not a binary security identifier")
    authority = int.from_bytes(value[2:8], "big")
    subs = [int.from_bytes(value[8 + 4 * i : 12 + 4 * i], "little") for i in range(value[1])]
    return "-".join(["S", str(value[0]), str(authority), *map(str, subs)])


def _dn_component(dn: Value, number: Value) -> Value:
    text, index = as_text(dn, "DNComponent"), as_integer(number, "DNComponent")
    if text is None or index is None:
        return None
    if index < 1:
        raise ExpressionEvaluationError(f"DNComponent(): component number is 1-based, got {index}")
    components = dn_components(text)
    return components[index - 1] if index <= len(components) else None


def _count(attribute: Value) -> Value:
    return len(as_values(attribute))


def _c_str(value: Value) -> Value:
    return as_text(value, "CStr")


def _is_string(value: Value) -> Value:
    return value is not None and type(value) is not list


def _remove_duplicates(attribute: Value) -> Value:
    if type(attribute) is not list:
        return attribute
    return list(dict.fromkeys(attribute))


def _single_app_role_assignment(assignments: Value) -> Value:
    values = as_values(assignments)
    return values[0] if values else None


def _identity(value: Value) -> Value:
    return value


def _spec(name: str, function: Callable[..., Value], *parameters: Parameter, **options: object) -> FunctionSpec:
    return FunctionSpec(name, parameters, function=function, **options)  # type: ignore[arg-type]


def _special(
    name: str, build: Callable[[Call, list[Evaluator]], Evaluator], *parameters: Parameter, **options: object
) -> FunctionSpec:
    return FunctionSpec(name, parameters, build=build, **options)  # type: ignore[arg-type]


def _cloud_sync_format_date_time(call: Call) -> Call:
    # §8.3 conflict: FUNC documents FormatDateTime(source, dateTimeStyles, inputFormat, outputFormat),
    # CSFUNC FormatDateTime(source, inputFormat, outputFormat). Both are accepted — the argument count tells
    # them apart — and the three-argument form means the default styles.
    if len(call.arguments) != 3:
        return call
    source, *formats = call.arguments
    return Call(call.name, (source, Missing(source.position), *formats), call.position)


P = Parameter
FUNCTIONS: dict[str, FunctionSpec] = {
    spec.name: spec
    for spec in (
        _spec("Append", _append, P("source"), P("suffix")),
        _spec("AppRoleAssignmentsComplex", _identity, P("appRoleAssignments", ANY)),
        _spec("BitAnd", _bit_and, P("value1", INTEGER), P("value2", INTEGER)),
        _spec("CBool", _c_bool, P("expression", ANY)),
        _spec("CDate", _c_date, P("expression", ANY)),
        _special("Coalesce", special.build_coalesce, P("source", ANY), variadic=True, minimum=1),
        _spec("Contains", _contains, P("attribute", ANY), P("search"), P("compareType", COMPARE, optional=True)),
        _spec("ConvertFromBase64", _convert_from_base64, P("source"), P("encoding", ENCODING, optional=True)),
        _spec("ConvertToBase64", _convert_to_base64, P("source")),
        _spec("ConvertToUTF8Hex", _convert_to_utf8_hex, P("source")),
        _spec("Count", _count, P("attribute", ANY)),
        _spec("CRef", _identity, P("dn", ANY)),
        _spec("CStr", _c_str, P("value", ANY)),
        _spec("DateAdd", _date_add, P("interval", INTERVAL), P("value", INTEGER), P("dateTime", ANY)),
        _spec("DateDiff", _date_diff, P("interval", INTERVAL), P("date1", ANY), P("date2", ANY)),
        _spec("DateFromNum", _date_from_num, P("value", INTEGER)),
        _spec("DNComponent", _dn_component, P("dn", ANY), P("componentNumber", INDEX)),
        _spec("Error", lambda message: _raise(message), P("message")),
        _spec(
            "FormatDateTime",
            _format_date_time,
            P("source"),
            P("dateTimeStyles", STYLES, optional=True),
            P("inputFormat", DATE_FORMAT),
            P("outputFormat", DATE_FORMAT),
            adapt=_cloud_sync_format_date_time,
        ),
        _special("Guid", special.build_guid),
        _special("IgnoreFlowIfNullOrEmpty", special.build_ignore_flow, P("expression", ANY)),
        _special("IIF", special.build_iif, P("condition", ANY), P("valueIfTrue", ANY), P("valueIfFalse", ANY)),
        _spec(
            "InStr",
            _instr,
            P("value1"),
            P("value2"),
            P("start", INDEX, optional=True),
            P("compareType", COMPARE, optional=True),
        ),
        _spec("IsNull", lambda value: value is None or value == [], P("expression", ANY)),
        _spec("IsNullOrEmpty", is_null_or_empty, P("expression", ANY)),
        _spec("IsPresent", lambda value: not is_null_or_empty(value), P("expression", ANY)),
        _spec("IsString", _is_string, P("expression", ANY)),
        _spec("Item", _item, P("attribute", ANY), P("index", INDEX)),
        _spec("Join", _join, P("separator"), P("source", ANY), variadic=True, minimum=2),
        _spec("Left", _left, P("string"), P("numChars", INTEGER)),
        _spec("Mid", _mid, P("source"), P("start", INDEX), P("length", INTEGER, optional=True)),
        _spec("NormalizeDiacritics", _per_value("NormalizeDiacritics", normalize_diacritics), P("source")),
        _spec("Not", _not, P("source", ANY)),
        _special("Now", special.build_now),
        _spec("NumFromDate", _num_from_date, P("value", ANY)),
        _spec("PCase", _per_value("PCase", proper_case), P("source"), P("wordSeparators", optional=True)),
        _special(
            "RandomString",
            special.build_random_string,
            P("length", INTEGER),
            P("minimumNumbers", INTEGER),
            P("minimumSpecialCharacters", INTEGER),
            P("minimumCapital", INTEGER),
            P("minimumLowerCase", INTEGER),
            P("charactersToAvoid", optional=True),
        ),
        # Redact only changes what the provisioning log shows; the log writer, not the engine, honours it.
        _spec("Redact", _identity, P("value", ANY)),
        _spec("RemoveDuplicates", _remove_duplicates, P("attribute", ANY)),
        _special(
            "Replace",
            special.build_replace,
            P("source"),
            P("oldValue", optional=True),
            P("regexPattern", optional=True),
            P("regexGroupName", optional=True),
            P("replacementValue", optional=True),
            P("replacementAttributeName", ANY, optional=True),
            P("template", optional=True),
        ),
        _special(
            "SelectUniqueValue",
            special.build_select_unique_value,
            P("uniqueValueRule", ANY),
            variadic=True,
            minimum=2,
            top_level_only=True,
        ),
        _spec("SingleAppRoleAssignment", _single_app_role_assignment, P("appRoleAssignments", ANY)),
        _spec("Split", _split, P("source"), P("delimiter")),
        _spec("StringFromSid", _string_from_sid, P("objectSid", ANY)),
        _spec("StripSpaces", _per_value("StripSpaces", lambda text: text.replace(" ", "")), P("source")),
        _special(
            "Switch",
            special.build_switch,
            P("source", ANY),
            P("defaultValue", ANY, optional=True),
            P("keyOrValue", ANY),
            variadic=True,
            minimum=4,
        ),
        _spec("ToLower", _per_value("ToLower", to_lower), P("source"), P("culture", optional=True)),
        _spec("ToUpper", _per_value("ToUpper", to_upper), P("source"), P("culture", optional=True)),
        _spec("Trim", _trim, P("value")),
        _spec("Word", _word, P("string"), P("wordNumber", INTEGER), P("delimiters")),
    )
}


def _raise(message: Value) -> Value:
    raise ExpressionEvaluationError(as_text(message, "Error") or "Error() raised without a message")


# §8-style conflict: FUNC says the syntax is case-sensitive, yet Microsoft's own expressions spell names
# as `Instr` (the GroupDN OU expression), `GUID`, `Cstr` and `StringFromSID`. Those must work unchanged,
# so function names are looked up case-insensitively; attribute values (Switch, Replace) stay case-sensitive.
_BY_LOWER_NAME = {name.lower(): spec for name, spec in FUNCTIONS.items()}


def lookup_function(name: str) -> FunctionSpec | None:
    return _BY_LOWER_NAME.get(name.lower())
