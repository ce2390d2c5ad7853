"""Each stage's state on e2ad.status (compacted), published on every change.

WriterStatus is keyed by the writer's name; ProcessorStatus (the deletion guard) by "processors";
IngestStatus (delta rounds, subscriptions) by "ingest". Read by `e2ad quarantine status` and
`e2ad status`; the writer's and processors' /healthz answer with the same record.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from schemas.active import ConfigurationState

# running: writing. quarantined: consistent failures, writing stopped, retrying on a schedule.
# disabled: the retries gave up (28 days by default); only `e2ad quarantine clear` resumes.
WriterState = Literal["running", "quarantined", "disabled"]
# Graph's names for why a provisioning job is quarantined (entra-provisioning.md §4.2).
QuarantineReason = Literal["EncounteredQuarantineException", "EncounteredEscrowProportionThreshold"]


class WriterStatus(BaseModel):
    writer: str
    state: WriterState
    reason: QuarantineReason | None = None
    detail: str | None = None  # what failed, in words: the DC's answer, the failure counts
    since: dt.datetime | None = None  # in quarantine since
    next_retry: dt.datetime | None = None
    retries: int = 0  # scheduled retries made in this quarantine
    # Groups decided since the writer started or last left quarantine, and how many of them fail.
    decided: int = 0
    failing: int = 0
    reference_failing: int = 0  # decided, but with members that could not be resolved
    ad_unavailable_since: dt.datetime | None = None  # the DC is unreachable or busy: partitions paused
    # The active configuration the writer follows (e2ad.config); it writes only while "enabled".
    # None: none published yet, the file's provisioning sections apply.
    configuration_version: int | None = None
    configuration_state: ConfigurationState | None = None
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def healthy(self) -> bool:
        return self.state == "running"


PROCESSORS_KEY = "processors"  # the processors' record on e2ad.status (no writer is named so: see writers)
# running: deletes flow (each waits out the guard's window). quarantined: a burst of deletes
# reached the threshold; they are staged until approved, rejected or a restart.
ProcessorState = Literal["running", "quarantined"]


class ProcessorStatus(BaseModel):
    stage: Literal["processors"] = PROCESSORS_KEY
    state: ProcessorState
    reason: str | None = None  # "delete threshold exceeded" while quarantined
    since: dt.datetime | None = None  # quarantined since (the trip)
    staged: int = 0  # deletes waiting for an operator (ad.staged-deletes)
    pending: int = 0  # deletes waiting for their window to pass
    burst_deletes: int | None = None  # the trip's burst: distinct groups deleted within the window
    threshold: int
    window_seconds: float
    forcing_since: dt.datetime | None = None  # `e2ad restart --force-deletes`: deletes unguarded since
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def healthy(self) -> bool:
        return self.state == "running"


INGEST_KEY = "ingest"  # the graph worker's record on e2ad.status


class DeltaRoundReport(BaseModel):
    """One resource's part of a delta round that published its changes and saved its cursor."""

    at: dt.datetime
    full_round: bool
    changes: int


class DeltaRoundFailure(BaseModel):
    at: dt.datetime
    error: str  # Graph's or Kafka's answer, in words


class ResourceRounds(BaseModel):
    last_success: DeltaRoundReport | None = None
    last_failure: DeltaRoundFailure | None = None  # kept after a later success, so an operator sees what it was


class SubscriptionStatus(BaseModel):
    resource: str
    id: str
    expires_at: dt.datetime


class IngestStatus(BaseModel):
    """The graph worker's delta rounds and Graph subscriptions, published after every round."""

    stage: Literal["ingest"] = INGEST_KEY
    resources: dict[str, ResourceRounds] = Field(default_factory=dict)  # users, groups
    subscriptions: list[SubscriptionStatus] = Field(default_factory=list)
    completed_rounds: int = 0
    failed_rounds: int = 0
    updated_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
