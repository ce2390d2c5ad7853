"""A caught-up consumer on the embedded broker fetches a few times a second, and still gets a new record at once.

noida-db answers an empty fetch without holding it for fetch_max_wait_ms; e2ad/fetch_pacing.py
makes aiokafka wait a short pause before the next one. Counted at the fetcher's request task, the
hook the pacing overrides, over a window in which nothing is produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.fetcher import Fetcher

from e2ad import fetch_pacing, kafka
from schemas import topics
from schemas.config import KafkaSettings

TOPIC = topics.AD_RESULTS
WINDOW_SECONDS = 3.0
# Paced, a caught-up consumer fetches once per pause: 10 a second. Unpaced it is hundreds.
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
async def caught_up(kafka_settings: KafkaSettings) -> AsyncIterator[Callable[[], AIOKafkaConsumer]]:
    """Start a consumer at the end of every partition of TOPIC; stopped after the test."""
    started: list[AIOKafkaConsumer] = []

    async def start() -> AIOKafkaConsumer:
        consumer = kafka.consumer(kafka_settings, group_id=None)
        await consumer.start()
        started.append(consumer)
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)  # resolve now: the window counts fetches only
        return consumer

    yield start  # type: ignore[misc]
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


@pytest.mark.integration
async def test_a_caught_up_consumer_fetches_a_few_times_a_second_and_gets_a_new_record_at_once(
    kafka_settings: KafkaSettings,
    caught_up: Callable[[], AIOKafkaConsumer],
    fetches: list[float],
    pacing: Callable[[float], None],
    measured: Callable[[str], None],
) -> None:
    pacing(fetch_pacing.DEFAULT_PAUSE_SECONDS)
    consumer = await caught_up()
    rate = await fetch_rate(consumer, fetches)
    measured(f"fetch pacing: a caught-up consumer made {rate:.1f} fetches/s")
    assert rate <= MAX_FETCHES_PER_SECOND

    producer = kafka.producer(kafka_settings)
    await producer.start()
    latencies = []
    try:
        for number in range(10):
            await asyncio.sleep(0.037 * number)  # at different points of the pause
            sent = await producer.send_and_wait(TOPIC, f"record {number}".encode(), partition=number % 4)
            acked = time.monotonic()
            batches = await consumer.getmany(timeout_ms=2000)
            latencies.append(time.monotonic() - acked)
            [record] = batches[TopicPartition(TOPIC, sent.partition)]
            assert record.value == f"record {number}".encode()
    finally:
        await producer.stop()
    measured(
        f"fetch pacing: a record produced to a caught-up consumer arrived after "
        f"{statistics.median(latencies) * 1000:.0f} ms (median), {max(latencies) * 1000:.0f} ms (max)"
    )
    assert max(latencies) <= MAX_LATENCY_SECONDS


@EMBEDDED_BROKER
@pytest.mark.integration
async def test_without_pacing_a_caught_up_consumer_spins_on_the_embedded_broker(
    caught_up: Callable[[], AIOKafkaConsumer],
    fetches: list[float],
    pacing: Callable[[float], None],
    measured: Callable[[str], None],
) -> None:
    # What the bound above guards against: without it the test above would fail.
    pacing(0)
    rate = await fetch_rate(await caught_up(), fetches)
    measured(f"fetch pacing off: a caught-up consumer made {rate:.0f} fetches/s")
    assert rate > 5 * MAX_FETCHES_PER_SECOND
