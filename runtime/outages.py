"""Kafka out of reach: one line naming the endpoint and its setting per backoff step, never a flood.

aiokafka logs each failed connection attempt itself, at ERROR, about every 200 ms. Those records
are folded by AiokafkaOutageFilter into one warning per backoff step. Stages wait for Kafka at
start with wait_for_kafka (SIGTERM still ends the wait at once); one-shot commands give up after
a bounded wait with KafkaUnreachable.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaConnectionError

from runtime import kafka
from schemas.config import KafkaSettings

log = logging.getLogger(__name__)

KAFKA_SETTING = "kafka.bootstrap_servers"
# One-shot commands (quarantine, reconcile) wait this long for Kafka before they fail.
ONE_SHOT_WAIT_SECONDS = 5.0
# aiokafka's loggers that report connection failures, and the messages that do.
AIOKAFKA_LOGGERS = (
    "aiokafka",  # aiokafka.client logs under this name
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
)
CONNECTION_FAILURES = frozenset(
    {
        'Unable connect to "%s:%s": %s',
        "Unable connect to node with id %s: %s",
        "Unable to update metadata from %s",
        'Unable to request metadata from "%s:%s": %s',
        "Unable to request metadata from node with id %s: %r",
        "Failed fetch messages from %s: %s",
        "Failed fetch offsets from %s: %s",
        "Group Coordinator Request failed: %s",
        "FindCoordinator Request failed: %s",
        "Heartbeat send request failed: %s. Will retry.",
        "Error sending %s to node %s [%s] -- marking coordinator dead",
        "Marking the coordinator dead (node %s)for group %s.",
        "Heartbeat session expired - marking coordinator dead",
        "LeaveGroup request failed: %s",
        "Got error produce response: %s",
    }
)

# Of those, the ones that say no connection could be made at all.
CONNECT_FAILURES = frozenset({'Unable connect to "%s:%s": %s', "Unable connect to node with id %s: %s"})

T = TypeVar("T")
# Set while e2ad probes Kafka itself: the prober reports the outage, aiokafka's records are only noted.
_probing: contextvars.ContextVar[bool] = contextvars.ContextVar("probing_kafka", default=False)


class KafkaUnreachable(Exception):
    """No broker of kafka.bootstrap_servers answered; the message names them and the setting."""


class Backoff:
    """Delays that double from `initial` up to `maximum`; reset() starts again from `initial`."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0) -> None:
        self.initial, self.maximum = initial, maximum
        self._next = initial

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class AiokafkaOutageFilter(logging.Filter):
    """Passes the first connection failure of an outage, then one per backoff step; drops the rest.

    A failure after a quiet spell longer than the current step starts a new outage, reported at once.
    The passed record becomes a warning that names the endpoint and kafka.bootstrap_servers.
    """

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._backoff = backoff or Backoff(initial=2.0, maximum=60.0)
        self._clock = clock
        self._next_report = float("-inf")
        self._last_failure = float("-inf")
        self._last_connect_failure = float("-inf")
        self._step = 0.0
        self.last_error: str | None = None  # what aiokafka said last, for wait_for_kafka's line
        self.servers = "?"  # kafka.bootstrap_servers of this process, set by its first probe

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in CONNECTION_FAILURES:
            return True
        # The error alone when aiokafka gives it last ('Unable connect to "%s:%s": %s'): the caller names the servers.
        args = record.args if isinstance(record.args, tuple) else ()
        self.last_error = str(args[-1]) if args else record.getMessage()
        if _probing.get():
            return False
        now = self._clock()
        if record.msg in CONNECT_FAILURES:
            self._last_connect_failure = now
        if now - self._last_failure > max(self._step, 1.0):  # a new outage
            self._backoff.reset()
            self._next_report = now
        self._last_failure = now
        if now < self._next_report:
            return False
        self._step = self._backoff.next()
        self._next_report = now + self._step
        record.msg = "Kafka at %s unreachable (%s): %s; aiokafka keeps retrying, next report in %s s"
        record.args = (self.servers, KAFKA_SETTING, self.last_error, _seconds(self._step))
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

    def failing_within(self, seconds: float) -> bool:
        """Whether aiokafka could not connect to a broker in the last `seconds`: Kafka is out of reach."""
        return self._clock() - self._last_connect_failure <= seconds


