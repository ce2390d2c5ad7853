"""Error reporting: syntax errors name position and expectation; checks happen at load, per mapping set."""

from __future__ import annotations

import pytest

from processors.expressions import (
    DEFAULT_GROUP_MAPPINGS,
    ExpressionCheckError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    check_mappings,
    compile_expression,
)


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ('Append([a], "x"', 15, "missing ')' to close 'Append(' opened at position 0"),
        ('Append([a], "x"))', 16, "unexpected ')' without a matching '('"),
        ("Left([a] 3)", 9, "expected ',' or ')' in the arguments of Left()"),
        ('Append([a], "x)', 12, "unterminated string"),
        ('Append([a, "x")', 7, "unterminated attribute"),
        ("Append([], 1)", 7, "empty attribute name"),
        ("", 0, "empty expression"),
        ("Foo", 0, "unknown name 'Foo'"),
        ("Left(#, 1)", 5, "unexpected character '#'"),
        ("Left(, 1", 8, "missing ')'"),
    ],
)
def test_syntax_error_names_position_and_expectation(text: str, position: int, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError) as raised:
        compile_expression(text)
    assert raised.value.position == position
    assert message in str(raised.value)
    assert f"position {position}" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Appnd([a], "x")', "unknown function 'Appnd', did you mean 'Append'?"),
        ('Left("John")', "Left() takes exactly 2 arguments (Left(string, numChars)), got 1"),
        ('Mid("John", 1, 2, 3)', "Mid() takes 2 to 3 arguments"),
        ('Join(",")', "Join() takes at least 2 arguments"),
        ("Item([proxyAddresses], 0)", "Item() argument 2 (index) is 1-based: 0 is not a valid index"),
        ("Mid([a], 0, 2)", "Mid() argument 2 (start) is 1-based"),
        ('Left([a], "three")', "Left() argument 2 (numChars) must be an integer, got 'three'"),
        ("Left([a], True)", "must be an integer"),
        ('InStr("a", "b", 1, "vbTextCompare")', "must be vbTextCompare or vbBinaryCompare"),
        ('InStr("a", "b", 1, UTF8)', "cannot be the enum UTF8"),
        ('ConvertFromBase64("QQ==", "UTF16")', "must be one of ASCII, UTF8, Unicode"),
        ('Append(UTF8, "x")', "Append() argument 1 (source) cannot be the enum UTF8"),
        ('UTF8 & "x"', "only valid as a compare or encoding argument"),
        ('DateAdd("q", 1, Now())', "must be one of d, h, m, n, s, ww, yyyy"),
        ('FormatDateTime([d], "Bogus", "yyyy", "yyyy")', "unknown DateTimeStyles Bogus"),
        ('FormatDateTime([d], "yyyy\'", "yyyy")', "unterminated quoted text"),
        ('Switch([a], "d", "k")', "Switch() takes at least 4 arguments"),
        ('Switch([a], "d", "k", "v", "k2")', "even number of arguments"),
        ('Replace([a], "x", , , , , )', "five documented forms"),
        ('Replace([a], , "(", , "", , )', "invalid regexPattern"),
        ('Replace([a], , "(?<n>x)", "m", "", , )', "no group named 'm'"),
        ("Left(, 1)", "argument 1 (string) is required and cannot be left empty"),
        ('Append("x", %DomainFQDN%)', "token %DomainFQDN% is not defined"),
        ('Join("a", SelectUniqueValue("a", "b"))', "cannot be nested"),
    ],
)
def test_check_error_at_load(text: str, message: str) -> None:
    with pytest.raises(ExpressionCheckError) as raised:
        compile_expression(text)
    assert message in str(raised.value)
    assert raised.value.position is not None


def test_token_bound_from_configuration() -> None:
    expression = compile_expression('Append("@", %DomainFQDN%)', tokens={"DomainFQDN": "contoso.com"})
    assert expression.evaluate({}) == "@contoso.com"


def test_check_mappings_collects_every_error_with_its_attribute() -> None:
    errors = check_mappings(
        {
            **DEFAULT_GROUP_MAPPINGS,
            "sAMAccountName": 'Left([displayName], "x") & Item([a], 0)',
            "info": 'Appnd([a], "x")',
            "company": "Left([a], 1",
        }
    )
    described = sorted(str(error) for error in errors)
    assert len(errors) == 4
    assert [error.attribute for error in errors] == ["sAMAccountName", "sAMAccountName", "info", "company"]
    assert described[0].startswith("company: missing ')'")
    assert "info: unknown function 'Appnd'" in described[1]


def test_default_mappings_are_clean() -> None:
    assert check_mappings(DEFAULT_GROUP_MAPPINGS) == []


def test_evaluation_error_is_the_objects_error() -> None:
    expression = compile_expression('IIF(IsPresent([accountName]), [accountName], Error("AccountName is required"))')
    assert expression.evaluate({"accountName": "x"}) == "x"
    with pytest.raises(ExpressionEvaluationError, match="AccountName is required"):
        expression.evaluate({})


@pytest.mark.parametrize(
    ("text", "source", "message"),
    [
        ("Item([proxyAddresses], 3)", {"proxyAddresses": ["a", "b"]}, "index 3 is out of range 1..2"),
        ("Left([a], [n])", {"a": "x", "n": "many"}, "Left() expects a number"),
        ("Mid([a], [n], 1)", {"a": "x", "n": 0}, "start is 1-based"),
        ('Append([a], "x")', {"a": ["1", "2"]}, "Append() expects a single value, got 2 values"),
        ("CDate([d])", {"d": "yesterday"}, "'yesterday' is not a date"),
        ('FormatDateTime([d], , "yyyyMMdd", "yyyy")', {"d": "2020"}, "does not match the date format"),
        ("DateFromNum([n])", {"n": 10**20}, "cannot evaluate"),
        ("ConvertFromBase64([s])", {"s": "%%%"}, "ConvertFromBase64()"),
        ('Replace([a], , [p], , "", , )', {"a": "x", "p": "("}, "invalid regexPattern"),
        ("StringFromSid([s])", {"s": "AQ=="}, "not a binary security identifier"),
        ("RandomString(4, 3, 3, 0, 0)", {}, "add up to more than the length"),
    ],
)
def test_evaluation_errors_never_escape_as_other_exceptions(text: str, source: dict, message: str) -> None:
    with pytest.raises(ExpressionEvaluationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_expression(text).evaluate(source)
