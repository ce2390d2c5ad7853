"""A caught-up consumer on the embedded broker fetches a few times a second, and still gets a new record at once.

noida-db answers an empty fetch without holding it for fetch_max_wait_ms; runtime/fetch_pacing.py
makes aiokafka wait a short pause before the next one. Fetches are counted at the fetcher's
request task, the hook the pacing overrides, over a window in which nothing is produced. On a
broker that holds empty fetches as Apache Kafka does (tansu here, or E2AD_TEST_KAFKA_BOOTSTRAP),
the pacing must never pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher

from runtime import fetch_pacing, kafka
from schemas import topics
from schemas.config import KafkaSettings

TOPIC = topics.AD_RESULTS
DEFAULT_FETCH_MAX_WAIT_MS = 500  # aiokafka's, which e2ad's consumers keep
WINDOW_SECONDS = 3.0
# Paced, a caught-up consumer fetches once per pause (13 a second at 75 ms). Unpaced it is hundreds.
MAX_FETCHES_PER_SECOND = 2 / fetch_pacing.DEFAULT_PAUSE_SECONDS
# A record produced during a pause waits for its end: the pause, plus room for a loaded machine.
MAX_LATENCY_SECONDS = fetch_pacing.DEFAULT_PAUSE_SECONDS + 0.25
EMBEDDED_BROKER = pytest.mark.skipif(
    bool(os.environ.get("E2AD_TEST_KAFKA_BOOTSTRAP")), reason="about the embedded broker, which does not long-poll"
)


@pytest.fixture
def fetches(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic time of every fetch request sent by any consumer of this test."""
    sent: list[float] = []
    send = Fetcher._proc_fetch_request

    async def counted(self: Fetcher, *args: object) -> bool:
        sent.append(time.monotonic())
        return await send(self, *args)

    monkeypatch.setattr(Fetcher, "_proc_fetch_request", counted)
    return sent


@pytest.fixture
def pacing(restored_pacing: None) -> Callable[[float], None]:
    """Set the pause for consumers started afterwards (0: off), as FETCH_PACING_SECONDS does for a stage."""

    def set_pause(seconds: float) -> None:
        fetch_pacing.install({fetch_pacing.PAUSE_VARIABLE: str(seconds)})

    return set_pause


@pytest_asyncio.fixture
async def caught_up() -> AsyncIterator[Callable[[KafkaSettings], Awaitable[AIOKafkaConsumer]]]:
    """Start a consumer at the end of every partition of TOPIC; stopped after the test."""
    started: list[AIOKafkaConsumer] = []

    async def start(settings: KafkaSettings) -> AIOKafkaConsumer:
        consumer = kafka.consumer(settings, group_id=None)
        await consumer.start()
        started.append(consumer)
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve now: the window counts fetches only
        return consumer

    yield start
    for consumer in started:
        await consumer.stop()


async def fetch_rate(consumer: AIOKafkaConsumer, fetches: list[float]) -> float:
    """Fetches a second while the consumer polls a topic nothing is produced to, as the stages' loops do."""

    async def poll() -> None:
        while True:
            assert not await consumer.getmany(timeout_ms=500)

    poller = asyncio.create_task(poll())
    await asyncio.sleep(0.5)  # past the first fetches after the seek
    before, started = len(fetches), time.monotonic()
    await asyncio.sleep(WINDOW_SECONDS)
    rate = (len(fetches) - before) / (time.monotonic() - started)
    poller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await poller  # raises if it got a record
    return rate


async def record_latencies(settings: KafkaSettings, consumer: AIOKafkaConsumer) -> list[float]:
    """Seconds from each of 10 produced records' ack until the caught-up consumer has it."""
    producer = kafka.producer(settings)
    await producer.start()
    latencies = []
    try:
        for number in range(10):
            await asyncio.sleep(0.037 * number)  # at different points of a pause
            sent = await producer.send_and_wait(TOPIC, f"record {number}".encode(), partition=number % 4)
            acked = time.monotonic()
            batches = await consumer.getmany(timeout_ms=2000)
            latencies.append(time.monotonic() - acked)
            [record] = batches[TopicPartition(TOPIC, sent.partition)]
            assert record.value == f"record {number}".encode()
    finally:
        await producer.stop()
    return latencies


def describe(latencies: list[float]) -> str:
    return f"{statistics.median(latencies) * 1000:.0f} ms (median), {max(latencies) * 1000:.0f} ms (max)"


@pytest.mark.integration
async def test_a_caught_up_consumer_fetches_a_few_times_a_second_and_gets_a_new_record_at_once(
    kafka_settings: KafkaSettings,
    caught_up: Callable[[KafkaSettings], Awaitable[AIOKafkaConsumer]],
    fetches: list[float],
    pacing: Callable[[float], None],
    measured: Callable[[str], None],
) -> None:
    pacing(fetch_pacing.DEFAULT_PAUSE_SECONDS)
    consumer = await caught_up(kafka_settings)
    rate = await fetch_rate(consumer, fetches)
    measured(f"fetch pacing: a caught-up consumer made {rate:.1f} fetches/s")
    assert rate <= MAX_FETCHES_PER_SECOND

    latencies = await record_latencies(kafka_settings, consumer)
    measured(f"fetch pacing: a record produced to a caught-up consumer arrived after {describe(latencies)}")
    assert max(latencies) <= MAX_LATENCY_SECONDS


@EMBEDDED_BROKER
@pytest.mark.integration
async def test_without_pacing_a_caught_up_consumer_spins_on_the_embedded_broker(
    kafka_settings: KafkaSettings,
    caught_up: Callable[[KafkaSettings], Awaitable[AIOKafkaConsumer]],
    fetches: list[float],
    pacing: Callable[[float], None],
    measured: Callable[[str], None],
) -> None:
    # What the bound above guards against: without it the test above would fail.
    pacing(0)
    rate = await fetch_rate(await caught_up(kafka_settings), fetches)
    measured(f"fetch pacing off: a caught-up consumer made {rate:.0f} fetches/s")
    assert rate > 5 * MAX_FETCHES_PER_SECOND


@pytest.mark.integration
async def test_on_a_broker_that_holds_empty_fetches_the_pacing_never_pauses(
    failover_kafka_settings: KafkaSettings,  # tansu: holds an empty fetch for fetch_max_wait_ms, as Kafka does
    caught_up: Callable[[KafkaSettings], Awaitable[AIOKafkaConsumer]],
    fetches: list[float],
    pacing: Callable[[float], None],
    monkeypatch: pytest.MonkeyPatch,
    measured: Callable[[str], None],
) -> None:
    pauses: list[float] = []
    decide = fetch_pacing.pause_after_fetch

    def recorded(**answer: Any) -> float:
        pauses.append(decide(**answer))
        return pauses[-1]

    monkeypatch.setattr(fetch_pacing, "pause_after_fetch", recorded)
    pacing(fetch_pacing.DEFAULT_PAUSE_SECONDS)
    consumer = await caught_up(failover_kafka_settings)
    rate = await fetch_rate(consumer, fetches)
    latencies = await record_latencies(failover_kafka_settings, consumer)
    measured(
        f"fetch pacing, long-polling broker: {rate:.1f} fetches/s idle, a record arrived after {describe(latencies)}"
    )
    assert len(pauses) >= 10  # every answer was decided on: the hook ran
    assert not any(pauses)
    assert rate <= 1000 / DEFAULT_FETCH_MAX_WAIT_MS * 1.2  # held for the whole wait: about 2 a second
