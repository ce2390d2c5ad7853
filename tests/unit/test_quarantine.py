"""The writer's quarantine state machine: Entra's triggers, thresholds and retry schedule (§4.2)."""

from __future__ import annotations

import datetime as dt

import pytest

from schemas.config import WriterSettings
from tests.clock import FakeClock
from writers.quarantine import CREDENTIALS, ESCROW, Outcome, Quarantine, QuarantinePolicy, outcome_of

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def quarantine(clock: FakeClock) -> Quarantine:
    return Quarantine(QuarantinePolicy(), clock)


def decide(quarantine: Quarantine, outcome: Outcome, count: int, *, prefix: str = "g") -> list[bool]:
    return [quarantine.record(f"{prefix}{i}", outcome) for i in range(count)]


def test_rejected_credentials_quarantine_at_once(quarantine: Quarantine) -> None:
    assert quarantine.credentials_rejected("invalid credentials for CN=svc") is True
    assert (quarantine.state, quarantine.reason, quarantine.since) == ("quarantined", CREDENTIALS, START)
    assert quarantine.detail == "invalid credentials for CN=svc"
    assert not quarantine.writing
    assert quarantine.credentials_rejected("again") is False  # already, for that reason


def test_proportion_is_evaluated_only_from_5000_failing_groups(quarantine: Quarantine) -> None:
    # 4,999 of 4,999 failing is 100 %, but evaluation has not started.
    assert not any(decide(quarantine, "failed", 4_999))
    assert quarantine.writing
    assert quarantine.record("g4999", "failed") is True
    assert (quarantine.state, quarantine.reason) == ("quarantined", ESCROW)
    assert quarantine.detail == "5000 of 5000 groups fail (100%), more than 40%"


def test_proportion_below_40_percent_keeps_writing(quarantine: Quarantine) -> None:
    decide(quarantine, "ok", 7_500, prefix="ok")
    assert not any(decide(quarantine, "failed", 5_000))  # 5,000 of 12,500 = 40 %: not more than 40 %
    assert quarantine.writing and (quarantine.failing, quarantine.decided) == (5_000, 12_500)
    assert quarantine.record("one-more", "failed") is True  # 5,001 of 12,501 > 40 %


def test_more_than_40000_failures_quarantine_whatever_the_proportion(clock: FakeClock) -> None:
    quarantine = Quarantine(QuarantinePolicy(evaluation_start=10, failure_limit=40), clock)  # same rule, smaller
    decide(quarantine, "ok", 10_000, prefix="ok")  # 41 of 10,041 is far below 40 %
    assert not any(decide(quarantine, "failed", 40))
    assert quarantine.record("g40", "failed") is True
    assert quarantine.detail == "41 groups fail, more than 40"


def test_reference_failures_count_only_towards_the_absolute_limit(clock: FakeClock) -> None:
    quarantine = Quarantine(QuarantinePolicy(evaluation_start=5, absolute_limit=20), clock)
    # Unresolved members never make the proportion: 100 % of groups with them is fine ...
    assert not any(decide(quarantine, "reference-failed", 16, prefix="r"))
    assert not any(decide(quarantine, "ok", 100, prefix="ok"))
    assert not any(decide(quarantine, "failed", 4))
    # ... until, with the failures, they exceed the absolute limit.
    assert quarantine.record("g4", "failed") is True
    assert quarantine.detail == "21 groups fail, counting unresolved members, more than 20"


def test_a_group_counts_once_and_stops_counting_when_it_recovers(clock: FakeClock) -> None:
    quarantine = Quarantine(QuarantinePolicy(evaluation_start=3), clock)
    for _ in range(10):
        quarantine.record("same", "failed")
    quarantine.record("other", "failed")
    assert (quarantine.failing, quarantine.decided) == (2, 2)
    quarantine.record("same", "ok")
    assert (quarantine.failing, quarantine.decided) == (1, 2)
    assert quarantine.writing


