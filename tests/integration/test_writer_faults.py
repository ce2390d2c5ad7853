"""The writer's faults on the real broker and DC: the DC going away mid-stream, and quarantine.

A transient fault pauses the writer's partitions and rewinds them; nothing is skipped, nothing
committed before AD has it, nothing applied twice. Rejected credentials and failing groups
quarantine the writer, which reports it on e2ad.status and /healthz and leaves quarantine on
the first successful retry or on `e2ad quarantine clear`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import ldap3
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from harness.pipeline import settings_environment
from harness.services import LocalServices
from runtime import kafka
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WriterSettings
from schemas.control import ControlCommand
from schemas.status import WriterStatus
from tests.integration.helpers import (
    Harness,
    admin_connection,
    committed,
    connects,
    desired,
    metric,
    read_group,
    renamed,
)
from tests.integration.stages import FlakyDc, TopicWatcher, command_environment
from tests.polling import until
from writers.quarantine import CREDENTIALS, ESCROW

pytestmark = pytest.mark.integration

FAST_BACKOFF = {"retry_initial_seconds": 0.2, "retry_max_seconds": 1.0}
DOMAIN_ADMINS = "CN=Domain Admins,CN=Users,{base}"


def writer_settings(kafka: KafkaSettings, ad: AdSettings, ou: str, **writer: Any) -> Settings:
    return Settings(
        kafka=kafka,
        ad=ad,
        provisioning=ProvisioningSettings(target_container=ou),
        writer=WriterSettings(**{**FAST_BACKOFF, "web_port": 0, **writer}),
    )


class ControlReads:
    """What the in-process writer's reader of e2ad.control has handed to the writer.

    The writer polls that reader once a loop and obeys what it got before it polls again, so a
    command is obeyed (or ignored) once the reader has been polled again after handing it over.
    """

    def __init__(self) -> None:
        self.handed = 0  # commands the reader returned
        self.obeyed = 0  # of those, the ones returned before the writer's latest poll: dealt with

    async def reader(self, settings: KafkaSettings, topic: str) -> AIOKafkaConsumer:
        consumer = await broadcast_reader(settings, topic)
        if topic == topics.CONTROL:
            getmany = consumer.getmany

            async def observed(*partitions: TopicPartition, **kwargs: Any) -> dict:
                self.obeyed = self.handed
                batches = await getmany(*partitions, **kwargs)
                self.handed += sum(len(records) for records in batches.values())
                return batches

            consumer.getmany = observed  # type: ignore[method-assign]
        return consumer

    async def past(self, commands: int) -> None:
        """Until the writer has dealt with the first `commands` commands sent since it started."""
        await until(lambda: self.obeyed >= commands, f"the writer to read {commands} command(s) on e2ad.control")


broadcast_reader = kafka.broadcast_reader


@pytest.fixture
def control_reads(monkeypatch: pytest.MonkeyPatch) -> ControlReads:
    reads = ControlReads()
    monkeypatch.setattr(kafka, "broadcast_reader", reads.reader)
    return reads


# -- the DC goes away in the middle of a stream -----------------------------------------------
async def outage_mid_stream(
    harness: Harness,
    ou: str,
    stop_dc: Callable[[], Awaitable[None]],
    start_dc: Callable[[], Awaitable[None]],
    read: Callable[[str], dict | None],
    measured: Callable[[str], None],
    what: str,
) -> None:
    """20 groups converge; the DC goes; 20 new groups and an update of the first 20 wait; the DC returns."""
    first = [desired(ou, name=f"First{i}") for i in range(20)]
    await harness.converge(*first)
    await stop_dc()
    later = [desired(ou, name=f"Later{i}") for i in range(20)]
    updates = [renamed(state, description="after the outage") for state in first]
    seen = len(harness.results)
    await harness.publish(*later, *updates)

    await until(lambda: metric(harness, "e2ad_writer_paused_partitions") == 4, "every partition paused")
    assert metric(harness, "e2ad_writer_ad_unavailable") == 1
    tried = connects(harness)
    await until(lambda: connects(harness) >= tried + 2, "two more backoff rounds while the DC is away")
    await harness.caught_up()
    assert harness.results[seen:] == []
    assert await committed(harness.settings.kafka) == len(first)
    assert harness.service is not None and harness.service.status().ad_unavailable_since is not None

    await start_dc()
    back = time.monotonic()
    await harness.wait_results({s.group_id for s in later + updates}, after=seen, timeout=60)
    measured(f"writer: {what}: all 40 groups converged {time.monotonic() - back:.2f} s after the DC returned")

    for state in later + updates:
        group = read(state.anchor)  # exactly one object per anchor (read_group asserts it)
        assert group is not None and group["description"] == [state.attributes["description"]]
    results = harness.results
    assert [r for r in results if r.status == "failure"] == []
    creates = [r.group_id for r in results if r.action == "create"]
    assert sorted(creates) == sorted(s.group_id for s in first + later)  # each group created once
    assert metric(harness, "e2ad_writer_paused_partitions") == 0
    await harness.stop_writer()
    assert await committed(harness.settings.kafka) == len(first) + len(later) + len(updates)


async def test_dc_unreachable_mid_stream_pauses_the_partitions_and_loses_nothing(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin, measured
) -> None:
    async with FlakyDc(ad_settings.url) as dc:
        proxied = ad_settings.model_copy(update={"url": f"ldaps://127.0.0.1:{dc.port}"})
        async with Harness(writer_settings(kafka_settings, proxied, test_ou)) as harness:

            async def stop() -> None:
                dc.stop()

            async def start() -> None:
                dc.start()

            await outage_mid_stream(
                harness, test_ou, stop, start, lambda a: read_group(ad_admin, test_ou, a), measured, "connections cut"
            )


@pytest.fixture
def own_ou(ad_settings: AdSettings) -> Iterator[str]:
    """An OU removed afterwards over a connection of its own: the DC restarts in between."""
    ou = f"OU=t-{uuid.uuid4().hex[:10]},{ad_settings.base_dn}"
    admin = admin_connection(ad_settings)
    assert admin.add(ou, "organizationalUnit"), admin.result
    admin.unbind()
    yield ou
    admin = admin_connection(ad_settings)
    admin.delete(ou, controls=[("1.2.840.113556.1.4.805", True, None)])
    admin.unbind()


async def test_the_dc_stopped_mid_stream_and_started_again(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, own_ou: str, dc_services: LocalServices, measured
) -> None:
    """The real thing: Samba stopped and started. The DC is shared, so no other test session may run."""

    async def stop() -> None:
        await asyncio.to_thread(dc_services.stop_dc)

    async def start() -> None:
        await asyncio.to_thread(dc_services.start_dc)

    def read(anchor: str) -> dict | None:
        admin = admin_connection(ad_settings)
        try:
            return read_group(admin, own_ou, anchor)
        finally:
            admin.unbind()

    try:
        async with Harness(writer_settings(kafka_settings, ad_settings, own_ou)) as harness:
            await outage_mid_stream(harness, own_ou, stop, start, read, measured, "Samba stopped and started")
    finally:
        if not dc_services.dc_running():
            dc_services.start_dc()


# -- quarantine -------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def statuses(kafka_settings: KafkaSettings) -> AsyncIterator[TopicWatcher]:
    def parse(value: bytes | None) -> WriterStatus | None:
        return WriterStatus.model_validate_json(value) if value else None  # None: a writer left

    async with TopicWatcher(kafka_settings, topics.STATUS, parse) as watcher:
        yield watcher


async def healthz(harness: Harness) -> tuple[int, dict]:
    assert harness.service is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{harness.service.web_port}/healthz") as response,
    ):
        return response.status, await response.json()


async def e2ad(settings: Settings, *args: str) -> str:
    """The operator's command line, as a process of its own."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "e2ad", *args,
        env=command_environment(settings_environment(settings)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.fixture
def service_account(ad_admin, ad_settings: AdSettings, test_ou: str) -> tuple[str, Callable[[str], None]]:
    """A user in the test's OU who may create groups there, and a way to reset its password."""
    dn = f"CN=writer-svc,{test_ou}"

    def set_password(password: str) -> None:
        assert ad_admin.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])]})

    assert ad_admin.add(dn, "user", {"sAMAccountName": f"s{uuid.uuid4().hex[:12]}"}), ad_admin.result
    set_password("Right-Passw0rd!1")
    assert ad_admin.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [512])]}), ad_admin.result
    admins = DOMAIN_ADMINS.format(base=ad_settings.base_dn)
    assert ad_admin.modify(admins, {"member": [(ldap3.MODIFY_ADD, [dn])]}), ad_admin.result
    return dn, set_password


