"""Shared helpers of the integration tests: desired states as the processors publish them, readers of
AD and of the writers' offsets, and the writer Harness (a WriterService driven over a real broker).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from harness.services import free_port
from runtime import kafka
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, DesiredMember, anchor_of
from schemas.results import ProvisioningResult
from tests.polling import until
from writers.service import CONSUMER_GROUP, WriterService

if TYPE_CHECKING:
    from harness.standin import GraphStandin

ANCHOR = "msDS-ExternalDirectoryObjectId"
READ = ["cn", "description", "displayName", "adminDescription", "groupType", "sAMAccountName", "member", ANCHOR]
WAIT_SECONDS = 30


# -- desired states -----------------------------------------------------------------------------
def desired(
    test_ou: str,
    group_id: str | None = None,
    *,
    name: str = "Sales",
    members: Sequence[uuid.UUID] = (),
    groups: Sequence[DesiredGroup] = (),
    **overrides: object,
) -> DesiredGroup:
    """A desired state as the processors would publish it: users by objectGUID, nested groups by anchor."""
    group_id = group_id or str(uuid.uuid4())
    fields: dict[str, object] = {
        "group_id": group_id,
        "anchor": anchor_of(group_id),
        "state": "present",
        "container": test_ou,
        "attributes": {
            "cn": f"{name}_{group_id[-12:]}",
            "displayName": name,
            "description": f"{name} team",
            "adminDescription": anchor_of(group_id),
            "groupType": UNIVERSAL_SECURITY_GROUP,
        },
        "create_only": {"sAMAccountName": f"g{group_id[-12:]}"},
        "members": [
            *user_members(members),
            *(DesiredMember(type="group", id=group.group_id, anchor=group.anchor) for group in groups),
        ],
        "source_changed_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    }
    fields.update(overrides)
    return DesiredGroup.model_validate(fields)


def user_members(guids: Sequence[uuid.UUID]) -> list[DesiredMember]:
    return [DesiredMember(type="user", id=f"entra-{guid}", object_guid=str(guid)) for guid in guids]


def renamed(state: DesiredGroup, **attributes: object) -> DesiredGroup:
    return state.model_copy(update={"attributes": {**state.attributes, **attributes}})


# -- AD, read (and written) directly --------------------------------------------------------------
def admin_connection(settings: AdSettings) -> Any:
    """A plain ldap3 connection as the domain's admin, for tests to look at and tamper with AD."""
    import ldap3  # here, so that importing this module needs no LDAP (tests/conftest.py does)

    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED,
        ca_certs_file=str(settings.ca_file),
        valid_names=[settings.tls_server_name] if settings.tls_server_name else None,
    )
    server = ldap3.Server(settings.url, tls=tls, get_info=ldap3.NONE)
    assert settings.bind_password is not None
    return ldap3.Connection(
        server, settings.bind_dn, settings.bind_password.get_secret_value(), auto_bind=True, raise_exceptions=False
    )


def read_group(ad_admin: Any, base: str, anchor: str) -> dict[str, Any] | None:
    """The group below `base` with this anchor, as AD has it; asserts there is at most one."""
    ad_admin.search(base, f"({ANCHOR}={anchor})", attributes=[*READ, "objectGUID", "uSNChanged"])
    if not ad_admin.entries:
        return None
    assert len(ad_admin.entries) == 1
    entry = ad_admin.response[0]
    return {"dn": entry["dn"], **entry["attributes"]}


