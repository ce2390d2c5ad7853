"""The tests' one way to wait for something: poll a condition until it holds, or fail saying what."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    condition: Callable[[], T | Awaitable[T]], what: str, *, timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Call `condition` (sync or async) until it returns something truthy, and return that.

    A condition that does I/O between checks (reads a topic for a while, asks the broker) can pass
    interval=0. After `timeout` seconds it fails with an AssertionError naming `what` it waited for
    and the last value the condition returned.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {value!r}")
        await asyncio.sleep(interval)