OUTAGE_FILTER = AiokafkaOutageFilter()
# A stage is not ready while aiokafka failed to connect this recently (it retries about every 200 ms).
READY_AFTER_FAILURE_SECONDS = 5.0


def kafka_not_reachable() -> str | None:
    """A readiness check (runtime/web.py): why Kafka counts as out of reach, None when it does not."""
    if not OUTAGE_FILTER.failing_within(READY_AFTER_FAILURE_SECONDS):
        return None
    return f"Kafka unreachable: {OUTAGE_FILTER.last_error or 'no broker answered'} ({KAFKA_SETTING})"


def tame_aiokafka() -> None:
    """Install the outage filter on aiokafka's loggers (idempotent; a logger's filters outlive handlers)."""
    for name in AIOKAFKA_LOGGERS:
        logger = logging.getLogger(name)
        if OUTAGE_FILTER not in logger.filters:
            logger.addFilter(OUTAGE_FILTER)


def unreachable(settings: KafkaSettings, reason: str) -> str:
    return f"Kafka at {settings.bootstrap_servers} unreachable ({KAFKA_SETTING}): {reason}"


async def kafka_topics(settings: KafkaSettings) -> dict[str, int]:
    """Each topic the brokers know, with its partition count; KafkaUnreachable when none answers."""
    tame_aiokafka()  # also for commands that configure no logging: nothing of aiokafka's reaches stderr
    OUTAGE_FILTER.servers = settings.bootstrap_servers
    client = kafka.consumer(settings, group_id=None)
    probing = _probing.set(True)
    try:
        await client.start()
        return {topic: len(client.partitions_for_topic(topic) or ()) for topic in await client.topics()}
    except KafkaConnectionError:
        # aiokafka only logs why TLS failed; kafka.tls_problem names the certificate or the listener.
        reason = await kafka.tls_problem(settings) or OUTAGE_FILTER.last_error or "no broker answered"
        raise KafkaUnreachable(unreachable(settings, reason)) from None
    finally:
        await client.stop()
        _probing.reset(probing)


async def wait_for_kafka(settings: KafkaSettings, stop: asyncio.Event, backoff: Backoff | None = None) -> bool:
    """True once Kafka answers; False when `stop` is set first. One warning per backoff step meanwhile."""
    backoff = backoff or Backoff()
    while not stop.is_set():
        try:
            await until_stopped(kafka_topics(settings), stop)
        except KafkaUnreachable as exc:
            delay = backoff.next()
            log.warning("%s; retrying in %s s", exc, _seconds(delay))
            await stopped_within(stop, delay)
        except Stopped:
            break
        else:
            return True
    return False


async def one_shot(
    settings: KafkaSettings, command: Callable[[], Awaitable[T]], timeout: float = ONE_SHOT_WAIT_SECONDS
) -> T:
    """Run a one-shot command's Kafka work once Kafka answers; KafkaUnreachable after `timeout` without it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    backoff = Backoff(initial=0.5, maximum=2.0)
    while True:
        try:
            await kafka_topics(settings)
            break
        except KafkaUnreachable:
            delay = min(backoff.next(), deadline - loop.time())
            if delay <= 0:
                raise
            await asyncio.sleep(delay)
    try:
        return await command()
    except KafkaConnectionError:  # gone between the probe and the command
        raise KafkaUnreachable(unreachable(settings, OUTAGE_FILTER.last_error or "no broker answered")) from None


class Stopped(Exception):
    """`stop` was set while waiting for Kafka."""


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T:
    """`work`'s result, or Stopped (`work` cancelled) as soon as `stop` is set."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Stopped
    return task.result()


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`, waking when `stop` is set; whether it was."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _seconds(value: float) -> str:
    return f"{value:g}"