def groups_in_ad(ad_admin: Any, ou: str, attributes: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Every group below the OU that has an anchor, by anchor: these attributes of it and its DN.

    Paged, since the DC returns at most 1,000 entries per search. Single values come as they are,
    absent ones as None.
    """
    entries = ad_admin.extend.standard.paged_search(
        ou, "(objectClass=group)", attributes=[ANCHOR, *attributes], paged_size=500, generator=False
    )
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if entry.get("type") != "searchResEntry":
            continue
        values = {name: _single(entry["attributes"].get(name)) for name in (ANCHOR, *attributes)}
        if values[ANCHOR]:
            found[str(values[ANCHOR])] = {"dn": entry["dn"], **values}
    return found


def anchors_in_ad(ad_admin: Any, ou: str) -> set[str]:
    """The anchors of every group below the OU."""
    return set(groups_in_ad(ad_admin, ou))


def _single(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def object_guid(ad_admin: Any, object_dn: str) -> uuid.UUID:
    ad_admin.search(object_dn, "(objectClass=*)", "BASE", attributes=["objectGUID"])
    return uuid.UUID(bytes_le=ad_admin.response[0]["raw_attributes"]["objectGUID"][0])


def member_dns(group: dict[str, Any]) -> set[str]:
    return {m.lower() for m in group.get("member", [])}


def create_ad_user(ad_admin: Any, ou: str, name: str) -> tuple[str, str]:
    """A user as AD Connect would have synced it: its objectGUID is Entra's onPremisesObjectIdentifier."""
    dn = f"CN={name},{ou}"
    assert ad_admin.add(dn, "user", {"sAMAccountName": name[:20]}), ad_admin.result
    return dn, str(object_guid(ad_admin, dn))


# -- the Graph stand-in ------------------------------------------------------------------------
def full_rounds(standin: GraphStandin) -> int:
    """Groups delta rounds the stand-in has seen start without a delta token: full rounds."""
    firsts = [r for r in standin.requests_to("/groups/delta") if "$skiptoken" not in r.query]
    return sum("$deltatoken" not in r.query and "$deltaToken" not in r.query for r in firsts)


# -- the writers' offsets and metrics -------------------------------------------------------------
async def committed(settings: KafkaSettings, group_id: str = CONSUMER_GROUP, topic: str = topics.AD_DESIRED) -> int:
    """Offsets a consumer group (the writers' by default) has committed on a topic, summed over partitions."""
    reader = kafka.consumer(settings, group_id=group_id)
    await reader.start()
    try:
        return sum([await reader.committed(tp) or 0 for tp in await _partitions(reader, topic)])
    finally:
        await reader.stop()


async def end_offsets(settings: KafkaSettings, topic: str) -> int:
    """The end offsets of a topic, summed over partitions: how many records it has had."""
    reader = kafka.consumer(settings, group_id=None)
    await reader.start()
    try:
        return sum((await reader.end_offsets(await _partitions(reader, topic))).values())
    finally:
        await reader.stop()


async def _partitions(reader: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, as many as it has (graph.notifications has fewer than ad.desired)."""
    await reader.topics()  # the cluster's metadata, topics included
    partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
    assert partitions, f"{topic} has no partitions"
    return partitions


def metric(harness: Harness, name: str, **labels: str) -> float | None:
    """A sample of the running writer's Prometheus registry."""
    assert harness.service is not None
    return harness.service.metrics.registry.get_sample_value(name, labels)


def connects(harness: Harness) -> float:
    """How often the running writer has tried to connect to the DC, failed attempts included."""
    return metric(harness, "e2ad_writer_ldap_operation_seconds_count", operation="connect") or 0.0


# -- the writer, driven over a real broker --------------------------------------------------------
class Harness:
    """A running writer, a producer onto ad.desired and a reader of ad.results / ad.dead-letter."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = kafka.producer(settings.kafka)
        self.reader = kafka.consumer(settings.kafka, group_id=None)
        self.service: WriterService | None = None
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.results: list[ProvisioningResult] = []
        self.dead_letters: list = []
        self.published = 0

    async def __aenter__(self) -> Harness:
        await self.producer.start()
        await self.reader.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in (topics.AD_RESULTS, topics.AD_DEAD_LETTER)
            for p in range(self.settings.kafka.partitions)
        ]
        self.reader.assign(partitions)
        await self.reader.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_writer()
        await self.reader.stop()
        await self.producer.stop()

    async def start_writer(self) -> None:
        if self.service is None:
            service = WriterService(self.settings, name="writer-under-test")
            await service.start()
            self.stop.clear()
            self.service, self.task = service, asyncio.create_task(service.run(self.stop))

    async def stop_writer(self) -> None:
        if self.service is not None:
            self.stop.set()
            assert self.task is not None
            await self.task
            await self.service.stop()
            self.service = None

    async def publish(self, *states: DesiredGroup) -> None:
        for state in states:
            await self.send(topics.encode(state), state.group_id)

    async def send(self, value: bytes, group_id: str) -> None:
        """One record onto ad.desired, counted in `published`."""
        await self.producer.send_and_wait(topics.AD_DESIRED, value, key=topics.key(group_id))
        self.published += 1

    async def converge(self, *states: DesiredGroup) -> list[ProvisioningResult]:
        """Publish, make sure the writer runs, and return the next result of each distinct group."""
        seen = len(self.results)
        await self.publish(*states)
        await self.start_writer()
        wanted = {state.group_id for state in states}
        return await self.wait_results(wanted, after=seen)

    async def wait_results(
        self, group_ids: set[str], *, after: int, timeout: float = WAIT_SECONDS
    ) -> list[ProvisioningResult]:
        """The results after the first `after`, sorted by group, once they include one of each group."""

        async def arrived() -> list[ProvisioningResult] | None:
            new = self.results[after:]
            if group_ids <= {r.group_id for r in new}:
                return sorted(new, key=lambda r: r.group_id)
            await self.poll(0.2)
            return None

        try:
            return await until(arrived, f"results of {sorted(group_ids)}", timeout=timeout, interval=0)
        except AssertionError as exc:
            new = self.results[after:]
            raise AssertionError(f"{exc}: none for {group_ids - {r.group_id for r in new}}; got {new}") from None

    async def settled(self, timeout: float = WAIT_SECONDS) -> None:
        """Wait until the writers have committed every record published, then read everything out.

        A writer commits a record only once its result (and dead letter) are acknowledged, so after
        this `results` and `dead_letters` hold every record the published states led to.
        """
        await until(self._committed_all, f"the writers to commit all {self.published} records", timeout=timeout)
        await self.caught_up()

    async def _committed_all(self) -> bool:
        return await committed(self.settings.kafka) == self.published

    async def caught_up(self, timeout: float = WAIT_SECONDS) -> None:
        """Read ad.results and ad.dead-letter up to the end they have now."""
        assignment = list(self.reader.assignment())
        end = await self.reader.end_offsets(assignment)

        async def at_end() -> bool:
            if all([await self.reader.position(tp) >= offset for tp, offset in end.items()]):
                return True
            await self.poll(0.2)
            return False

        await until(at_end, "the reader at the end of ad.results and ad.dead-letter", timeout=timeout, interval=0)

    async def poll(self, seconds: float) -> None:
        """Read what arrives on ad.results and ad.dead-letter within `seconds` (or sooner)."""
        batches = await self.reader.getmany(timeout_ms=int(seconds * 1000))
        for tp, records in sorted(batches.items()):
            for record in records:
                if tp.topic == topics.AD_RESULTS:
                    self.results.append(topics.decode(ProvisioningResult, record.value))
                else:
                    self.dead_letters.append(record)


def pipeline_settings(
    standin: GraphStandin,
    kafka_settings: KafkaSettings,
    ad_settings: AdSettings,
    test_ou: str,
    state_dir: Path,
    **sections: Any,
) -> Settings:
    """The three stages' settings against the stand-in and the test OU; `sections` add or replace sections.

    No webhook.public_url: delta rounds run on a 1 s timer alone, so a test waits on no notification.
    """
    return Settings(
        kafka=kafka_settings,
        graph=standin.graph_settings(delta_interval_seconds=1.0),
        webhook=WebhookSettings(listen_port=free_port()),
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=test_ou, on_soft_delete_or_out_of_scope="delete"),
        state_dir=state_dir,
        **sections,
    )
