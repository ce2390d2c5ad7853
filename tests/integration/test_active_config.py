"""ActiveConfigFollower against the real broker: e2ad.config read to its end at start, then followed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from runtime import kafka
from runtime.active_config import ActiveConfigFollower
from schemas import topics
from schemas.active import ACTIVE_KEY
from schemas.config import KafkaSettings
from tests.active import active_configuration
from tests.integration.stages import publish
from tests.polling import until


async def send_raw(kafka_settings: KafkaSettings, value: bytes) -> None:
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(topics.CONFIG, value, key=ACTIVE_KEY)
    finally:
        await producer.stop()


async def test_start_reads_to_the_end_and_then_each_newer_configuration_arrives_in_order(
    kafka_settings: KafkaSettings,
) -> None:
    empty = ActiveConfigFollower(kafka_settings)
    try:
        assert await empty.start() is None  # nothing published yet
    finally:
        await empty.stop()
    await publish(
        kafka_settings, topics.CONFIG, [("active", active_configuration(1)), ("active", active_configuration(2))]
    )

    follower = ActiveConfigFollower(kafka_settings)
    try:
        assert await follower.start() == active_configuration(2)
        assert await follower.changes() == []  # read at start, not handed over again

        deleted, enabled = active_configuration(3, "deleted"), active_configuration(4)
        await publish(kafka_settings, topics.CONFIG, [("active", deleted), ("active", enabled)])
        seen: list[object] = []

        async def both_arrived() -> bool:
            seen.extend(await follower.changes())
            return len(seen) >= 2

        await until(both_arrived, "both configurations", timeout=10)
        assert seen == [deleted, enabled]  # the delete too, though the enable followed at once
        assert follower.current == enabled
    finally:
        await follower.stop()


async def test_an_unreadable_record_is_ignored_and_the_next_readable_one_is_taken(
    kafka_settings: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    await publish(kafka_settings, topics.CONFIG, [("active", active_configuration(1))])
    await send_raw(kafka_settings, b'{"version": 2, "state": "enabled"}')  # written by a newer e2ad, say
    caplog.set_level(logging.WARNING, logger="runtime.active_config")

    follower = ActiveConfigFollower(kafka_settings)
    try:
        assert await follower.start() == active_configuration(1)
        assert "e2ad.config@1" in caplog.text and "changed_at" in caplog.text

        await send_raw(kafka_settings, b"not json")
        await publish(kafka_settings, topics.CONFIG, [("active", active_configuration(3, "disabled"))])
        seen: list[object] = []

        async def taken() -> bool:
            seen.extend(await follower.changes())
            return bool(seen)

        await until(taken, "the readable configuration after the unreadable one", timeout=10)
        assert seen == [active_configuration(3, "disabled")]
        assert "e2ad.config@2" in caplog.text and "version 1 (enabled) stays in effect" in caplog.text
    finally:
        await follower.stop()


async def test_a_caught_up_follower_does_not_spin(kafka_settings: KafkaSettings) -> None:
    """The embedded broker answers an empty fetch at once: fetch pacing keeps an idle follower cheap."""
    follower = ActiveConfigFollower(kafka_settings)
    await follower.start()
    try:
        assert follower._consumer is not None
        fetcher = follower._consumer._fetcher
        counted = {"fetches": 0}
        original = fetcher._proc_fetch_request

        async def counting(*args: object, **kwargs: object) -> bool:
            counted["fetches"] += 1
            return await original(*args, **kwargs)

        fetcher._proc_fetch_request = counting
        await asyncio.sleep(0.2)  # the request in flight when counting began ends
        counted["fetches"] = 0
        await asyncio.sleep(1.0)
        assert await follower.changes() == []
    finally:
        await follower.stop()

    assert counted["fetches"] <= 20  # paced at 75 ms: about 13 a second; unpaced, hundreds
