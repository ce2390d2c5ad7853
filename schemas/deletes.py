"""Deletes held back by the deletion guard (processors/deletion_guard.py), and the guard's own state.

StagedDelete is the record on ad.staged-deletes (keyed by group id): a delete the threshold held,
waiting for an operator to approve or reject it. HeldDelete and GuardRecord are the guard's state,
one small record per group it holds or counts plus one for the trip, so that the processors can
write it through to a compacted topic key by key.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from schemas.desired import DesiredGroup

THRESHOLD_EXCEEDED = "delete threshold exceeded"  # Cloud Sync's status for the same quarantine


class DeletionTrip(BaseModel):
    """Why the guard is quarantined: the burst of deletes that reached the threshold."""

    reason: str = THRESHOLD_EXCEEDED
    since: dt.datetime  # when the burst was detected: the arrival of its last delete
    threshold: int
    window_seconds: float
    burst_deletes: int  # distinct groups deleted within the span that tripped
    burst_first_arrival: dt.datetime
    burst_last_arrival: dt.datetime
    staged: int  # the pending deletes the trip staged (more are staged while it lasts)


class StagedDelete(BaseModel):
    """A delete held by the threshold until an operator approves or rejects it (ad.staged-deletes)."""

    group_id: str
    display_name: str | None = None  # when the desired state carries it (attributes["displayName"])
    reason: str | None = None  # why the group is absent: "deleted", "soft-deleted", "out of scope"
    held_because: str = THRESHOLD_EXCEEDED
    arrived_at: dt.datetime  # the delete's (latest) arrival at the guard
    staged_at: dt.datetime
    tripped_at: dt.datetime  # the trip that holds it (DeletionTrip.since)
    burst_first_arrival: dt.datetime  # the span of the burst that tripped
    burst_last_arrival: dt.datetime
    desired: DesiredGroup  # what an approval publishes to ad.desired


class HeldDelete(BaseModel):
    """One group the guard holds or still counts: the value of its state record deletes/<group id>.

    pending: held until it is one window old, then released (desired is what is published).
    staged: held by a trip until approved or rejected (staged is the ad.staged-deletes record).
    counted: released or superseded, kept until its arrival leaves the window, since it still
    counts toward a burst that a later delete may complete.
    """

    group_id: str
    status: Literal["pending", "staged", "counted"]
    arrived_at: dt.datetime
    desired: DesiredGroup | None = None  # pending only
    staged: StagedDelete | None = None  # staged only


class GuardRecord(BaseModel):
    """The guard's trip state: the value of its state record "guard"."""

    trip: DeletionTrip | None = None
    forcing_since: dt.datetime | None = None  # restart(force_deletes=True) until the round ends
    # Operator commands already applied, newest last, so a command read again changes nothing.
    applied_commands: list[str] = Field(default_factory=list)
