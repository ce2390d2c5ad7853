"""Property tests: the parser fails only with its own error; the default cn always fits AD's 64 units."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.expressions import DEFAULT_CN_EXPRESSION, ExpressionError, compile_expression
from processors.expressions.parser import parse

DEFAULT_CN = compile_expression(DEFAULT_CN_EXPRESSION)
# Text biased toward the language's own characters, so most examples get past the first token.
SYNTAX_ALPHABET = st.sampled_from(list('()[],"\\&%<>=-_ \tHLeftAppendMid0123456789xTrueFalse')) | st.characters()


@settings(max_examples=400, deadline=None)
@given(st.text(SYNTAX_ALPHABET, max_size=60))
def test_parser_returns_a_tree_or_its_own_error(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        parse(text)


@settings(max_examples=200, deadline=None)
@given(st.text(SYNTAX_ALPHABET, max_size=60), st.dictionaries(st.sampled_from(["a", "b", "x"]), st.text(max_size=8)))
def test_compile_and_evaluate_fail_only_with_expression_errors(text: str, source: dict[str, str]) -> None:
    with contextlib.suppress(ExpressionError):
        compile_expression(text).evaluate(source)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_default_cn_is_at_most_64_utf16_units(display_name: str, object_id: str) -> None:
    cn = DEFAULT_CN.evaluate({"displayName": display_name, "objectId": object_id})
    assert cn is not None
    assert len(cn.encode("utf-16-le", "surrogatepass")) // 2 <= 64
