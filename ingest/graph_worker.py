"""The Graph worker: owns every Graph read, on its own event loop and thread (design principle 1).

Webhook notifications on graph.notifications are hints: a change notification brings the next
delta round forward (debounced), reauthorizationRequired makes the keeper reauthorize first. A
round also runs at start and every delta_interval_seconds. Hint offsets are committed only after
the round they triggered succeeded, so a crash replays the hints rather than losing a round.
A restart on e2ad.control (ingest/control.py) clears the delta cursors and runs a full round at once.

The worker follows e2ad.config (docs/architecture.md, How the stages follow e2ad.config): the
groups' $select adds the attributes the active configuration references, and a change of that
set brings a full groups round forward. While the configuration is deleted no round runs and the
cursors are cleared, so the first round after it is a full one for the processors, who forgot
their state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from kiota_abstractions.api_error import APIError
from pydantic import ValidationError

from ingest.control import ControlReader
from ingest.delta import DeltaReader, group_select
from ingest.graph_client import build_credential, build_graph_client, close_graph_client, describe_graph_error
from ingest.graph_transport import GraphTransport
from ingest.metrics import (
    DELTA_INTERVAL,
    DELTA_ROUND_AGE,
    DELTA_ROUND_SECONDS,
    RECORDS,
    SUBSCRIPTION_EXPIRY,
    RoundClock,
)
from ingest.subscriptions import SubscriptionKeeper
from runtime import kafka
from runtime.active_config import ActiveConfigFollower, file_differs
from runtime.kafka import leave_and_stop, stop_quietly
from runtime.metrics import CHANGE_LATENCY, seconds_since
from runtime.outages import Stopped, unreachable, until_stopped
from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.config import Settings
from schemas.notifications import LifecycleEventType, NotificationBatch
from schemas.status import IngestStatus, SubscriptionStatus

log = logging.getLogger(__name__)

CONSUMER_GROUP = "e2ad-graph-worker"
POLL_SECONDS = 0.5  # how often the loop looks at the stop event while idle
FAILURE_RETRY_SECONDS = 30.0  # a failed round is retried after this, or after the interval if shorter


@dataclass
class _Due:
    """When the next delta round runs (loop time), and what it has to do first."""

    at: float
    reauthorize: set[str] = field(default_factory=set)  # subscription ids asking for reauthorization
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # hint offsets to commit after the round
    hinted_at: dt.datetime | None = None  # when the webhook received the earliest notification it serves


class GraphWorker:
    def __init__(self, settings: Settings, *, credential: AsyncTokenCredential | None = None) -> None:
        self._settings = settings
        self._credential = credential  # tests inject one; otherwise built from settings.graph
        # One trust and proxy decision for token and Graph, made here: a bad graph.ca_bundle or proxy
        # variable stops start-up instead of the worker's thread.
        self._transport = GraphTransport.from_settings(settings.graph)
        self.completed_rounds = 0
        self.failed_rounds = 0
        self.last_round_failed = False
        self._round_clock = RoundClock()
        DELTA_ROUND_AGE.set_function(self._round_clock.age)
        DELTA_INTERVAL.set(settings.graph.delta_interval_seconds)
        self.deleted = False  # the active configuration is deleted: rounds pause
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._loop_ready = threading.Event()
        self.failure: KafkaConnectionError | None = None  # Kafka lost while the worker started

    async def run(self, stop: asyncio.Event) -> None:
        """Consume hints and run delta rounds until stop is set."""
        graph = self._settings.graph
        credential = self._credential or build_credential(graph, self._transport)
        client = build_graph_client(credential, graph, transport=self._transport)
        keeper = None
        if self._settings.webhook.public_url is not None:
            keeper = SubscriptionKeeper(client, self._settings.webhook)
        else:
            log.info(
                "webhook.public_url is not set: no Graph subscriptions, e2ad runs on delta rounds alone (every %.0f s)",
                graph.delta_interval_seconds,
            )
        reader = DeltaReader(client, self._settings.kafka, page_size=graph.page_size)
        hints = kafka.group_member(self._settings.kafka, topics.GRAPH_NOTIFICATIONS, group_id=CONSUMER_GROUP)
        control = ControlReader(self._settings.kafka)
        configuration = ActiveConfigFollower(self._settings.kafka)
        try:
            # A group consumer's start waits for the coordinator as long as Kafka is gone: stop ends it.
            await until_stopped(reader.start(), stop)
            await until_stopped(hints.start(), stop)
            await until_stopped(control.start(), stop)
            active = await until_stopped(configuration.start(), stop)
            if differs := file_differs("ingest", self._settings.job, active):
                log.warning(differs)
            self._follow(reader, active)
            await self._serve(stop, reader, keeper, hints, control, configuration)
        except Stopped:
            pass
        finally:
            # With Kafka gone aiokafka's stops fail or are cancelled inside: each is bounded and quiet.
            await configuration.stop()
            await control.stop()
            await leave_and_stop(hints)
            await stop_quietly(reader)
            await close_graph_client(client)
            if self._credential is None:
                await credential.close()

    async def _serve(
        self,
        stop: asyncio.Event,
        reader: DeltaReader,
        keeper: SubscriptionKeeper | None,
        hints: AIOKafkaConsumer,
        control: ControlReader,
        configuration: ActiveConfigFollower,
    ) -> None:
        loop = asyncio.get_running_loop()
        graph = self._settings.graph
        due = _Due(at=loop.time())  # a round at start
        while not stop.is_set():
            # Paused, a due round must not turn the poll below into a spin.
            wait = POLL_SECONDS if self.deleted else min(max(due.at - loop.time(), 0.0), POLL_SECONDS)
            for partition, messages in (await hints.getmany(timeout_ms=int(wait * 1000))).items():
                RECORDS.labels(topics.GRAPH_NOTIFICATIONS, "in").inc(len(messages))
                for message in messages:
                    if self._take_hint(message.value, due):
                        due.at = min(due.at, loop.time() + graph.hint_debounce_seconds)
                    due.offsets[partition] = message.offset + 1
            if await self._restart(reader, control):
                due.at = loop.time()
            for active in await configuration.changes():
                if self._follow(reader, active):
                    due.at = loop.time()
            if self.deleted:
                # Hints wait uncommitted: the full round after the delete serves them.
                await self._forget_cursors(reader)
                continue
            if loop.time() < due.at or stop.is_set():
                continue
            served = dict(due.offsets)
            started = time.perf_counter()
            succeeded = await self._round(reader, keeper, due.reauthorize)
            DELTA_ROUND_SECONDS.labels("success" if succeeded else "failure").observe(time.perf_counter() - started)
            self.last_round_failed = not succeeded
            if succeeded:
                self.completed_rounds += 1
                self._round_clock.succeeded()
                if due.hinted_at is not None:
                    CHANGE_LATENCY.labels("ingest").observe(seconds_since(due.hinted_at, dt.datetime.now(dt.UTC)))
                await self._commit(hints, served)
                due = _Due(at=loop.time() + graph.delta_interval_seconds)
            else:
                self.failed_rounds += 1
                due.at = loop.time() + min(FAILURE_RETRY_SECONDS, graph.delta_interval_seconds)
            await self._report(reader, keeper)

    async def _report(self, reader: DeltaReader, keeper: SubscriptionKeeper | None) -> None:
        """Publish the rounds and subscriptions on e2ad.status for `e2ad status`: the last one stays there.

        Best effort: with Kafka gone the next round's record says it all.
        """
        status = IngestStatus(
            resources=dict(reader.rounds),
            subscriptions=[
                SubscriptionStatus(resource=kept.resource, id=kept.id, expires_at=kept.expires_at)
                for kept in (keeper.subscriptions.values() if keeper is not None else ())
            ],
            completed_rounds=self.completed_rounds,
            failed_rounds=self.failed_rounds,
        )
        try:
            await reader.publish_status(status)
        except KafkaError as exc:
            log.warning("publishing ingest's status on %s failed: %s", topics.STATUS, exc)

    def _follow(self, reader: DeltaReader, active: ActiveConfiguration | None) -> bool:
        """Take the active configuration: the groups' $select, and whether rounds pause.

        True when a round should run now: the set of selected group attributes changed (its groups
        round is a full one, the processors need the values at once), or the configuration came
        back from deleted (the cursors were cleared while it was: a full round).
        """
        was_deleted = self.deleted
        self.deleted = active is not None and active.state == "deleted"
        select_changed = reader.select_groups(group_select(active))
        if active is not None and self.deleted != was_deleted:
            if self.deleted:
                log.warning(
                    "the active configuration (version %d) is deleted: delta rounds pause and the delta"
                    " cursors are cleared, until a configuration is applied or enabled again",
                    active.version,
                )
            else:
                log.info(
                    "the active configuration (version %d) is %s: a full delta round runs now",
                    active.version,
                    active.state,
                )
        return not self.deleted and (select_changed or was_deleted)

    async def _forget_cursors(self, reader: DeltaReader) -> None:
        """While deleted: clear the delta cursors once, as a restart does (retried until Kafka takes it)."""
        if not reader.cursors:
            return
        try:
            await reader.forget_cursors()
        except KafkaError as exc:
            log.error("clearing the delta cursors of a deleted configuration failed, retrying: %s", exc)

    async def _restart(self, reader: DeltaReader, control: ControlReader) -> bool:
        """Apply the restarts read from e2ad.control; True when the delta cursors were cleared."""
        restarts = await control.restarts()
        if not restarts:
            await control.commit()  # past commands for the other stages
            return False
        try:
            await reader.forget_cursors()
        except KafkaError as exc:
            log.error("clearing the delta cursors for a restart failed, retrying: %s", exc)
            return False
        for command in restarts:
            log.info(
                "restart %s issued by %s at %s%s: delta cursors cleared, a full delta round runs now",
                command.command_id,
                command.issued_by or "an unnamed operator",
                command.issued_at.isoformat(timespec="seconds"),
                " (force deletes)" if command.force_deletes else "",
            )
        await control.applied(restarts)
        return True

    async def _commit(self, hints: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await hints.commit(offsets)
        except KafkaError as exc:
            # Harmless: the hints are read again and only bring another round forward.
            log.warning("committing graph.notifications offsets failed: %s", exc)

    def _take_hint(self, value: bytes | None, due: _Due) -> bool:
        """Note what a graph.notifications record asks for; True when it should bring a round forward."""
        try:
            batch = topics.decode(NotificationBatch, value or b"")
        except ValidationError as exc:
            log.warning("skipping an unreadable graph.notifications record: %s", exc)
            return False
        for notification in batch.notifications:
            if notification.lifecycle_event == LifecycleEventType.reauthorization_required:
                due.reauthorize.add(notification.subscription_id)
        if batch.notifications and (due.hinted_at is None or batch.received_at < due.hinted_at):
            due.hinted_at = batch.received_at
        return bool(batch.notifications)

    async def _round(self, reader: DeltaReader, keeper: SubscriptionKeeper | None, reauthorize: set[str]) -> bool:
        """Keep subscriptions, then run a delta round; False (logged) when Graph or Kafka failed."""
        if keeper is None:
            reauthorize.clear()  # nothing to reauthorize without subscriptions of our own
        else:
            try:
                for subscription_id in sorted(reauthorize):
                    await keeper.reauthorize(subscription_id)
                    reauthorize.discard(subscription_id)
                await keeper.ensure()
            except Exception as exc:
                # Subscriptions only speed things up: the delta round still runs.
                log.error("keeping Graph subscriptions failed: %s", describe_graph_error(exc))
            for kept in keeper.subscriptions.values():
                SUBSCRIPTION_EXPIRY.labels(kept.resource).set(kept.expires_at.timestamp())
        try:
            await reader.run_round()
        except KafkaError as exc:
            error = unreachable(self._settings.kafka, str(exc))
            reader.note_failure(error)
            log.error("delta round failed, retrying later: %s", error)
            return False
        except Exception as exc:
            # Graph's and the network's failures are one line; anything else is a bug worth its traceback.
            expected = isinstance(exc, APIError | AzureError | aiohttp.ClientError)
            error = describe_graph_error(exc)
            reader.note_failure(error)
            log.error("delta round failed, retrying later: %s", error, exc_info=None if expected else exc)
            return False
        # A pending reauthorization keeps its hint uncommitted, so a restart asks again.
        return not reauthorize

    def not_ready(self) -> str | None:
        """Why ingest is not ready on the Graph side: no delta round succeeded yet, or the last one failed.

        A round published every change Graph had for it, so a successful last round means caught up.
        """
        if self.last_round_failed:
            return "the last delta round failed (see the log); it is retried"
        if self.completed_rounds == 0 and not self.deleted:
            return "no delta round has finished yet"
        return None

    # -- running on a thread of its own ------------------------------------------------------

    def start_thread(self) -> None:
        """Run the worker on a new event loop in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("GraphWorker thread already started")
        self._thread = threading.Thread(target=asyncio.run, args=(self._thread_main(),), name="e2ad-graph-worker")
        self._thread.daemon = True
        self._thread.start()
        self._loop_ready.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread's loop to stop and wait for it."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("graph worker did not stop within %.0f s", timeout)

    async def _thread_main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._loop_ready.set()
        try:
            await self.run(self._stop)
        except KafkaConnectionError as exc:
            self.failure = exc  # run_ingest raises it: the stage starts again once Kafka answers (e2ad/cli.py)
        except Exception:
            log.exception("graph worker stopped on an error")
            raise
