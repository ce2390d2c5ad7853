"""The deletion guard: a burst of group deletes is held back before any of it reaches AD (issue 12).

Cloud Sync stops a cycle that would delete `threshold` objects or more (default 500: "the maximum
number of deletes allowed is 499 in each execution"), quarantines the job and stages the deletes
(reference §4.1). e2ad has no cycle that bounds a burst: a scope mistake can arrive as many small
delta rounds. So the guard counts deletes over a sliding window of `window_seconds` and holds each
delete ("pending") until it is one window old; a burst is recognised before any of it is applied.

Detection. A burst is `threshold` or more distinct groups deleted within any span of
`window_seconds`. A span's count is largest at the arrival of its last delete, so the guard counts
[t - window, t] at each arrival t (released deletes too, which is why their arrival times are kept
for one window and no longer). A delete is released once `now - arrival >= window`; a span that
trips after that ends more than a window after the delete's arrival, so it cannot contain it.
At a tie, arrivals come before releases: the caller feeds the decisions it has at an instant
before it asks for due releases (a delete released first would still count, and the rest of its
burst still be staged).
A repeated delete of a group already held replaces it and moves its arrival to the latest one
(the group is counted once: the count is of distinct groups).

Trip. On a burst every pending delete is staged (not only the window's), the guard is quarantined
(DeletionTrip) and every further delete is staged at once, until nothing is staged any more
(approved, rejected, superseded, or dropped by a restart). A trip consumes the window: the deletes
it staged are the operator's to decide and do not count again once the guard is healthy.

Newest state wins. A later create/update of a group whose delete is held drops the held delete
(the group was restored or came back into scope); the decision itself passes at once.

Controls (Cloud Sync's names): approve (Allow deletes) and reject staged deletes, by group ids or
ALL; restart (Restart sync) ends the quarantine. restart(force_deletes=True) is the Graph restart
with resetScope ForceDeletes: the held deletes are released and every delete passes unguarded
until round_finished(), the end of the full round the restart triggers. A round, not a window,
because a full round's length depends on the tenant: a window could end mid-round (the round's
own deletes would trip the guard again) or outlast it (an unrelated accident would pass).
The held deletes are released rather than dropped, because a full delta round does not list a
group deleted in Entra again, so the round would never delete it.

State (to_state/from_state, and take_writes for write-through): one JSON record per key,
"guard" (GuardRecord: the trip, forcing, applied command ids) and "deletes/<group id>"
(HeldDelete: pending, staged or counted), a key's record None when it is gone (a tombstone on a
compacted topic). Pure: no I/O, no faust; the clock is injected.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from schemas.deletes import DeletionTrip, GuardRecord, HeldDelete, StagedDelete
from schemas.desired import DesiredGroup

ALL: Final = "all"  # approve or reject every staged delete
GUARD_KEY: Final = "guard"
DELETE_KEY_PREFIX: Final = "deletes/"
# A command read again (a replay of e2ad.control) is recognised among this many recent ones.
_REMEMBERED_COMMANDS = 256

Clock = Callable[[], dt.datetime]
Selection = Collection[str] | Literal["all"]
StateRecord = dict[str, Any] | None  # JSON-able; None: the key is gone


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class GuardSettings:
    threshold: int = 500  # a burst of this many deletes is held, threshold - 1 pass; 0: no guard
    window_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError(f"deletion threshold must be 0 (off) or more, not {self.threshold}")
        if self.window_seconds <= 0:
            raise ValueError(f"deletion window must be longer than 0 seconds, not {self.window_seconds}")

    @property
    def window(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.window_seconds)


@dataclass(frozen=True)
class GuardOutcome:
    """What one call asks the caller to publish."""

    publish: tuple[DesiredGroup, ...] = ()  # to ad.desired now: released, approved, passing decisions
    staged: tuple[StagedDelete, ...] = ()  # newly staged (or re-staged with a newer state): ad.staged-deletes
    unstaged: tuple[str, ...] = ()  # group ids whose ad.staged-deletes record ends: tombstone it
    superseded: tuple[str, ...] = ()  # held deletes (pending or staged) a newer state of the group dropped
    dropped: tuple[StagedDelete, ...] = ()  # rejected or dropped by restart: the AD groups stay
    tripped: DeletionTrip | None = None  # set by the one call that tripped: one notification per trip
    cleared: bool = False  # the guard left quarantine in this call


@dataclass(frozen=True)
class GuardStatus:
    """The guard at a glance, for e2ad.status and the metrics."""

    trip: DeletionTrip | None  # quarantined: why and since when
    staged: int  # deletes waiting for an operator
    pending: int  # deletes waiting for their window to pass
    forcing_since: dt.datetime | None


@dataclass
class _Outcome:
    publish: list[DesiredGroup] = field(default_factory=list)
    staged: list[StagedDelete] = field(default_factory=list)
    unstaged: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    dropped: list[StagedDelete] = field(default_factory=list)
    tripped: DeletionTrip | None = None
    cleared: bool = False

    def frozen(self) -> GuardOutcome:
        return GuardOutcome(
            publish=tuple(self.publish),
            staged=tuple(self.staged),
            unstaged=tuple(self.unstaged),
            superseded=tuple(self.superseded),
            dropped=tuple(self.dropped),
            tripped=self.tripped,
            cleared=self.cleared,
        )


def is_delete(desired: DesiredGroup) -> bool:
    """Every absent state is a delete, whatever its reason (deleted, soft-deleted, out of scope)."""
    return desired.state == "absent"


class DeletionGuard:
    """Holds group deletes for one window, stages a burst of them, and applies operator commands.

    Every call reads the clock once. At one instant the caller feeds the decisions it has
    before it asks release_due(): at a tie, arrivals come before releases.
    """

    def __init__(
        self,
        settings: GuardSettings | None = None,
        clock: Clock = utc_now,
        state: Mapping[str, StateRecord] | None = None,
    ) -> None:
        self.settings = settings or GuardSettings()
        self._clock = clock
        self._guard = GuardRecord()
        self._held: dict[str, HeldDelete] = {}  # group id -> pending, staged or counted
        self._writes: dict[str, StateRecord] = {}
        if state:
            self._load(state)

    @classmethod
    def from_state(
        cls, state: Mapping[str, StateRecord], settings: GuardSettings | None = None, clock: Clock = utc_now
    ) -> DeletionGuard:
        return cls(settings, clock, state)

    # -- views ---------------------------------------------------------------------------------

    @property
    def trip(self) -> DeletionTrip | None:
        """The quarantine, while the guard is tripped."""
        return self._guard.trip

    @property
    def forcing_since(self) -> dt.datetime | None:
        """When restart(force_deletes=True) let deletes through, until round_finished()."""
        return self._guard.forcing_since

    @property
    def pending(self) -> dict[str, DesiredGroup]:
        return {g: h.desired for g, h in self._held.items() if h.status == "pending" and h.desired}

    @property
    def staged(self) -> dict[str, StagedDelete]:
        return {g: h.staged for g, h in self._held.items() if h.status == "staged" and h.staged}

    def status(self) -> GuardStatus:
        counts = Counter(h.status for h in self._held.values())
        return GuardStatus(self._guard.trip, counts["staged"], counts["pending"], self._guard.forcing_since)

    def next_release_at(self) -> dt.datetime | None:
        """When release_due() next has something to release: the caller's timer."""
        arrivals = [h.arrived_at for h in self._held.values() if h.status == "pending"]
        return min(arrivals) + self.settings.window if arrivals else None

    # -- decisions -----------------------------------------------------------------------------

    def decide(self, desired: DesiredGroup) -> GuardOutcome:
        """Feed one desired state: a delete is held (or staged); any other state passes at once."""
        now = self._clock()
        out = _Outcome()
        if not is_delete(desired):
            self._supersede(desired.group_id, out)
            out.publish.append(desired)
        elif self.settings.threshold == 0 or self._guard.forcing_since is not None:
            self._supersede(desired.group_id, out)  # held from before the guard was off
            self._forget(desired.group_id)  # unguarded deletes are not counted
            out.publish.append(desired)
        elif self._guard.trip is not None:
            self._stage(desired, now, self._guard.trip, out)
        else:
            self._prune(now)
            self._put(HeldDelete(group_id=desired.group_id, status="pending", arrived_at=now, desired=desired))
            self._detect_burst(now, out)
        return out.frozen()

    def release_due(self) -> GuardOutcome:
        """Release the pending deletes that are one window old (and forget arrivals out of the window)."""
        now = self._clock()
        out = _Outcome()
        due = [h for h in self._held.values() if h.status == "pending" and now - h.arrived_at >= self.settings.window]
        for held in sorted(due, key=lambda h: h.arrived_at):
            if held.desired:
                out.publish.append(held.desired)
                self._put(HeldDelete(group_id=held.group_id, status="counted", arrived_at=held.arrived_at))
        self._prune(now)
        return out.frozen()

    # -- operator commands ---------------------------------------------------------------------

    def approve(self, groups: Selection = ALL, command_id: str | None = None) -> GuardOutcome:
        """Allow the selected staged deletes: they are published and their staged records end."""
        out = _Outcome()
        if self._command_seen(command_id):
            return out.frozen()
        for held in self._selected(groups):
            assert held.staged is not None
            out.publish.append(held.staged.desired)
            out.unstaged.append(held.group_id)
            self._drop(held.group_id)
        self._clear_if_nothing_staged(out)
        return out.frozen()

    def reject(self, groups: Selection = ALL, command_id: str | None = None) -> GuardOutcome:
        """Drop the selected staged deletes: the AD groups stay as they are."""
        out = _Outcome()
        if self._command_seen(command_id):
            return out.frozen()
        for held in self._selected(groups):
            assert held.staged is not None
            out.dropped.append(held.staged)
            out.unstaged.append(held.group_id)
            self._drop(held.group_id)
        self._clear_if_nothing_staged(out)
        return out.frozen()

    def restart(self, force_deletes: bool = False, command_id: str | None = None) -> GuardOutcome:
        """Cloud Sync's Restart sync: the quarantine ends and the staged deletes are dropped.

        With force_deletes (resetScope ForceDeletes) the held deletes, staged and pending, are
        published instead, and every delete passes unguarded until round_finished(). Without it,
        pending deletes and the window stay as they are (a restart does not weaken the guard), and
        a forced round still running is guarded from now on.
        """
        now = self._clock()
        out = _Outcome()
        if self._command_seen(command_id):
            return out.frozen()
        for held in sorted(self._held.values(), key=lambda h: h.arrived_at):
            if held.status == "staged" and held.staged:
                out.unstaged.append(held.group_id)
                if force_deletes:
                    out.publish.append(held.staged.desired)
                else:
                    out.dropped.append(held.staged)
                self._drop(held.group_id)
            elif force_deletes:
                if held.status == "pending" and held.desired:
                    out.publish.append(held.desired)
                self._drop(held.group_id)
        if self._guard.trip is not None:
            out.cleared = True
        # A restart without force_deletes starts a guarded round, even during a forced one.
        self._set_guard(trip=None, forcing_since=(self._guard.forcing_since or now) if force_deletes else None)
        return out.frozen()

    def discard(self) -> GuardOutcome:
        """`e2ad config delete`: every held delete is dropped unapplied (its AD group stays), the trip ends.

        Unlike restart, pending deletes are dropped too: the configuration they came from is gone,
        and a later configuration must not apply them.
        """
        out = _Outcome()
        for held in sorted(self._held.values(), key=lambda h: h.arrived_at):
            if held.status == "staged" and held.staged:
                out.unstaged.append(held.group_id)
                out.dropped.append(held.staged)
            self._drop(held.group_id)
        out.cleared = self._guard.trip is not None
        self._set_guard(trip=None, forcing_since=None)
        return out.frozen()

    def round_finished(self) -> GuardOutcome:
        """The full round a forcing restart triggered has ended: deletes are guarded again."""
        if self._guard.forcing_since is not None:
            self._set_guard(forcing_since=None)
        return GuardOutcome()

    # -- durability ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, StateRecord]:
        """The whole state as JSON-able records: "guard" and one "deletes/<group id>" per group."""
        state: dict[str, StateRecord] = {GUARD_KEY: self._guard.model_dump(mode="json")}
        for group_id, held in self._held.items():
            state[DELETE_KEY_PREFIX + group_id] = held.model_dump(mode="json")
        return state

    def take_writes(self) -> dict[str, StateRecord]:
        """The records changed since the last call (None: gone), to write through in this order."""
        writes, self._writes = self._writes, {}
        return writes

    def _load(self, state: Mapping[str, StateRecord]) -> None:
        for key, record in state.items():
            if record is None:
                continue
            if key == GUARD_KEY:
                self._guard = GuardRecord.model_validate(record)
            elif key.startswith(DELETE_KEY_PREFIX):
                held = HeldDelete.model_validate(record)
                self._held[held.group_id] = held
            else:
                raise ValueError(f"not a deletion guard state key: {key!r}")

    # -- the machinery -------------------------------------------------------------------------

    def _detect_burst(self, now: dt.datetime, out: _Outcome) -> None:
        span_start = now - self.settings.window
        in_span = [h.arrived_at for h in self._held.values() if h.status != "staged" and h.arrived_at >= span_start]
        if len(in_span) < self.settings.threshold:
            return
        trip = DeletionTrip(
            since=now,
            threshold=self.settings.threshold,
            window_seconds=self.settings.window_seconds,
            burst_deletes=len(in_span),
            burst_first_arrival=min(in_span),
            burst_last_arrival=now,
            staged=sum(h.status == "pending" for h in self._held.values()),
        )
        self._set_guard(trip=trip)
        out.tripped = trip
        for held in sorted(self._held.values(), key=lambda h: h.arrived_at):
            if held.status == "pending" and held.desired:
                self._stage(held.desired, held.arrived_at, trip, out, staged_at=now)
            elif held.status == "counted":
                self._drop(held.group_id)  # the trip consumes the window

    def _stage(
        self,
        desired: DesiredGroup,
        arrived_at: dt.datetime,
        trip: DeletionTrip,
        out: _Outcome,
        staged_at: dt.datetime | None = None,
    ) -> None:
        display_name = desired.attributes.get("displayName")
        staged = StagedDelete(
            group_id=desired.group_id,
            display_name=display_name if isinstance(display_name, str) else None,
            reason=desired.reason,
            arrived_at=arrived_at,
            staged_at=staged_at or arrived_at,
            tripped_at=trip.since,
            burst_first_arrival=trip.burst_first_arrival,
            burst_last_arrival=trip.burst_last_arrival,
            desired=desired,
        )
        self._put(HeldDelete(group_id=desired.group_id, status="staged", arrived_at=arrived_at, staged=staged))
        out.staged.append(staged)

    def _supersede(self, group_id: str, out: _Outcome) -> None:
        held = self._held.get(group_id)
        if held is None or held.status == "counted":
            return
        out.superseded.append(group_id)
        if held.status == "staged":
            out.unstaged.append(group_id)
            self._drop(group_id)
            self._clear_if_nothing_staged(out)
        else:
            # Its arrival still counts: a mass delete undone in part is still a burst.
            self._put(HeldDelete(group_id=group_id, status="counted", arrived_at=held.arrived_at))

    def _selected(self, groups: Selection) -> list[HeldDelete]:
        staged = [h for h in self._held.values() if h.status == "staged"]
        if groups != ALL:
            wanted = {groups} if isinstance(groups, str) else set(groups)  # one id, not its letters
            staged = [h for h in staged if h.group_id in wanted]
        return sorted(staged, key=lambda h: h.arrived_at)

    def _clear_if_nothing_staged(self, out: _Outcome) -> None:
        if self._guard.trip is not None and not any(h.status == "staged" for h in self._held.values()):
            self._set_guard(trip=None)
            out.cleared = True

    def _command_seen(self, command_id: str | None) -> bool:
        if command_id is None:
            return False
        if command_id in self._guard.applied_commands:
            return True
        self._set_guard(applied_commands=[*self._guard.applied_commands, command_id][-_REMEMBERED_COMMANDS:])
        return False

    def _prune(self, now: dt.datetime) -> None:
        span_start = now - self.settings.window
        for held in list(self._held.values()):
            if held.status == "counted" and held.arrived_at < span_start:
                self._drop(held.group_id)

    def _forget(self, group_id: str) -> None:
        if group_id in self._held:
            self._drop(group_id)

    def _put(self, held: HeldDelete) -> None:
        self._held[held.group_id] = held
        self._writes[DELETE_KEY_PREFIX + held.group_id] = held.model_dump(mode="json")

    def _drop(self, group_id: str) -> None:
        del self._held[group_id]
        self._writes[DELETE_KEY_PREFIX + group_id] = None

    def _set_guard(self, **changes: Any) -> None:
        self._guard = self._guard.model_copy(update=changes)
        self._writes[GUARD_KEY] = self._guard.model_dump(mode="json")
