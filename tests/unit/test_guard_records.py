"""What the processors make of the deletion guard's decisions: e-mail, status, log record, state keys."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from e2ad import cli_quarantine
from processors.deletion_guard import DeletionGuard, GuardSettings
from processors.guard_records import (
    NOTICE_LATEST_SECONDS,
    NOTICE_QUIET_SECONDS,
    TripNotice,
    processor_status,
    staged_result,
    trip_email,
)
from processors.state import ProcessorStore
from schemas import topics
from schemas.config import KafkaSettings
from schemas.deletes import DeletionTrip, StagedDelete
from schemas.desired import DesiredGroup
from schemas.status import PROCESSORS_KEY, ProcessorStatus, WriterStatus
from tests.clock import FakeClock

T0 = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
SETTINGS = GuardSettings(threshold=3, window_seconds=60)


def delete(group_id: str, name: str | None = None) -> DesiredGroup:
    attributes = {"displayName": name} if name else {}
    return DesiredGroup(
        group_id=group_id, anchor=f"Group_{group_id}", state="absent", reason="deleted in Entra", attributes=attributes
    )


def trip_of(count: int) -> tuple[DeletionTrip, list[StagedDelete]]:
    clock = FakeClock(T0)
    guard = DeletionGuard(GuardSettings(threshold=count, window_seconds=60), clock)
    staged: list[StagedDelete] = []
    trip = None
    for n in range(count):
        clock.now = T0 + dt.timedelta(seconds=n / 100)
        outcome = guard.decide(delete(f"g{n:03d}", f"Group {count - n:03d}"))
        staged += outcome.staged
        trip = outcome.tripped or trip
    assert trip is not None
    return trip, staged


def test_the_email_counts_names_the_first_groups_by_display_name_and_gives_the_commands() -> None:
    trip, staged = trip_of(25)
    subject, body = trip_email(trip, staged)
    assert subject == "e2ad: 25 group deletes held: delete threshold exceeded"
    assert "The e2ad processors are quarantined: delete threshold exceeded." in body
    assert "reaching the threshold of 25" in body and "25 are staged" in body
    listed = [line for line in body.splitlines() if line.startswith("  - ")]
    assert len(listed) == 20
    assert listed[0] == "  - Group 001 (g024, deleted in Entra)"  # by display name, not by arrival
    assert "... and 5 more: e2ad deletes list" in body
    for command in ("e2ad deletes list", "e2ad deletes approve --all", "e2ad deletes reject --all", "e2ad restart"):
        assert f"  {command} " in body


def test_a_short_burst_lists_every_group_and_no_more_line() -> None:
    trip, staged = trip_of(3)
    _, body = trip_email(trip, staged)
    assert len([line for line in body.splitlines() if line.startswith("  - ")]) == 3
    assert "more: e2ad deletes list" not in body


def test_the_notice_waits_for_the_burst_to_stop_growing_but_not_for_ever() -> None:
    trip, staged = trip_of(3)
    notice = TripNotice(trip, T0)
    notice.add(staged, T0)
    assert not notice.due(T0 + dt.timedelta(seconds=NOTICE_QUIET_SECONDS - 0.1))
    notice.add([staged[0].model_copy(update={"group_id": "late"})], T0 + dt.timedelta(seconds=2))
    assert not notice.due(T0 + dt.timedelta(seconds=2 + NOTICE_QUIET_SECONDS - 0.1))
    assert notice.due(T0 + dt.timedelta(seconds=2 + NOTICE_QUIET_SECONDS))
    assert notice.email()[0].startswith("e2ad: 4 group deletes held")
    for n in range(int(NOTICE_LATEST_SECONDS)):  # a delete staged every second: sent after 30 s anyway
        notice.add([staged[0].model_copy(update={"group_id": f"x{n}"})], T0 + dt.timedelta(seconds=n))
    assert notice.due(T0 + dt.timedelta(seconds=NOTICE_LATEST_SECONDS))


def test_status_says_quarantined_with_the_reason_and_counts() -> None:
    clock = FakeClock(T0)
    guard = DeletionGuard(SETTINGS, clock)
    guard.decide(delete("a"))
    running = processor_status(guard.status(), SETTINGS, T0)
    assert (running.state, running.pending, running.staged, running.reason) == ("running", 1, 0, None)
    guard.decide(delete("b"))
    guard.decide(delete("c"))
    quarantined = processor_status(guard.status(), SETTINGS, T0)
    assert quarantined.state == "quarantined" and not quarantined.healthy
    assert (quarantined.reason, quarantined.staged, quarantined.pending) == ("delete threshold exceeded", 3, 0)
    assert quarantined.since == T0 and quarantined.burst_deletes == 3
    assert (quarantined.threshold, quarantined.window_seconds) == (3, 60)


def test_a_staged_delete_is_logged_as_skipped_with_how_to_approve() -> None:
    _, staged = trip_of(3)
    result = staged_result(staged[0])
    assert (result.action, result.status, result.group_id, result.anchor) == (
        "StagedDelete",
        "skipped",
        "g000",
        "Group_g000",
    )
    assert "deletion threshold" in result.steps[0].description
    assert "e2ad deletes approve g000" in result.steps[1].description
    assert result.writer == "processors"


def test_the_guard_state_is_written_under_its_prefix_and_rebuilt_from_it() -> None:
    guard = DeletionGuard(SETTINGS, FakeClock(T0))
    for group_id in ("a", "b", "c"):
        guard.decide(delete(group_id))
    log: dict[bytes, bytes] = {}
    for key, value in ProcessorStore.guard_writes(guard.take_writes()):
        assert key.startswith(b"guard/")
        if value is None:
            log.pop(key, None)
        else:
            log[key] = value
    assert b"guard/guard" in log and b"guard/deletes/a" in log
    store = ProcessorStore()
    store.load(log)
    rebuilt = DeletionGuard.from_state(store.guard, SETTINGS)
    assert set(rebuilt.staged) == {"a", "b", "c"} and rebuilt.trip == guard.trip
    guard.reject(command_id="r1")
    tombstones = [key for key, value in ProcessorStore.guard_writes(guard.take_writes()) if value is None]
    assert set(tombstones) == {b"guard/deletes/a", b"guard/deletes/b", b"guard/deletes/c"}


def test_quarantine_status_reads_the_writers_and_not_the_processors_record(monkeypatch: pytest.MonkeyPatch) -> None:
    writer = WriterStatus(writer="w1", state="running")
    processors = ProcessorStatus(state="quarantined", threshold=500, window_seconds=300)

    async def latest(settings: KafkaSettings, topic: str) -> dict[bytes, bytes]:
        assert topic == topics.STATUS
        return {b"w1": topics.encode(writer), topics.key(PROCESSORS_KEY): topics.encode(processors)}

    monkeypatch.setattr(cli_quarantine.kafka, "read_latest", latest)
    assert asyncio.run(cli_quarantine.read_statuses(KafkaSettings())) == [writer]
