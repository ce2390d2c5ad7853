"""`e2ad up`: the whole pipeline on embedded defaults, in one command.

Starts the local broker and Samba AD DC, creates the target OU, and runs every stage as a
child process. Without Graph credentials the tenant is simulated: the Graph stand-in the
tests use, on loopback, seeded with sample users (their AD accounts created in the local DC,
as AD Connect would have synced them) and groups, with a slow trickle of changes. Each
provisioning-log record is printed as it arrives, so a newcomer watches groups reach AD.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from harness.pipeline import Pipeline
from harness.services import Endpoints, LocalServices, free_port
from harness.standin.demo import SyncedUser
from runtime import kafka
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from schemas.results import ProvisioningResult

log = logging.getLogger(__name__)

GROUPS_OU = "OU=e2ad groups"
DEMO_USERS_OU = "OU=e2ad demo users"
DEMO_DOMAIN = "e2ad.test"
# The simulated tenant's Graph timing (scripts/bench_idle.py measures the embedded mode with it).
SIMULATED_GRAPH_TIMING = {"delta_interval_seconds": 60, "hint_debounce_seconds": 0.2}
PROGRESS_SECONDS = 5.0  # how often `e2ad up` says how far a catch-up got
# The stages' consumer groups (processors/app.py APP_ID, writers/service.py CONSUMER_GROUP): the
# harness imports no processors code, and of the writer's only its LDAP connection.
PROCESSORS_GROUP, WRITERS_GROUP = "e2ad-processors", "e2ad-writers"


async def run_up(settings: Settings, stop: asyncio.Event) -> None:
    services = LocalServices(settings.state_dir)
    if not settings.graph.configured:
        # Each simulated tenant is new: start from an empty broker and a fresh copy of the DC, so
        # that no cursor or group of an earlier demo run is left over.
        await asyncio.to_thread(services.reset)
    log.info("starting the local Kafka broker and Samba AD DC (state in %s)", services.state_dir)
    endpoints = await services.up()
    try:
        settings = _on_local_services(settings, endpoints)
        await kafka.ensure_topics(settings.kafka)
        await asyncio.to_thread(_ensure_ou, settings.ad, str(settings.provisioning.target_container))
        async with _tenant(settings) as settings, Pipeline(settings, log_dir=services.state_dir / "logs", restart=True):
            log.info("pipeline running; stage logs in %s. Ctrl-C stops everything.", services.state_dir / "logs")
            watchers = [asyncio.create_task(watch(settings.kafka)) for watch in (_print_results, _print_progress)]
            try:
                await stop.wait()  # a stage that dies is started again by the pipeline
            finally:
                for watcher in watchers:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
    finally:
        # Only now, with every stage exited (the Pipeline block has ended) and so no producer left:
        # the broker acknowledges writes during its own shutdown and then drops them. down()
        # returns once the broker has exited, its final snapshot written.
        log.info("stopping the local services")
        await asyncio.to_thread(services.down)


def _on_local_services(settings: Settings, endpoints: Endpoints) -> Settings:
    """Point Kafka and AD at the local services unless the configuration names others."""
    update: dict[str, Any] = {}
    if settings.kafka.bootstrap_servers == KafkaSettings().bootstrap_servers:
        update["kafka"] = settings.kafka.model_copy(update={"bootstrap_servers": endpoints.kafka_bootstrap})
    if settings.ad.bind_dn is None:
        update["ad"] = endpoints.ad_settings()
    base_dn = (update.get("ad") or settings.ad).base_dn
    if settings.provisioning.target_container is None:
        update["provisioning"] = ProvisioningSettings(
            target_container=f"{GROUPS_OU},{base_dn}",
            on_soft_delete_or_out_of_scope=settings.provisioning.on_soft_delete_or_out_of_scope,
        )
    return settings.model_copy(update=update)


def _ensure_ou(ad: AdSettings, dn: str) -> None:
    from writers.connection import close, connect

    connection = connect(ad)
    try:
        _, result, _, _ = connection.add(dn, "organizationalUnit")
        if result["result"] not in (0, 68):  # 68: it exists already
            raise RuntimeError(f"cannot create {dn}: {result['description']} {result['message']}")
    finally:
        close(connection)


@contextlib.asynccontextmanager
async def _tenant(settings: Settings) -> AsyncIterator[Settings]:
    """The real tenant when configured; otherwise a simulated one for the lifetime of the block."""
    if settings.graph.configured:
        if settings.webhook.public_url is None:
            log.warning(
                "no webhook.public_url: e2ad runs on delta rounds alone, every %.0f s",
                settings.graph.delta_interval_seconds,
            )
        yield settings
        return
    from harness.standin import running_standin
    from harness.standin.demo import seed_demo_tenant, trickle

    synced = await asyncio.to_thread(_demo_ad_users, settings.ad)
    async with running_standin() as standin:
        seed_demo_tenant(standin.tenant, synced)
        port = free_port()
        simulated = settings.model_copy(
            update={
                "graph": standin.graph_settings(**SIMULATED_GRAPH_TIMING),
                "webhook": WebhookSettings(
                    listen_port=port, public_url=f"http://127.0.0.1:{port}", client_state=secrets.token_urlsafe(32)
                ),
            }
        )
        log.info("no Graph credentials configured: simulating a tenant at %s", standin.graph_base_url)
        changes = asyncio.create_task(trickle(standin.tenant))
        try:
            yield simulated
        finally:
            changes.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await changes


def _demo_ad_users(ad: AdSettings) -> list[SyncedUser]:
    """Sample AD users, as if AD Connect had synced them to Entra."""
    from writers.connection import close, connect

    ou = f"{DEMO_USERS_OU},{ad.base_dn}"
    connection = connect(ad)
    try:
        connection.add(ou, "organizationalUnit")
        users = []
        for name in ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov"):
            dn = f"CN={name},{ou}"
            login = name.lower().replace(" ", ".")
            connection.add(dn, "user", {"sAMAccountName": login[:20], "userPrincipalName": f"{login}@{DEMO_DOMAIN}"})
            _, _, response, _ = connection.search(
                dn, "(objectClass=user)", search_scope="BASE", attributes=["objectGUID"]
            )
            guid = str(uuid.UUID(bytes_le=response[0]["raw_attributes"]["objectGUID"][0]))
            users.append(SyncedUser(str(uuid.uuid4()), guid, name, f"{login}@{DEMO_DOMAIN}"))
        return users
    finally:
        close(connection)


async def _print_results(settings: KafkaSettings) -> None:
    reader = kafka.consumer(settings, topics.AD_RESULTS, group_id=None, auto_offset_reset="latest")
    await reader.start()
    try:
        async for message in reader:
            result = ProvisioningResult.model_validate_json(message.value)
            print(_describe(result), flush=True)
    finally:
        await reader.stop()


@dataclass(frozen=True)
class Progress:
    """How far the pipeline got, from the brokers: records on each topic and what each stage consumed of them."""

    changes: int  # on graph.changes: what ingest read from Graph
    consumed_changes: int  # of them, committed by the processors
    desired: int  # on ad.desired: desired states the processors published
    applied: int  # of them, committed by the writers (applied in AD, or failed into the log)


def progress_line(before: Progress, now: Progress, seconds: float) -> str | None:
    """A line while the stages have work waiting (an initial sync, a burst), with the time left at the
    writers' pace since `before`; None once every stage has caught up."""
    processing, writing = now.changes - now.consumed_changes, now.desired - now.applied
    if processing <= 0 and writing <= 0:
        return None
    pace = (now.applied - before.applied) / seconds if seconds > 0 else 0.0
    left = f", about {writing / pace:.0f} s left at {pace:.0f} a second" if pace > 0 and writing > 0 else ""
    return (
        f"catching up: {now.changes} changes read from Graph ({processing} waiting for the processors), "
        f"{now.desired} desired states published, {now.applied} applied in AD ({writing} waiting){left}"
    )


