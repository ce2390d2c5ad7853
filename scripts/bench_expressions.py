"""Benchmark: evaluations per second of the default cn expression, next to a plain Python equivalent.

Usage: .venv/bin/python scripts/bench_expressions.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from processors.expressions import DEFAULT_CN_EXPRESSION, compile_expression
from processors.expressions.text import NET_WHITESPACE

SOURCES = [
    {"displayName": f"  Department {n} – Sales & Marketing team of the northern region  ", "objectId": oid}
    for n, oid in enumerate(
        (
            "00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
            "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f",
            "12345678-90ab-cdef-1234-567890abcdef",
        )
    )
]


def plain_cn(source: dict[str, str]) -> str:
    """The same string computed directly (ASCII/BMP input, so characters equal UTF-16 units)."""
    return source["displayName"].strip(NET_WHITESPACE)[:51] + "_" + source["objectId"][24:36]


def rate(function: Callable[[dict[str, str]], object], seconds: float) -> float:
    count, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for source in SOURCES * 100:
            function(source)
        count += 100 * len(SOURCES)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per variant")
    seconds = parser.parse_args().seconds
    expression = compile_expression(DEFAULT_CN_EXPRESSION)
    assert all(expression.evaluate(s) == plain_cn(s) for s in SOURCES)
    compiled = rate(expression.evaluate, seconds)
    plain = rate(plain_cn, seconds)
    print(f"default cn expression: {compiled:,.0f} evaluations/s (one core)")
    print(f"plain Python function: {plain:,.0f} evaluations/s ({plain / compiled:.1f}x faster)")


if __name__ == "__main__":
    main()
