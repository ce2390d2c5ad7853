"""The fetch pacing's decision: pause only after an empty answer a broker did not hold."""

from __future__ import annotations

import aiokafka.consumer.consumer
import pytest
from aiokafka.consumer.fetcher import Fetcher

from runtime import fetch_pacing
from runtime.fetch_pacing import PacedFetcher, pause_after_fetch

PAUSE = 0.1
KAFKA_DEFAULT_WAIT = 0.5  # aiokafka's fetch_max_wait_ms
FAUST_WAIT = 1.5  # faust's worker consumers


@pytest.mark.parametrize("max_wait", [KAFKA_DEFAULT_WAIT, FAUST_WAIT])
def test_an_empty_answer_at_once_is_followed_by_the_pause(max_wait: float) -> None:
    assert pause_after_fetch(had_records=False, elapsed=0.0004, max_wait=max_wait, pause=PAUSE) == PAUSE


@pytest.mark.parametrize("elapsed", [0.0004, 0.2, 0.6])
def test_an_answer_with_records_is_never_followed_by_a_pause(elapsed: float) -> None:
    assert pause_after_fetch(had_records=True, elapsed=elapsed, max_wait=KAFKA_DEFAULT_WAIT, pause=PAUSE) == 0.0


@pytest.mark.parametrize("elapsed", [0.25, 0.5, 0.503, 2.0])
def test_an_empty_answer_the_broker_held_is_not_paced(elapsed: float) -> None:
    # Apache Kafka holds an empty fetch for the whole wait: nothing changes for its consumers.
    assert pause_after_fetch(had_records=False, elapsed=elapsed, max_wait=KAFKA_DEFAULT_WAIT, pause=PAUSE) == 0.0


def test_the_pause_never_takes_a_fetch_past_the_asked_wait() -> None:
    assert pause_after_fetch(had_records=False, elapsed=0.01, max_wait=0.05, pause=PAUSE) == pytest.approx(0.04)
    assert pause_after_fetch(had_records=False, elapsed=0.2, max_wait=KAFKA_DEFAULT_WAIT, pause=0.4) == pytest.approx(
        0.3
    )


def test_a_consumer_that_asks_for_no_wait_is_not_paced() -> None:
    assert pause_after_fetch(had_records=False, elapsed=0.0004, max_wait=0.0, pause=PAUSE) == 0.0


@pytest.mark.usefixtures("restored_pacing")
def test_install_makes_every_consumer_build_a_paced_fetcher() -> None:
    fetch_pacing.install({})
    assert aiokafka.consumer.consumer.Fetcher is PacedFetcher
    assert PacedFetcher.pause == fetch_pacing.DEFAULT_PAUSE_SECONDS
    fetch_pacing.install({fetch_pacing.PAUSE_VARIABLE: "0.25"})
    assert PacedFetcher.pause == 0.25


@pytest.mark.usefixtures("restored_pacing")
def test_a_pause_of_zero_turns_pacing_off() -> None:
    fetch_pacing.install({fetch_pacing.PAUSE_VARIABLE: "0"})
    assert aiokafka.consumer.consumer.Fetcher is Fetcher


def test_a_pause_that_is_not_a_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match=fetch_pacing.PAUSE_VARIABLE):
        fetch_pacing.install({fetch_pacing.PAUSE_VARIABLE: "off"})


def test_the_hook_is_a_method_aiokafka_has() -> None:
    # The subclass overrides a private method; if aiokafka renamed it, the override would do nothing.
    assert "_proc_fetch_request" in vars(Fetcher)
