"""Quarantine as Entra's provisioning jobs have it (entra-provisioning.md §4.2), as a pure state machine.

A writer enters quarantine when the DC rejects its credentials, or when the groups it decides
fail consistently. Quarantined, it writes nothing but one record at each scheduled retry
(6 h, 12 h, 24 h after entering, then daily); the first success, or `e2ad quarantine clear`,
leaves quarantine, and 28 days without one disable it until cleared. Time comes from an
injectable clock, so the schedule is tested without waiting; writers/hold.py joins it with the
DC backoff, and the group sink does the I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from schemas.config import WriterSettings
from schemas.results import Status
from schemas.status import QuarantineReason, WriterState

# ok: AD took the decision. reference-failed: it did, but members could not be resolved (Entra
# keeps these "reference failures" out of the proportion). failed: AD (or e2ad) rejected it.
Outcome = Literal["ok", "reference-failed", "failed"]
CREDENTIALS: QuarantineReason = "EncounteredQuarantineException"
ESCROW: QuarantineReason = "EncounteredEscrowProportionThreshold"


def outcome_of(status: Status) -> Outcome:
    """How a provisioning result counts: a warning is an unresolved reference, see writers/reconcile.py."""
    return {"failure": "failed", "warning": "reference-failed"}.get(status, "ok")  # type: ignore[return-value]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class QuarantinePolicy:
    """Thresholds and schedule; the defaults are Entra's."""

    evaluation_start: int = 5_000
    failure_ratio: float = 0.4
    failure_limit: int = 40_000
    absolute_limit: int = 60_000
    retry_after: tuple[dt.timedelta, ...] = (dt.timedelta(hours=6), dt.timedelta(hours=12), dt.timedelta(hours=24))
    retry_every: dt.timedelta = dt.timedelta(hours=24)
    give_up_after: dt.timedelta = dt.timedelta(days=28)

    @classmethod
    def from_settings(cls, settings: WriterSettings) -> QuarantinePolicy:
        return cls(
            evaluation_start=settings.quarantine_evaluation_start,
            failure_ratio=settings.quarantine_failure_ratio,
            failure_limit=settings.quarantine_failure_limit,
            absolute_limit=settings.quarantine_absolute_limit,
            retry_after=tuple(dt.timedelta(seconds=s) for s in settings.quarantine_retry_seconds),
            retry_every=dt.timedelta(seconds=settings.quarantine_retry_every_seconds),
            give_up_after=dt.timedelta(seconds=settings.quarantine_give_up_seconds),
        )

    def retry_offset(self, slot: int) -> dt.timedelta:
        """How long after entering quarantine the retry in `slot` (from 0) is due, at most give_up_after."""
        if slot < len(self.retry_after):
            offset = self.retry_after[slot]
        else:
            offset = self.retry_after[-1] + (slot - len(self.retry_after) + 1) * self.retry_every
        return min(offset, self.give_up_after)


