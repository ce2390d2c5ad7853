"""Kafka out of reach, without a broker: aiokafka's records folded per backoff step, stop-aware waits."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from harness.services import free_port
from runtime.outages import AiokafkaOutageFilter, Backoff, KafkaUnreachable, one_shot, wait_for_kafka
from schemas.config import KafkaSettings
from tests.polling import until


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def refused(port: int = 9) -> logging.LogRecord:
    """The record aiokafka's client logs for each refused bootstrap attempt."""
    error = ConnectionRefusedError(111, f"Connect call failed ('127.0.0.1', {port})")
    return logging.LogRecord(
        "aiokafka", logging.ERROR, "client.py", 216, 'Unable connect to "%s:%s": %s', ("127.0.0.1", port, error), None
    )


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(initial=1, maximum=5)
    assert [backoff.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    backoff.reset()
    assert backoff.next() == 1


def test_an_outage_is_one_warning_per_backoff_step_naming_the_servers_and_the_setting() -> None:
    clock = Clock()
    folding = AiokafkaOutageFilter(Backoff(initial=2, maximum=8), clock=clock)
    folding.servers = "127.0.0.1:9"
    passed = []
    for _ in range(100):  # 20 s of aiokafka's attempts, one every 200 ms
        record = refused()
        if folding.filter(record):
            passed.append((clock.now, record))
        clock.now += 0.2
    # At once, then after 2, 4 and 8 s (the step is capped at 8 s).
    assert [round(at - 100, 1) for at, _ in passed] == [0, 2, 6, 14]
    first = passed[0][1]
    assert first.levelname == "WARNING"
    assert first.getMessage() == (
        "Kafka at 127.0.0.1:9 unreachable (kafka.bootstrap_servers): [Errno 111] Connect call failed"
        " ('127.0.0.1', 9); aiokafka keeps retrying, next report in 2 s"
    )


def test_a_new_outage_after_a_quiet_spell_is_reported_at_once() -> None:
    clock = Clock()
    folding = AiokafkaOutageFilter(Backoff(initial=2, maximum=8), clock=clock)
    for _ in range(20):  # 4 s of failures: the step grew to 4 s
        folding.filter(refused())
        clock.now += 0.2
    clock.now += 30  # Kafka was back meanwhile
    again = refused()
    assert folding.filter(again)
    assert again.getMessage().endswith("next report in 2 s")  # the backoff starts over


def test_other_aiokafka_records_pass_untouched() -> None:
    folding = AiokafkaOutageFilter(clock=Clock())
    record = logging.LogRecord(
        "aiokafka.consumer.consumer", logging.WARNING, "c.py", 1, "Topic %s not found", ("x",), None
    )
    assert folding.filter(record) and record.getMessage() == "Topic x not found"


async def test_waiting_for_kafka_ends_at_once_when_stopped(caplog: pytest.LogCaptureFixture) -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="runtime.outages")
    waiting = asyncio.create_task(wait_for_kafka(settings, stop, Backoff(initial=10, maximum=10)))
    await until(lambda: caplog.records, "the first attempt to fail and the wait of 10 s to begin")
    began = time.monotonic()
    stop.set()
    assert await waiting is False
    assert time.monotonic() - began < 0.5
    assert [r.getMessage() for r in caplog.records] == [
        f"Kafka at {settings.bootstrap_servers} unreachable (kafka.bootstrap_servers): [Errno 111] Connect call"
        f" failed ('127.0.0.1', {settings.bootstrap_servers.split(':')[1]}); retrying in 10 s"
    ]


async def test_a_one_shot_command_gives_up_after_its_wait_without_running() -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    ran = []

    async def command() -> None:
        ran.append(True)

    began = time.monotonic()
    with pytest.raises(KafkaUnreachable, match=r"unreachable \(kafka.bootstrap_servers\)"):
        await one_shot(settings, command, timeout=1.0)
    assert 1.0 <= time.monotonic() - began < 3 and ran == []


def test_only_a_failed_connect_counts_as_kafka_out_of_reach() -> None:
    clock = Clock()
    folding = AiokafkaOutageFilter(clock=clock)
    leave = logging.LogRecord(
        "aiokafka.consumer.group_coordinator", logging.ERROR, "g.py", 1, "LeaveGroup request failed: %s", ("x",), None
    )
    folding.filter(leave)  # the broker answered, with an error
    assert not folding.failing_within(5)
    folding.filter(refused())
    clock.now += 4
    assert folding.failing_within(5) and not folding.failing_within(3)
