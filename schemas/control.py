"""Operator commands on e2ad.control, one partition, read by every stage they concern.

The writers read it as a broadcast from its end (clear-quarantine, restart); the processors and
the graph worker consume it under their own consumer groups, so a command issued while they are
down is applied when they start (approve-deletes, reject-deletes, restart). Each command has an
id: a stage that applies it remembers the id, so a command delivered twice acts once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

ALL_WRITERS = "*"

# clear-quarantine: writers leave quarantine. approve-deletes / reject-deletes: the processors
# release or drop deletes staged by the deletion threshold. restart: Cloud Sync's Restart sync
# (entra-provisioning.md §4.3): a full delta round, escrows and quarantines cleared.
Command = Literal["clear-quarantine", "approve-deletes", "reject-deletes", "restart"]


class ControlCommand(BaseModel):
    command: Command
    command_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    writer: str = ALL_WRITERS  # clear-quarantine: a writer's name, or every writer
    groups: list[str] | None = None  # approve-deletes / reject-deletes: these group ids; None: all staged
    force_deletes: bool = False  # restart: deletes above the threshold go through
    issued_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    issued_by: str | None = None

    def addresses(self, writer: str) -> bool:
        """Whether this command clears the quarantine of the writer named `writer`."""
        if self.command == "restart":
            return True
        return self.command == "clear-quarantine" and self.writer in (ALL_WRITERS, writer)
