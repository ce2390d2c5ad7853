"""End to end on real parts: Graph stand-in → webhook → Kafka → faust → writer → Samba AD DC.

The stages run as the same `e2ad ingest|process|write` processes an operator starts, and reach the
stand-in as they reach Graph: over HTTPS, trusting its CA through graph.ca_bundle. The delta timer
is set far beyond the test's length, so every change reaches AD because of a change notification;
the test prints the seconds from the stand-in's change to the change in AD.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.pipeline import Pipeline
from harness.services import free_port
from harness.standin import GraphStandin, Mutation, running_standin
from ingest.graph_worker import CONSUMER_GROUP as GRAPH_WORKER
from schemas import topics
from schemas.config import AdSettings, DeleteSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from schemas.desired import UNIVERSAL_SECURITY_GROUP
from schemas.results import ProvisioningResult
from tests.integration.helpers import committed, create_ad_user, end_offsets, read_group
from tests.integration.stages import TopicWatcher
from tests.polling import until

CLIENT_STATE = "e2e-client-state-" + uuid.uuid4().hex


def since(mutation: Mutation) -> str:
    return f"{time.monotonic() - mutation.monotonic:.2f} s"


@pytest.mark.integration
async def test_graph_changes_reach_ad_through_kafka(
    kafka_settings: KafkaSettings,
    ad_settings: AdSettings,
    test_ou: str,
    ad_admin: Any,
    tmp_path: Path,
    measured: Callable[[str], None],
) -> None:
    synced = dict(create_ad_user(ad_admin, test_ou, f"e2e-u{i}-{uuid.uuid4().hex[:6]}") for i in range(3))

    async with running_standin(graph_tls=True) as standin:
        assert standin.graph_base_url.startswith("https://")
        tenant = standin.tenant
        user_ids = [
            tenant.add_user(dn, onPremisesObjectIdentifier=guid, onPremisesSyncEnabled=True).object_id
            for dn, guid in synced.items()
        ]
        cloud_only = tenant.add_user("cloud-only").object_id
        webhook_port = free_port()
        settings = Settings(
            kafka=kafka_settings,
            graph=standin.graph_settings(delta_interval_seconds=600, hint_debounce_seconds=0.1),
            webhook=WebhookSettings(
                listen_port=webhook_port, public_url=f"http://127.0.0.1:{webhook_port}", client_state=CLIENT_STATE
            ),
            ad=ad_settings,
            provisioning=ProvisioningSettings(target_container=test_ou),
            deletes=DeleteSettings(window_seconds=1),  # a delete waits the guard's window: scaled down
            state_dir=tmp_path / "state",
        )
        async with (
            Pipeline(settings, log_dir=tmp_path / "logs") as pipeline,
            TopicWatcher(kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json) as results,
        ):
            await until(
                lambda: len(standin.subscriptions.subscriptions) == 2, "the groups and users subscriptions", timeout=60
            )
            try:
                await _scenario(
                    kafka_settings,
                    standin,
                    pipeline,
                    ad_admin,
                    test_ou,
                    synced,
                    user_ids,
                    cloud_only,
                    webhook_port,
                    measured,
                )
            finally:
                await results.collect(0.5)  # what has arrived
                for result in results.seen:
                    print("provisioning log:", result.model_dump_json(exclude_none=True))


async def _scenario(
    kafka_settings: KafkaSettings,
    standin: GraphStandin,
    pipeline: Pipeline,
    ad_admin: Any,
    ou: str,
    synced: dict[str, str],
    user_ids: list[str],
    cloud_only: str,
    webhook_port: int,
    measured: Callable[[str], None],
) -> None:
    def report(what: str, mutation: Mutation) -> None:
        measured(f"end-to-end: {what} reached AD {since(mutation)} after the change in the Graph stand-in")

    tenant = standin.tenant
    mail_enabled = tenant.add_group("Newsletter", securityEnabled=True, mailEnabled=True).object_id
    from_ad = tenant.add_group("Synced from AD", securityEnabled=True, mailEnabled=False, onPremisesSyncEnabled=True)
    created = tenant.add_group("Engineering", description="All engineers", securityEnabled=True, mailEnabled=False)
    group_id = created.object_id
    for member in [*user_ids, cloud_only]:
        last = tenant.add_member(group_id, member)
    anchor = f"Group_{group_id}"

    group = await until(
        lambda: (g := read_group(ad_admin, ou, anchor)) and len(g["member"]) == 3 and g, "create", timeout=45
    )
    report("create with 3 members", last)
    assert group["dn"] == f"CN=Engineering_{group_id[24:]},{ou}"
    assert group["description"] == ["All engineers"]
    assert group["displayName"] == ["Engineering"]
    assert group["adminDescription"] == [anchor]
    assert group["groupType"] == [str(UNIVERSAL_SECURITY_GROUP)]  # no schema loaded: values are text
    assert sorted(group["member"]) == sorted(synced)  # the cloud-only user is skipped

    renamed = tenant.update_group(group_id, displayName="Platform Engineering", description="Builds the platform")
    group = await until(
        lambda: (g := read_group(ad_admin, ou, anchor)) and g["description"] == ["Builds the platform"] and g,
        "rename",
        timeout=45,
    )
    report("rename and description change", renamed)
    assert group["dn"] == f"CN=Platform Engineering_{group_id[24:]},{ou}"
    assert group["displayName"] == ["Platform Engineering"]

    removed = tenant.remove_member(group_id, user_ids[0])
    group = await until(
        lambda: (g := read_group(ad_admin, ou, anchor)) and len(g["member"]) == 2 and g, "removal", timeout=45
    )
    report("member removal", removed)

    # A forged notification is answered 202 and changes nothing: no hint, no delta round. Counted
    # once the worker has served every hint so far: the removal's own notifications can bring a
    # second round after the one that put it in AD.
    hints = await end_offsets(kafka_settings, topics.GRAPH_NOTIFICATIONS)

    async def every_hint_served() -> bool:  # committed only after the round a hint brings forward
        return await committed(kafka_settings, GRAPH_WORKER, topics.GRAPH_NOTIFICATIONS) == hints

    await until(every_hint_served, "the graph worker to have served every hint on graph.notifications", timeout=45)
    delta_requests = len(standin.requests_to("/delta"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{webhook_port}/graph/notifications",
            json={"value": [_notification(group_id, tenant.tenant_id, "not-the-secret")]},
        ) as response,
    ):
        assert response.status == 202  # answered once its notifications are persisted: none
    assert await end_offsets(kafka_settings, topics.GRAPH_NOTIFICATIONS) == hints
    await asyncio.sleep(1.0)  # ten times the hint debounce: a round the forgery brought would have begun
    assert len(standin.requests_to("/delta")) == delta_requests

    deleted = tenant.hard_delete_group(group_id)
    await until(lambda: read_group(ad_admin, ou, anchor) is None, "permanent delete", timeout=45)
    report("permanent delete", deleted)

    assert read_group(ad_admin, ou, f"Group_{mail_enabled}") is None
    assert read_group(ad_admin, ou, f"Group_{from_ad.object_id}") is None
    assert pipeline.exited() == {}, "a stage died; see its log"


def _notification(group_id: str, tenant_id: str, client_state: str) -> dict[str, Any]:
    return {
        "subscriptionId": str(uuid.uuid4()),
        "subscriptionExpirationDateTime": "2026-12-24T17:42:30.1669210Z",
        "clientState": client_state,
        "changeType": "updated",
        "resource": f"Groups/{group_id}",
        "tenantId": tenant_id,
        "resourceData": {"@odata.type": "#Microsoft.Graph.Group", "@odata.id": f"Groups/{group_id}", "id": group_id},
    }
