"""The writer's hold: DC backoff and quarantine as one pure state, on a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.clock import FakeClock
from writers.hold import Hold
from writers.quarantine import Quarantine, QuarantinePolicy

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def hold(clock: FakeClock) -> Hold:
    policy = QuarantinePolicy(retry_after=(dt.timedelta(seconds=60),), retry_every=dt.timedelta(seconds=120))
    return Hold(Quarantine(policy, clock), initial_seconds=1.0, max_seconds=5.0, clock=clock)


def test_a_running_writer_with_the_dc_there_writes_now(hold: Hold) -> None:
    assert hold.wait() == 0 and not hold.retry_due() and hold.unavailable_since is None
    assert hold.available() is False  # nothing changed: the status needs no update


def test_the_backoff_doubles_up_to_the_max_and_starts_over_once_the_dc_answers(hold: Hold, clock: FakeClock) -> None:
    delays = []
    for _ in range(5):
        delays.append(hold.unavailable())
        assert hold.wait() == delays[-1]
        clock.advance(delays[-1])
        assert hold.wait() == 0  # the next attempt is due; the backoff stands until AD answers
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert hold.unavailable_since == START

    assert hold.available() is True and hold.unavailable_since is None
    assert hold.unavailable() == 1.0


def test_a_wait_counts_down_with_the_clock(hold: Hold, clock: FakeClock) -> None:
    hold.unavailable()
    clock.advance(0.25)
    assert hold.wait() == 0.75


def test_quarantine_holds_until_its_next_retry_which_is_then_due(hold: Hold, clock: FakeClock) -> None:
    hold.quarantine.credentials_rejected("invalid credentials")
    assert hold.wait() == 60 and not hold.retry_due()
    clock.advance(60)
    assert hold.wait() == 0 and hold.retry_due()
    hold.quarantine.start_retry()
    assert hold.wait() == 120 and not hold.retry_due()


def test_the_dc_backoff_and_quarantine_hold_until_the_later_of_the_two(hold: Hold, clock: FakeClock) -> None:
    hold.quarantine.credentials_rejected("invalid credentials")
    clock.advance(59.5)
    hold.unavailable()  # a retry due in 0.5 s, the DC to be tried again in 1 s
    assert hold.wait() == 1.0 and not hold.retry_due()
    clock.advance(1.0)
    assert hold.retry_due()


def test_a_cleared_quarantine_writes_at_once(hold: Hold) -> None:
    hold.quarantine.credentials_rejected("invalid credentials")
    assert hold.quarantine.clear()
    assert hold.wait() == 0 and not hold.retry_due()


def test_a_disabled_writer_waits_until_cleared(clock: FakeClock) -> None:
    policy = QuarantinePolicy(retry_after=(dt.timedelta(seconds=60),), give_up_after=dt.timedelta(seconds=60))
    hold = Hold(Quarantine(policy, clock), initial_seconds=1.0, max_seconds=5.0, clock=clock)
    hold.quarantine.credentials_rejected("invalid credentials")
    clock.advance(60)
    assert hold.quarantine.expire()
    assert hold.wait() is None and not hold.retry_due()


def test_a_configuration_disabled_or_deleted_holds_writing_until_enabled(hold: Hold) -> None:
    assert hold.pause("disabled") is True
    assert hold.wait() is None and not hold.retry_due()  # until released: no probe, no retry
    assert hold.pause("deleted") is False  # paused already: nothing to tell the loop
    assert hold.paused_by_configuration == "deleted"

    assert hold.resume() is True
    assert hold.wait() == 0 and hold.paused_by_configuration is None
    assert hold.resume() is False


def test_a_quarantine_retry_falls_due_only_once_the_configuration_is_enabled(hold: Hold, clock: FakeClock) -> None:
    hold.quarantine.credentials_rejected("invalid credentials")
    hold.pause("disabled")
    clock.advance(61)  # past the first retry
    assert hold.wait() is None and not hold.retry_due()

    hold.resume()
    assert hold.retry_due()
