"""Helpers for integration tests: run e2ad stages as real processes, publish and await records."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel

from e2ad import kafka
from schemas import topics
from schemas.config import KafkaSettings

T = TypeVar("T")


@contextlib.contextmanager
def running_stage(stage: str, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`e2ad <stage>` as a child process with the given E2AD_… settings; SIGTERM on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "e2ad", stage],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            stop_stage(process)


def stop_stage(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def publish(settings: KafkaSettings, topic: str, records: list[tuple[str, BaseModel]]) -> None:
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for key, record in records:
            await producer.send_and_wait(topic, topics.encode(record), key=topics.key(key))
    finally:
        await producer.stop()


class TopicWatcher:
    """Reads a topic from the beginning and waits for records matching a condition."""

    def __init__(self, settings: KafkaSettings, topic: str, parse: Callable[[bytes], T]) -> None:
        self._consumer: AIOKafkaConsumer = kafka.consumer(settings, topic, group_id=None)
        self._parse = parse
        self.seen: list[T] = []

    async def __aenter__(self) -> TopicWatcher:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def wait_for(self, condition: Callable[[T], bool], timeout: float = 30.0) -> T:
        for record in self.seen:
            if condition(record):
                return record
        async with asyncio.timeout(timeout):
            while True:
                batches = await self._consumer.getmany(timeout_ms=200)
                for messages in batches.values():
                    for message in messages:
                        record = self._parse(message.value)
                        self.seen.append(record)
                        if condition(record):
                            return record
