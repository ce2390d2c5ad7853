"""What a compiled expression is evaluated with: the source object and the injectable clock and random source."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from processors.expressions.values import Value


@dataclass(slots=True)
class EvaluationContext:
    source: Mapping[str, object]
    clock: Callable[[], datetime]
    rng: random.Random
    # SelectUniqueValue asks the target whether a candidate is free; None treats every candidate as free.
    is_unique: Callable[[str], bool] | None


Evaluator = Callable[[EvaluationContext], Value]


class IgnoreFlowSignal(Exception):
    """Raised by IgnoreFlowIfNullOrEmpty wherever it sits; the expression then yields IGNORE_FLOW."""