def test_retries_follow_the_schedule_then_daily_and_give_up_after_28_days(
    quarantine: Quarantine, clock: FakeClock
) -> None:
    quarantine.credentials_rejected("invalid credentials")
    due = []
    while quarantine.state == "quarantined":
        assert quarantine.next_retry is not None
        clock.now = quarantine.next_retry - dt.timedelta(seconds=1)
        assert not quarantine.retry_due() and not quarantine.expire()
        clock.now = quarantine.next_retry
        if quarantine.expire():
            break
        assert quarantine.retry_due()
        due.append(clock.now - START)
        quarantine.start_retry()
        assert quarantine.credentials_rejected("invalid credentials") is False  # the retry failed
    assert due[:4] == [6 * HOUR, 12 * HOUR, DAY, 2 * DAY]
    assert due[-1] == 27 * DAY and len(due) == 3 + 26
    assert quarantine.retries == len(due)
    assert (quarantine.state, clock.now - START) == ("disabled", 28 * DAY)
    assert quarantine.next_retry is None and not quarantine.retry_due()
    assert "no success in 28 days" in (quarantine.detail or "")


def test_a_late_retry_skips_the_slots_it_missed(quarantine: Quarantine, clock: FakeClock) -> None:
    quarantine.credentials_rejected("invalid credentials")
    clock.now = START + 30 * HOUR  # asleep through the 6 h, 12 h and 24 h slots
    assert quarantine.retry_due()
    quarantine.start_retry()
    assert quarantine.next_retry == START + 2 * DAY and quarantine.retries == 1


def test_the_first_success_leaves_quarantine_with_fresh_counts(quarantine: Quarantine, clock: FakeClock) -> None:
    decide(quarantine, "failed", 5_000)
    assert quarantine.state == "quarantined"
    clock.now = START + 6 * HOUR
    quarantine.start_retry()
    assert quarantine.record("retried-and-failed", "failed") is False
    assert quarantine.record("retried-and-worked", "reference-failed") is True  # AD took it
    assert (quarantine.state, quarantine.reason, quarantine.since, quarantine.retries) == ("running", None, None, 0)
    assert (quarantine.decided, quarantine.failing) == (0, 0)


def test_clear_leaves_quarantine_and_the_disabled_state(quarantine: Quarantine, clock: FakeClock) -> None:
    assert quarantine.clear() is False  # nothing to clear
    quarantine.credentials_rejected("invalid credentials")
    assert quarantine.clear() is True and quarantine.writing
    quarantine.credentials_rejected("invalid credentials")
    clock.now += 28 * DAY
    assert quarantine.expire() and quarantine.state == "disabled"
    assert quarantine.clear() is True and quarantine.state == "running"


def test_restart_clears_the_escrows_also_of_a_writer_that_is_not_quarantined(quarantine: Quarantine) -> None:
    decide(quarantine, "failed", 4000)
    assert quarantine.writing and quarantine.failing == 4000
    assert quarantine.restart() is False  # it was writing, but its failure counts start afresh
    assert quarantine.failing == 0 and quarantine.decided == 0
    assert decide(quarantine, "failed", 4999)[-1] is False  # 4,000 more would have quarantined it before
    quarantine.credentials_rejected("invalid credentials")
    assert quarantine.restart() is True and quarantine.writing


def test_rejected_credentials_replace_an_escrow_reason(quarantine: Quarantine) -> None:
    decide(quarantine, "failed", 5_000)
    assert quarantine.credentials_rejected("invalid credentials") is True
    assert (quarantine.state, quarantine.reason, quarantine.since) == ("quarantined", CREDENTIALS, START)


def test_the_policy_comes_from_settings_in_seconds() -> None:
    settings = WriterSettings(
        quarantine_retry_seconds="[1, 2]",  # type: ignore[arg-type]  # as E2AD_WRITER__… gives it
        quarantine_retry_every_seconds=3,
        quarantine_give_up_seconds=10,
        quarantine_evaluation_start=2,
    )
    policy = QuarantinePolicy.from_settings(settings)
    assert [policy.retry_offset(slot).total_seconds() for slot in range(6)] == [1, 2, 5, 8, 10, 10]
    assert policy.evaluation_start == 2 and policy.failure_ratio == 0.4
    with pytest.raises(ValueError, match="ascending"):
        WriterSettings(quarantine_retry_seconds=[2, 1])


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("success", "ok"), ("skipped", "ok"), ("warning", "reference-failed"), ("failure", "failed")],
)
def test_results_count_by_status(status: str, outcome: str) -> None:
    assert outcome_of(status) == outcome  # type: ignore[arg-type]
