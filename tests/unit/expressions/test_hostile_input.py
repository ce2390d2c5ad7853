"""Tenant-controlled values and hostile expressions: a clean error or a result, never a crash or a stall.

Findings 1, 2 and 9 of issue 11, and a fuzz of the parser, checker and evaluator.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.expressions import (
    ExpressionCheckError,
    ExpressionError,
    ExpressionEvaluationError,
    ExpressionSyntaxError,
    check_mappings,
    compile_expression,
)
from processors.expressions import dates as dates_module
from processors.expressions.functions import FUNCTIONS
from processors.expressions.parser import MAX_NESTING
from processors.mapping import GroupMapper, MappingError

CONTAINER = "OU=Groups,DC=e2ad,DC=test"


def test_a_case_folding_character_in_a_date_is_that_objects_error_not_a_crash() -> None:
    expression = compile_expression('FormatDateTime([d], , "d MMMM yyyy", "yyyy-MM-dd")')
    assert expression.evaluate({"d": "3 August 2020"}) == "2020-08-03"

    with pytest.raises(ExpressionEvaluationError, match="does not match the date format"):
        expression.evaluate({"d": "3 Augu\u017ft 2020"})  # 'ſ' folds to 's' under Unicode case folding


def test_a_mapping_that_fails_on_a_value_is_that_groups_error() -> None:
    mapper = GroupMapper({"info": 'FormatDateTime([description], , "d MMMM yyyy", "yyyy-MM-dd")'}, {}, CONTAINER)
    with pytest.raises(MappingError, match=r"^info: "):
        mapper.map(
            "0f6a3b5c-1111-4000-8000-a1b2c3d4e5f6", {"displayName": "Sales", "description": "3 Augu\u017ft 2020"}
        )


def test_any_exception_inside_evaluation_becomes_an_evaluation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> object:
        raise StopIteration  # what the month lookup raised before; any defect a value finds

    monkeypatch.setattr(dates_module, "parse_exact", broken)
    expression = compile_expression('FormatDateTime([d], , "d MMMM yyyy", "yyyy-MM-dd")')
    with pytest.raises(ExpressionEvaluationError, match="StopIteration"):
        expression.evaluate({"d": "3 August 2020"})


def test_the_catastrophic_pattern_of_the_issue_answers_at_once() -> None:
    expression = compile_expression(r'Replace([displayName], , "^(\w+\s?)*$", , "x", , )')
    assert expression.evaluate({"displayName": "a" * 22 + "!"}) == "a" * 22 + "!"  # 22.8 s with `re`
    assert expression.evaluate({"displayName": "ab cd"}) == "x"


@pytest.mark.parametrize(
    "text",
    [
        r'Replace([displayName], , "^(\w+\s?)*$", , "x", , )',
        r'Replace([displayName], , [pattern], , "x", , )',  # the pattern itself from an attribute
        r'Replace([empty], , "^(?<g>(\w+\s?)*)$", "g", , [displayName], )',
    ],
)
def test_a_regex_that_runs_too_long_is_that_objects_error(text: str) -> None:
    source = {"displayName": "a" * 200_000 + "!", "pattern": r"^(\w+\s?)*$", "empty": ""}
    with pytest.raises(ExpressionEvaluationError, match=r"gave up after 0\.25 s on a value of 200001 characters"):
        compile_expression(text).evaluate(source)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Left([a], " + "9" * 5000 + ")", "integer literal of 5000 digits: at most 19"),
        ("Left([a], &H" + "F" * 100 + ")", "integer literal of 100 digits: at most 19"),
        (" & ".join(["[a]"] * 1000), f"nested deeper than {MAX_NESTING}"),
        (" & ".join(["[a]"] * 900), f"nested deeper than {MAX_NESTING}"),
        ("Trim(" * 150 + "[a]" + ")" * 150, f"nested deeper than {MAX_NESTING}"),
        ('"' + "x" * 5000 + '"', "string literal of 5000 characters: at most 4000"),
        ("[a]" + " " * 20_000, "expression of 20003 characters: at most 10000"),
    ],
)
def test_load_time_limits_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionSyntaxError, match=message):
        compile_expression(text)
    [error] = check_mappings({"description": text})
    assert str(error).startswith("description:")


def test_the_longest_accepted_chain_evaluates() -> None:
    text = " & ".join(["[a]"] * (MAX_NESTING - 1))
    assert compile_expression(text).evaluate({"a": "x"}) == "x" * (MAX_NESTING - 1)


def test_replace_with_its_trailing_arguments_left_out() -> None:
    assert compile_expression('Replace([a], "x", , , "y")').evaluate({"a": "axa"}) == "aya"
    with pytest.raises(ExpressionCheckError, match="one of its five documented forms"):
        compile_expression("Replace([a])")


# -- fuzz --------------------------------------------------------------------------------------

# Text that makes trouble: case folding ('ſ', Kelvin 'K', 'İ'), surrogates, NUL, combining marks.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\u017f", "\u212a", "\u0130", "\ud800", "\x00", "e\u0301", "9" * 30, "-", "&H"]),
    st.text(alphabet=st.sampled_from('aſKk0-9 ,\\()[]"%&$'), max_size=30),
)
NAMES = sorted(FUNCTIONS)


def _expressions() -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(["[a]", "[b]", "[missing]", "True", "False", "vbTextCompare", "%T%", "", "1", "-3"]),
        HOSTILE_TEXT.map(lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'),
        st.integers(-(10**20), 10**20).map(str),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        call = st.tuples(st.sampled_from(NAMES), st.lists(inner, max_size=8)).map(
            lambda c: f"{c[0]}({', '.join(c[1])})"
        )
        joined = st.tuples(inner, st.sampled_from(["&", "=", "<>", ">"]), inner).map(" ".join)
        return st.one_of(call, joined, inner.map(lambda e: f"({e})"))

    return st.recursive(leaves, extend, max_leaves=12)


FUZZ = settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(text=st.one_of(_expressions(), HOSTILE_TEXT), a=HOSTILE_TEXT, b=st.one_of(HOSTILE_TEXT, st.lists(HOSTILE_TEXT)))
def test_fuzz_any_expression_on_any_value_gives_a_result_or_a_clean_error(text: str, a: str, b: object) -> None:
    try:
        expression = compile_expression(text, tokens={"T": "token value"})
    except ExpressionError as error:
        assert str(error)  # a message, and the checker's own type: nothing else may escape
        return
    try:
        expression.evaluate({"a": a, "b": b})
    except ExpressionEvaluationError as error:
        assert str(error)