async def test_rejected_credentials_quarantine_until_a_retry_succeeds(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin, service_account
) -> None:
    dn, set_password = service_account
    ad = ad_settings.model_copy(update={"bind_dn": dn, "bind_password": SecretStr("Other-Passw0rd!2")})
    settings = writer_settings(
        kafka_settings, ad, test_ou, quarantine_retry_seconds=[1.0, 2.0], quarantine_retry_every_seconds=1.0
    )
    state = desired(test_ou)
    async with statuses(kafka_settings) as status, Harness(settings) as harness:
        await harness.publish(state)
        await harness.start_writer()

        quarantined = await status.wait_for(lambda s: s is not None and s.state == "quarantined")
        assert (quarantined.writer, quarantined.reason) == ("writer-under-test", CREDENTIALS)
        assert dn in (quarantined.detail or "") and quarantined.next_retry is not None
        code, body = await healthz(harness)
        assert (code, body["state"], body["reason"]) == (503, "quarantined", CREDENTIALS)
        assert metric(harness, "e2ad_writer_paused_partitions") == 4

        # The first retry (after 1 s) fails like the bind did; nothing is written or committed.
        await status.wait_for(lambda s: s is not None and s.retries == 1 and s.state == "quarantined")
        assert read_group(ad_admin, test_ou, state.anchor) is None
        assert harness.results == [] and await committed(kafka_settings) == 0

        set_password("Other-Passw0rd!2")  # the account is repaired in AD: the next retry binds
        await status.wait_for(lambda s: s is not None and s.state == "running" and s.retries == 0)
        [result] = await harness.wait_results({state.group_id}, after=0)
        assert result.status == "success" and read_group(ad_admin, test_ou, state.anchor) is not None
        code, body = await healthz(harness)
        assert (code, body["state"]) == (200, "running")


