"""tests/polling.until, the tests' one way to wait: sync or async conditions, and a failure that says
what it waited for and what it saw last."""

from __future__ import annotations

import pytest

from tests.polling import until


async def test_returns_the_first_truthy_value_of_a_sync_condition() -> None:
    calls = []

    def condition() -> list[int]:
        calls.append(1)
        return calls if len(calls) == 3 else []

    assert await until(condition, "three calls", interval=0) == [1, 1, 1]


async def test_awaits_an_async_condition() -> None:
    values = iter([0, None, "done"])

    async def condition() -> object:
        return next(values)

    assert await until(condition, "done", interval=0) == "done"


async def test_fails_naming_what_it_waited_for_and_the_last_value_seen() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.1 s waiting for the answer; last seen: \[\]"):
        await until(lambda: [], "the answer", timeout=0.1, interval=0.01)
