"""What the deletion guard's decisions become for operators: the e-mail, the status, the log record.

Pure: processors/app.py publishes and sends them (e2ad.status, ad.results, runtime.mail).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from processors.deletion_guard import GuardSettings, GuardStatus
from schemas.deletes import DeletionTrip, StagedDelete
from schemas.results import ProvisioningResult, ProvisioningStep
from schemas.status import ProcessorStatus

LISTED_GROUPS = 20  # the e-mail names this many staged groups, by display name; `e2ad deletes list` has all
WRITER = "processors"  # ad.results' `writer`: who decided
# A trip's e-mail waits until no delete was staged for this long (at most NOTICE_LATEST_SECONDS
# after the trip): the guard trips on the threshold-th delete, and the rest of the burst follows.
NOTICE_QUIET_SECONDS = 3.0
NOTICE_LATEST_SECONDS = 30.0

APPROVE_ALL = "e2ad deletes approve --all"
COMMANDS = (
    ("e2ad deletes list", "see every staged delete, why and since when"),
    (APPROVE_ALL, "apply them all (or name group ids: e2ad deletes approve GROUP_ID ...)"),
    ("e2ad deletes reject --all", "drop them: the AD groups stay as they are (or name group ids)"),
    ("e2ad restart", "Restart sync: a full delta round; the staged deletes are dropped and the quarantine ends"),
)


def processor_status(status: GuardStatus, settings: GuardSettings, now: dt.datetime) -> ProcessorStatus:
    """The processors' record on e2ad.status."""
    trip = status.trip
    return ProcessorStatus(
        state="quarantined" if trip else "running",
        reason=trip.reason if trip else None,
        since=trip.since if trip else None,
        staged=status.staged,
        pending=status.pending,
        burst_deletes=trip.burst_deletes if trip else None,
        threshold=settings.threshold,
        window_seconds=settings.window_seconds,
        forcing_since=status.forcing_since,
        updated_at=now,
    )


def staged_result(staged: StagedDelete) -> ProvisioningResult:
    """The provisioning-log record (ad.results) of one staged delete: nothing was done to the AD group."""
    why = (
        f"the delete ({staged.reason or 'absent'}) is one of a burst of deletes that reached the deletion"
        f" threshold (first {_time(staged.burst_first_arrival)}, last {_time(staged.burst_last_arrival)});"
        " the AD group stays as it is until an operator decides"
    )
    return ProvisioningResult(
        at=staged.staged_at,
        group_id=staged.group_id,
        anchor=staged.desired.anchor,
        action="StagedDelete",
        status="skipped",
        steps=[
            ProvisioningStep(name="processing", status="skipped", description=why),
            ProvisioningStep(
                name="export",
                status="skipped",
                description=(
                    f"staged on ad.staged-deletes: `e2ad deletes approve {staged.group_id}` (or --all)"
                    f" deletes it, `e2ad deletes reject {staged.group_id}` keeps it"
                ),
            ),
        ],
        warnings=[staged.held_because],
        writer=WRITER,
        source_changed_at=staged.desired.source_changed_at,
    )


@dataclass
class TripNotice:
    """The one e-mail of a trip, collecting the deletes staged until the burst has stopped growing."""

    trip: DeletionTrip
    tripped_at: dt.datetime
    staged: dict[str, StagedDelete] = field(default_factory=dict)
    changed_at: dt.datetime | None = None

    def add(self, staged: Iterable[StagedDelete], now: dt.datetime) -> None:
        for item in staged:
            self.staged[item.group_id] = item
            self.changed_at = now

    def due(self, now: dt.datetime) -> bool:
        quiet = now - (self.changed_at or self.tripped_at)
        return quiet.total_seconds() >= NOTICE_QUIET_SECONDS or (
            (now - self.tripped_at).total_seconds() >= NOTICE_LATEST_SECONDS
        )

    def email(self) -> tuple[str, str]:
        return trip_email(self.trip, list(self.staged.values()))


def trip_email(trip: DeletionTrip, staged: Sequence[StagedDelete]) -> tuple[str, str]:
    """Subject and plain-text body of the one message per trip; `staged` are the deletes it staged."""
    count = len(staged)
    subject = f"e2ad: {count} group deletes held: {trip.reason}"
    named = sorted(staged, key=lambda s: ((s.display_name or "").casefold(), s.group_id))
    lines = [
        f"The e2ad processors are quarantined: {trip.reason}.",
        "",
        # The trip is counted at the delete that reaches the threshold; the staged count includes the
        # rest of the burst, which the message waits for.
        f"{trip.burst_deletes} groups were deleted (or left the scope) within {trip.window_seconds:g} seconds,"
        f" from {_time(trip.burst_first_arrival)} to {_time(trip.burst_last_arrival)}, reaching the threshold"
        f" of {trip.threshold}. None of these deletes has been applied: {count} are staged, and every"
        " further delete is staged too until the quarantine ends. Every staged group stays in AD exactly"
        " as it is; creates, updates and memberships keep flowing.",
        "",
        f"Staged groups (the first {min(count, LISTED_GROUPS)} of {count} by display name):",
    ]
    for item in named[:LISTED_GROUPS]:
        reason = f", {item.reason}" if item.reason else ""
        lines.append(f"  - {item.display_name or '(no display name)'} ({item.group_id}{reason})")
    if count > LISTED_GROUPS:
        lines.append(f"  ... and {count - LISTED_GROUPS} more: e2ad deletes list")
    lines += ["", "What to do, on a host with e2ad's configuration:"]
    width = max(len(command) for command, _ in COMMANDS)
    lines += [f"  {command.ljust(width)}   {meaning}" for command, meaning in COMMANDS]
    lines += ["", f"Quarantined since {_time(trip.since)}. This message is sent once per trip."]
    return subject, "\n".join(lines) + "\n"


def _time(value: dt.datetime) -> str:
    return value.isoformat(timespec="seconds")