class Quarantine:
    """One writer's quarantine state and the failure counts that lead into it.

    Failures are counted per group (Entra's escrows): a group is failing while its latest
    decision failed, so a group that keeps failing counts once and one that recovers stops
    counting. Leaving quarantine starts a new evaluation window.
    """

    def __init__(self, policy: QuarantinePolicy | None = None, clock: Callable[[], dt.datetime] = utc_now) -> None:
        self.policy = policy or QuarantinePolicy()
        self._clock = clock
        self.state: WriterState = "running"
        self.reason: QuarantineReason | None = None
        self.detail: str | None = None
        self.since: dt.datetime | None = None
        self.retries = 0
        self._slot = 0  # the schedule's next retry
        self._decided: set[str] = set()
        self._failing: set[str] = set()
        self._reference_failing: set[str] = set()

    # -- what the writer asks ---------------------------------------------------------------
    @property
    def writing(self) -> bool:
        return self.state == "running"

    @property
    def next_retry(self) -> dt.datetime | None:
        if self.state != "quarantined":
            return None
        assert self.since is not None
        return self.since + self.policy.retry_offset(self._slot)

    def retry_due(self) -> bool:
        next_retry = self.next_retry
        return next_retry is not None and self._clock() >= next_retry

    @property
    def decided(self) -> int:
        return len(self._decided)

    @property
    def failing(self) -> int:
        return len(self._failing)

    @property
    def reference_failing(self) -> int:
        return len(self._reference_failing)

    # -- what happens; each returns True when the state (or its reason) changed ---------------
    def record(self, group_id: str, outcome: Outcome) -> bool:
        """One decision of the writer. In quarantine, any decision AD took ends it."""
        self._count(group_id, outcome)
        if not self.writing:
            if outcome == "failed":
                return False
            self._leave()
            return True
        breach = self._breach()
        if breach is None:
            return False
        self._enter(ESCROW, breach)
        return True

    def credentials_rejected(self, detail: str) -> bool:
        """The DC refused the bind: nothing can be written, quarantine at once."""
        if self.reason == CREDENTIALS:
            return False
        self._enter(CREDENTIALS, detail)
        return True

    def start_retry(self) -> None:
        """A scheduled retry is being made now; the next one is the first slot still ahead."""
        assert self.since is not None
        self.retries += 1
        now = self._clock()
        while self.since + self.policy.retry_offset(self._slot) <= now and self._slot < self._last_slot():
            self._slot += 1

    def expire(self) -> bool:
        """Disable after give_up_after in quarantine without a success (Entra: the job is disabled)."""
        if self.state != "quarantined":
            return False
        assert self.since is not None
        if self._clock() < self.since + self.policy.give_up_after:
            return False
        self.state = "disabled"
        self.detail = f"no success in {self.policy.give_up_after} of quarantine ({self.detail})"
        return True

    def clear(self) -> bool:
        """Write again now, with fresh counts: `e2ad quarantine clear`, or a retry's successful bind."""
        if self.writing:
            return False
        self._leave()
        return True

    def restart(self) -> bool:
        """Restart sync (`e2ad restart`): the escrows (failure counts) cleared, quarantine left.

        Unlike clear(), the counts start afresh also for a writer that is not quarantined, as
        Cloud Sync's Restart clears escrows. True when the writer was quarantined.
        """
        quarantined = not self.writing
        self._leave()
        return quarantined

    # -- internals ----------------------------------------------------------------------------
    def _count(self, group_id: str, outcome: Outcome) -> None:
        self._decided.add(group_id)
        self._failing.discard(group_id)
        self._reference_failing.discard(group_id)
        if outcome == "failed":
            self._failing.add(group_id)
        elif outcome == "reference-failed":
            self._reference_failing.add(group_id)

    def _breach(self) -> str | None:
        """Why the counts call for quarantine, in words; None when they do not."""
        policy = self.policy
        failing, decided = self.failing, self.decided
        with_references = failing + self.reference_failing
        if with_references > policy.absolute_limit:
            return f"{with_references} groups fail, counting unresolved members, more than {policy.absolute_limit}"
        if failing < policy.evaluation_start:
            return None
        if failing > policy.failure_limit:
            return f"{failing} groups fail, more than {policy.failure_limit}"
        if failing / decided > policy.failure_ratio:
            return f"{failing} of {decided} groups fail ({failing / decided:.0%}), more than {policy.failure_ratio:.0%}"
        return None

    def _enter(self, reason: QuarantineReason, detail: str) -> None:
        if self.state == "running":
            self.state, self.since = "quarantined", self._clock()
            self.retries = self._slot = 0
        self.reason, self.detail = reason, detail

    def _leave(self) -> None:
        self.state = "running"
        self.reason = self.detail = self.since = None
        self.retries = self._slot = 0
        self._decided.clear()
        self._failing.clear()
        self._reference_failing.clear()

    def _last_slot(self) -> int:
        """The slot whose retry falls on give_up_after: no slot after it is ever due."""
        slot = 0
        while self.policy.retry_offset(slot) < self.policy.give_up_after:
            slot += 1
        return slot