async def _print_progress(settings: KafkaSettings) -> None:
    loop = asyncio.get_running_loop()
    before: tuple[Progress, float] | None = None
    while True:
        try:
            now = await _progress(settings)
        except KafkaError as exc:  # the broker not up yet, or gone: the next look says it
            log.debug("reading the progress: %s", exc)
        else:
            if before is not None and (line := progress_line(before[0], now, loop.time() - before[1])):
                print(line, flush=True)
            before = (now, loop.time())
        await asyncio.sleep(PROGRESS_SECONDS)


async def _progress(settings: KafkaSettings) -> Progress:
    reader = kafka.consumer(settings, group_id=None)
    try:
        await reader.start()
        totals = []
        for topic, group in ((topics.GRAPH_CHANGES, PROCESSORS_GROUP), (topics.AD_DESIRED, WRITERS_GROUP)):
            partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
            ends = await reader.end_offsets(partitions) if partitions else {}
            totals.append(sum(ends.values()))
            totals.append(sum((await kafka.committed_offsets(settings, group, partitions)).values()))
    finally:
        await kafka.stop_quietly(reader)
    return Progress(*totals)


def _describe(result: ProvisioningResult) -> str:
    members = (
        f" +{result.members_added}/-{result.members_removed} members"
        if result.members_added or result.members_removed
        else ""
    )
    error = f" — {result.error_message}" if result.error_message else ""
    latency = ""
    if result.source_changed_at is not None:
        latency = f" ({(result.at - result.source_changed_at).total_seconds():.2f} s after the change was read)"
    return f"[{result.status:>7}] {result.action:<6} {result.dn or result.anchor}{members}{error}{latency}"
