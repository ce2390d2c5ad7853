"""Following e2ad.config, the part without a broker: which records change the active configuration."""

from __future__ import annotations

import logging

import pytest

from runtime.active_config import ActiveConfigFollower
from schemas import topics
from schemas.config import KafkaSettings
from tests.active import active_configuration


@pytest.fixture
def follower() -> ActiveConfigFollower:
    return ActiveConfigFollower(KafkaSettings())  # take() needs no broker: the consumer is made by start()


def test_each_new_configuration_becomes_the_active_one_and_a_repeat_changes_nothing(
    follower: ActiveConfigFollower,
) -> None:
    first, second = active_configuration(1), active_configuration(2, "disabled")

    assert follower.take(topics.encode(first)) and follower.current == first
    assert follower.take(topics.encode(second)) and follower.current == second
    assert not follower.take(topics.encode(second))  # a producer's retry, or the same record read again
    assert follower.current == second


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "Invalid JSON"),
        (b'{"version": 3, "state": "paused"}', "state"),  # a state this version does not know
        (None, "tombstone"),
    ],
)
def test_an_unreadable_record_is_logged_with_its_reason_and_the_previous_configuration_stays(
    follower: ActiveConfigFollower, caplog: pytest.LogCaptureFixture, value: bytes | None, reason: str
) -> None:
    previous = active_configuration(2)
    follower.take(topics.encode(previous))
    caplog.set_level(logging.WARNING, logger="runtime.active_config")

    assert not follower.take(value, "e2ad.config@7")

    assert follower.current == previous
    assert "e2ad.config@7" in caplog.text and reason in caplog.text
    assert "version 2 (enabled) stays in effect" in caplog.text


def test_an_unreadable_first_record_leaves_no_configuration(
    follower: ActiveConfigFollower, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.active_config")

    assert not follower.take(b"[]")

    assert follower.current is None
    assert "no active configuration yet" in caplog.text
