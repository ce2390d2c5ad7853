"""What every operator command of the command line shares: sending a ControlCommand, one-shot Kafka use."""

from __future__ import annotations

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from runtime import kafka
from runtime.outages import KafkaUnreachable, one_shot
from schemas import topics
from schemas.config import KafkaSettings
from schemas.control import ControlCommand

T = TypeVar("T")


def issued_by() -> str:
    """Who issues a command, as the stages log it: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def run_once(settings: KafkaSettings, command: Callable[[], Awaitable[T]]) -> T:
    """The command's result; Kafka unreachable for a few seconds is one clear line and exit 1."""
    try:
        return asyncio.run(one_shot(settings, command))
    except KafkaUnreachable as exc:
        raise click.ClickException(str(exc)) from None


async def send(settings: KafkaSettings, command: ControlCommand) -> int:
    """Put the command on e2ad.control, acknowledged by the broker; its offset there."""
    await kafka.ensure_topics(settings)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topics.CONTROL, topics.encode(command))
    finally:
        await producer.stop()
    return sent.offset
