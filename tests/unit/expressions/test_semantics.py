"""Documented semantics beyond the vectors: NULL, multi-values, flow control, §8 choices, injectables."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from processors.expressions import IGNORE_FLOW, compile_expression


def evaluate(text: str, **source: object) -> object:
    return compile_expression(text).evaluate(source)


def test_empty_string_flows_null() -> None:
    assert evaluate('""') is None
    assert evaluate("Left([displayName], 0)", displayName="x") is None


def test_ignore_flow_drops_the_attribute_wherever_it_sits() -> None:
    assert evaluate("IgnoreFlowIfNullOrEmpty(Trim([department]))") is IGNORE_FLOW
    assert evaluate("IgnoreFlowIfNullOrEmpty(Trim([department]))", department="  ") is IGNORE_FLOW
    assert evaluate("IgnoreFlowIfNullOrEmpty(Trim([department]))", department=" HR ") == "HR"
    assert evaluate('Append("x", IgnoreFlowIfNullOrEmpty([a]))') is IGNORE_FLOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Append([missing], "_")', "_"),
        ('[missing] & "x"', "x"),
        ("Left([missing], 3)", None),  # "" per the docs, which then flows NULL
        ('Word([missing], 1, " ")', None),
        ("Mid([missing], 1, 2)", None),
        ("ToUpper([missing])", None),
        ('Split([missing], ",")', None),
        ("IsNull([missing])", True),
        ("IsNullOrEmpty([missing])", True),
        ("IsPresent([missing])", False),
        ("Count([missing])", 0),
        ('Switch([missing], "default", "", "empty")', "empty"),
        ('Coalesce([missing], [alsoMissing], "fallback")', "fallback"),
        ('Join(",", [missing], "a")', "a"),
    ],
)
def test_null_propagation(text: str, expected: object) -> None:
    assert evaluate(text) == expected


def test_attribute_lookup_is_case_insensitive() -> None:
    assert evaluate("[DisplayName]", displayname="Sales") == "Sales"
    assert evaluate("[extension_0123abcd_GroupDN]", extension_0123ABCD_groupdn="CN=x") == "CN=x"


def test_multi_valued_attributes() -> None:
    addresses = ["smtp:b@contoso.com", "SMTP:a@contoso.com", "smtp:b@contoso.com"]
    assert evaluate("Count([proxyAddresses])", proxyAddresses=addresses) == 3
    assert evaluate("RemoveDuplicates([proxyAddresses])", proxyAddresses=addresses) == addresses[:2]
    assert evaluate("Item([proxyAddresses], 2)", proxyAddresses=addresses) == "SMTP:a@contoso.com"
    primary = 'Mid(Item([proxyAddresses], Contains([proxyAddresses], "SMTP:")), 6)'
    assert evaluate(primary, proxyAddresses=addresses) == "a@contoso.com"
    assert evaluate('Join("; ", [a], [b])', a=["1", "", "2"], b="3") == "1; 2; 3"
    assert evaluate("Trim([a])", a=[" x ", "y "]) == ["x", "y"]
    assert evaluate("ToLower([a])", a=["X", "Y"]) == ["x", "y"]


def test_switch_and_replace_are_case_sensitive() -> None:
    assert evaluate('Switch([a], "default", "qld", "lower")', a="QLD") == "default"
    assert evaluate('Replace([a], "x", , , "y", , )', a="xX") == "yX"


def test_iif_conditions_and_concatenation() -> None:
    intern = 'IIF([employeeType]="Intern","t-" & [alias],[alias])'
    assert evaluate(intern, employeeType="Intern", alias="jo") == "t-jo"
    assert evaluate(intern, employeeType="Employee", alias="jo") == "jo"
    assert evaluate('IIF([n] > 9, "big", "small")', n="10") == "big"  # numbers compare as numbers
    assert evaluate('IIF([a] <> "x", 1, 2)', a="x") == 2
    assert evaluate('IIF([a] <= "b", 1, 2)', a="a") == 1
    assert evaluate("CBool([a] = [b])", a="x", b="x") is True
    assert evaluate('IIF([country]="USA",IIF([state]="CA","True","False"),"False")', country="USA", state="CA") == (
        "True"
    )


def test_iif_evaluates_only_the_chosen_branch() -> None:
    assert evaluate('IIF(True, "ok", Error("never"))') == "ok"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Not([flag])", False),
        ('Not("False")', True),
        ("CStr(True)", "True"),
        ("CStr(42)", "42"),
        ("IsString(42)", True),
        ("CBool(0)", False),
        ("CBool(&HF)", True),
        ("BitAnd(-2147483640, &H80000000)", 2147483648),
        ('StripSpaces(" a b ")', "ab"),
        ('ToUpper("straße")', "STRAßE"),  # .NET maps one character to one
        ('ToLower("TITLE", "tr-TR")', "tıtle"),
        ('PCase("o\'neil-smith")', "O'Neil-Smith"),
        ('NormalizeDiacritics("Łukasz Ørsted Straße Ā́")', "Lukasz OErsted Strasse A"),
        ('NormalizeDiacritics("Zoe\u0308")', "Zoe"),  # decomposed input matches too
        ('DNComponent(CRef("cn=Joe,ou=Sales,dc=contoso"), 1)', "Joe"),
        ('DNComponent("CN=Sales\\\\, EMEA,OU=Groups", 1)', "Sales, EMEA"),
        ('DNComponent("CN=a\\\\2Cb,OU=Groups", 2)', "Groups"),
        ('DNComponent("CN=a", 3)', None),
        ("StringFromSid([sid])", "S-1-5-21-1-2-3-500"),
        ('NumFromDate("2020-12-31 23:59:59-08:00")', 132539615990000000),
        ("DateFromNum(0)", None),  # AD's "never"
        ('FormatDateTime("2020-12-31-08:00", , "yyyy-MM-ddzzz", "yyyy-MM-dd")', "2020-12-31"),
        (
            'FormatDateTime("12/31/2020 09:30:00 PM", "M/d/yyyy hh:mm:ss tt", "yyyy-MM-ddTHH:mm:ss")',
            "2020-12-31T21:30:00",
        ),
        ('FormatDateTime("2021-02-03", "yyyy-MM-dd", "dddd d MMMM yy")', "Wednesday 3 February 21"),
        ('Redact("secret")', "secret"),
        ("SingleAppRoleAssignment([roles])", "Reader"),
        ('Word("a,,b", 2, ",")', "b"),
        ('InStr("abc", "z")', 0),
    ],
)
def test_function_semantics(text: str, expected: object) -> None:
    sid = bytes([1, 5, 0, 0, 0, 0, 0, 5]) + b"".join(n.to_bytes(4, "little") for n in (21, 1, 2, 3, 500))
    source = {"flag": "True", "sid": sid, "roles": ["Reader", "Writer"]}
    assert compile_expression(text).evaluate(source) == expected


def test_replace_mode_five_follows_func() -> None:
    # §8.3: FUNC's reading — source wins when present; otherwise the group is extracted from the attribute.
    text = (
        'Replace([telephoneNumber], , "\\\\+(?<isdCode>\\\\d* )(?<phoneNumber>\\\\d{10})", "phoneNumber", , [mobile], )'
    )
    expression = compile_expression(text)
    assert expression.evaluate({"telephoneNumber": "+1 5550001111", "mobile": "+91 8887779999"}) == "+1 5550001111"
    assert expression.evaluate({"mobile": "+91 8887779999"}) == "8887779999"
    assert expression.evaluate({"mobile": "none"}) is None


def test_format_date_time_accepts_both_documented_arities() -> None:
    # §8.3: FUNC has 4 arguments (with dateTimeStyles), CSFUNC 3; both are accepted.
    func = compile_expression('FormatDateTime([d], "AdjustToUniversal, AllowLeadingWhite", "yyyyMMdd", "dd.MM.yyyy")')
    cloud_sync = compile_expression('FormatDateTime([d], "yyyyMMdd", "dd.MM.yyyy")')
    assert func.evaluate({"d": " 20240229"}) == cloud_sync.evaluate({"d": "20240229"}) == "29.02.2024"


def test_function_names_are_matched_without_case() -> None:
    # Microsoft's own expressions write Instr, GUID and Cstr.
    assert evaluate('Instr("abc", "c")') == 3
    assert evaluate("Cstr(1)") == "1"


def test_lengths_and_positions_count_utf16_code_units() -> None:
    assert evaluate('Left("😀ab", 2)') == "😀"
    assert evaluate('Left("😀ab", 1)') is None  # a surrogate pair is never cut in half
    assert evaluate('Mid("a😀b", 4, 1)') == "b"
    assert evaluate('InStr("😀b", "b")') == 3


def test_trim_uses_dotnet_white_space() -> None:
    assert evaluate("Trim([a])", a="\u3000x\u00a0") == "x"
    assert evaluate("Trim([a])", a="\x1fx") == "\x1fx"  # Python would strip U+001F; .NET keeps it


def test_clock_and_random_source_are_injectable() -> None:
    clock = lambda: datetime(2021, 7, 2, 15, 33, 38, tzinfo=UTC)  # noqa: E731
    assert compile_expression("Now()").evaluate({}, clock=clock) == "7/2/2021 3:33:38 PM"
    assert compile_expression('DateDiff("d", Now(), "2021-07-12")').evaluate({}, clock=clock) == 10
    guid = compile_expression("Guid()")
    assert guid.evaluate({}, rng=random.Random(1)) == guid.evaluate({}, rng=random.Random(1))
    assert len(guid.evaluate({})) == 36
    text = compile_expression('RandomString(10, 2, 2, 2, 1, "?,")').evaluate({}, rng=random.Random(7))
    assert len(text) == 10 and not set(text) & set("?,")
    assert sum(c.isdigit() for c in text) >= 2 and sum(c.isupper() for c in text) >= 2


def test_select_unique_value_asks_the_target() -> None:
    rules = 'SelectUniqueValue(Join(".", [first], [last]), Join(".", Mid([first], 1, 1), [last]))'
    expression = compile_expression(rules)
    source = {"first": "John", "last": "Smith"}
    assert expression.evaluate(source, is_unique=lambda value: value != "John.Smith") == "J.Smith"
    with pytest.raises(Exception, match="every candidate is already taken"):
        expression.evaluate(source, is_unique=lambda value: False)


def test_dates_render_in_the_documented_format() -> None:
    assert evaluate('DateAdd("m", 1, CDate("2024-01-31"))') == "2/29/2024 12:00:00 AM"
    assert evaluate('CDate("2024-05-01T12:30:00Z")') == "5/1/2024 12:30:00 PM"
