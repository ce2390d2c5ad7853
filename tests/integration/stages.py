"""Helpers for integration tests: run e2ad stages as real processes, publish and await records."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import BaseModel

from harness.pipeline import command_environment, operator_environment
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings, Settings
from tests.polling import until

T = TypeVar("T")


@contextlib.contextmanager
def running_stage(stage: str, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`e2ad <stage>` as a child process with the given E2AD_… settings; SIGTERM on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "e2ad", stage],
            env=command_environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            yield process
        finally:
            stop_stage(process)


async def run_e2ad(env: dict[str, str], *args: str, expect: int = 0) -> str:
    """An e2ad command as an operator runs it, with these E2AD_… settings; its standard output (and error)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "e2ad", *args,
        env=command_environment(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == expect, f"e2ad {' '.join(args)} exited {process.returncode}: {stderr.decode()}"
    return stdout.decode() + stderr.decode() if expect else stdout.decode()


async def e2ad(settings: Settings, *args: str) -> str:
    """An e2ad command as an operator runs it next to a pipeline with these settings; its standard output."""
    return await run_e2ad(operator_environment(settings), *args)


def stop_stage(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Signal a child process and reap it; SIGKILL if it is not gone within 20 s."""
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
        self.topic = topic
        self.seen: list[T] = []

    async def __aenter__(self) -> TopicWatcher:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def wait_for(self, condition: Callable[[T], bool], timeout: float = 30.0) -> T:
        """The first record, seen before or read now, that meets the condition (asked once a record)."""
        checked = 0

        async def met() -> list[T]:
            nonlocal checked
            for record in self.seen[checked:]:
                checked += 1
                if condition(record):
                    return [record]
            read = await self._read(0.2)
            for index, record in enumerate(read):
                self.seen.append(record)
                checked += 1
                if condition(record):
                    self.seen.extend(read[index + 1 :])
                    return [record]
            return []

        [record] = await until(met, f"a record on {self.topic} that meets the condition", timeout=timeout, interval=0)
        return record

    async def collect(self, seconds: float) -> list[T]:
        """Read what arrives within `seconds` (or sooner) into `seen`; the records read."""
        read = await self._read(seconds)
        self.seen.extend(read)
        return read

    async def read_to_end(self, timeout: float = 60.0) -> None:
        """Read into `seen` every record the topic holds now: up to each partition's end at the call."""
        partitions = [
            TopicPartition(self.topic, p) for p in sorted(self._consumer.partitions_for_topic(self.topic) or ())
        ]
        assert partitions, f"no partitions known for {self.topic}"
        end = await self._consumer.end_offsets(partitions)

        async def at_end() -> bool:
            assigned = self._consumer.assignment()
            if all(tp in assigned for tp in partitions) and all(
                [await self._consumer.position(tp) >= end[tp] for tp in partitions]
            ):
                return True
            self.seen.extend(await self._read(0.2))
            return False

        await until(at_end, f"every record on {self.topic} up to {end}", timeout=timeout, interval=0)

    async def _read(self, seconds: float) -> list[T]:
        batches = await self._consumer.getmany(timeout_ms=int(seconds * 1000))
        return [self._parse(message.value) for messages in batches.values() for message in messages]


class FlakyDc:
    """A TCP proxy in front of the DC that can fail like the DC: refuse new connections, cut open ones."""

    def __init__(self, url: str) -> None:
        host_port = url.split("://", 1)[1]
        self.target_host, _, port = host_port.partition(":")
        self.target_port = int(port or 636)
        self.up = True
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FlakyDc:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, family=socket.AF_INET)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self.stop()
        self._server.close()

    def stop(self) -> None:
        self.up = False
        for writer in self._open:
            writer.transport.abort()

    def start(self) -> None:
        self.up = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._open -= {writer, up_writer}
