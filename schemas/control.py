"""Operator commands on e2ad.control, which every writer reads as a broadcast (no consumer group)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

ALL_WRITERS = "*"


class ControlCommand(BaseModel):
    command: Literal["clear-quarantine"]
    writer: str = ALL_WRITERS  # a writer's name, or every writer
    issued_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    issued_by: str | None = None

    def addresses(self, writer: str) -> bool:
        return self.writer in (ALL_WRITERS, writer)