async def test_e2ad_quarantine_status_and_clear(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, control_reads: ControlReads
) -> None:
    ad = ad_settings.model_copy(update={"bind_password": SecretStr("not-the-password")})
    settings = writer_settings(kafka_settings, ad, test_ou, quarantine_retry_seconds=[3600.0])
    async with statuses(kafka_settings) as status, Harness(settings) as harness:
        await harness.start_writer()
        await status.wait_for(lambda s: s is not None and s.state == "quarantined")

        shown = await e2ad(settings, "quarantine", "status")
        assert shown.startswith("writer-under-test: quarantined since ") and CREDENTIALS in shown
        assert ad.bind_dn in shown and "next retry" in shown

        await e2ad(settings, "quarantine", "clear", "--writer", "another-writer")
        await control_reads.past(1)
        assert (await healthz(harness))[0] == 503  # not addressed to this writer

        assert "asked every writer" in await e2ad(settings, "quarantine", "clear")
        cleared = await status.wait_for(lambda s: s is not None and s.state == "running")
        assert cleared.reason is None and cleared.since is None
        assert (await healthz(harness))[0] == 200
        assert (await e2ad(settings, "quarantine", "status")).startswith("writer-under-test: running")

        await harness.stop_writer()  # a writer that stops leaves e2ad.status
        assert (await e2ad(settings, "quarantine", "status")).startswith("no writer is reporting")


async def test_failing_groups_past_the_threshold_quarantine_the_writer(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin, control_reads: ControlReads
) -> None:
    """Entra's proportion rule with small numbers: from 3 failing groups on, more than 40 % of them."""
    settings = writer_settings(
        kafka_settings, ad_settings, test_ou, quarantine_evaluation_start=3, quarantine_retry_seconds=[3600.0]
    )
    good = desired(test_ou, name="Good")
    bad = [desired(test_ou, create_only={"sAMAccountName": f"bad/{i}"}) for i in range(3)]
    held = [desired(test_ou, name=f"Held{i}") for i in range(4)]
    async with statuses(kafka_settings) as status, Harness(settings) as harness:
        await harness.converge(good)  # first, so that the proportion is 3 of 4
        await harness.converge(*bad)
        quarantined = await status.wait_for(lambda s: s is not None and s.state == "quarantined")
        assert quarantined.reason == ESCROW
        assert (quarantined.decided, quarantined.failing) == (4, 3)
        assert quarantined.detail == "3 of 4 groups fail (75%), more than 40%"

        await harness.publish(*held)
        # A command for no writer, sent after them: once the writer has read it, it has gone round
        # its loop with the held states on ad.desired, and taken none of them.
        marker = ControlCommand(command="clear-quarantine", writer="no-such-writer")
        await harness.producer.send_and_wait(topics.CONTROL, topics.encode(marker))
        await control_reads.past(1)
        assert metric(harness, "e2ad_writer_paused_partitions") == 4
        await harness.caught_up()
        assert {r.group_id for r in harness.results} == {good.group_id} | {s.group_id for s in bad}
        assert all(read_group(ad_admin, test_ou, s.anchor) is None for s in held)
        assert await committed(kafka_settings) == 4

        assert harness.service is not None
        await e2ad(settings, "quarantine", "clear", "--writer", harness.service.name)
        await harness.wait_results({s.group_id for s in held}, after=4)
        assert all(read_group(ad_admin, test_ou, s.anchor) is not None for s in held)
