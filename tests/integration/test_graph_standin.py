"""The Graph stand-in as the real msgraph-sdk and azure-identity see it."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.groups.item.group_item_request_builder import GroupItemRequestBuilder
from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
from msgraph.generated.models.group import Group
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.subscription import Subscription
from msgraph.generated.models.user import User
from msgraph_core import PageIterator

from harness.standin import GraphStandin, SyncedUser, running_standin, seed_demo_tenant, trickle
from ingest.delta import GROUP_SELECT, read_round
from ingest.graph_client import build_credential, build_graph_client
from tests.active import WRITEBACK_ENABLED
from tests.fakes import FakeAsyncCredential, running_receiver, standin_client


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin(page_size=2) as standin:
        yield standin


def in_minutes(minutes: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)


async def test_real_client_secret_credential_gets_one_token_over_tls(standin: GraphStandin) -> None:
    group_id = standin.tenant.add_group("Sales", description="EMEA sales").object_id
    settings = standin.graph_settings()
    select = GroupItemRequestBuilder.GroupItemRequestBuilderGetQueryParameters(select=["id", "displayName"])

    async with build_credential(settings) as credential:
        client = build_graph_client(credential, settings)
        groups = [
            await client.groups.by_group_id(group_id).get(RequestConfiguration(query_parameters=select))
            for _ in range(3)
        ]

    assert [g.display_name for g in groups if g] == ["Sales"] * 3
    assert groups[0] is not None and groups[0].description is None  # not selected
    (token_request,) = standin.token_requests
    assert token_request["grant_type"] == "client_credentials"
    assert token_request["client_secret"] == standin.client_secret
    assert token_request["scope"] == "https://graph.microsoft.com/.default"


async def test_wrong_client_secret_is_refused_like_entra(standin: GraphStandin) -> None:
    settings = standin.graph_settings(client_secret="not-the-secret")
    async with build_credential(settings) as credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
            await credential.get_token("https://graph.microsoft.com/.default")


async def test_unissued_bearer_token_gets_401(standin: GraphStandin) -> None:
    client = build_graph_client(FakeAsyncCredential("forged"), standin.graph_settings())
    with pytest.raises(ODataError) as raised:
        await client.groups.get()
    assert raised.value.response_status_code == 401
    assert raised.value.error is not None and raised.value.error.code == "InvalidAuthenticationToken"


async def test_members_page_with_absolute_next_links_and_odata_types(standin: GraphStandin) -> None:
    tenant = standin.tenant
    group_id = tenant.add_group("Big").object_id
    user_ids = [tenant.add_user(f"user {i}").object_id for i in range(4)]
    nested_id = tenant.add_group("Nested").object_id
    for member_id in [*user_ids, nested_id]:
        tenant.add_member(group_id, member_id)
    client = standin_client(standin)
    params = MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(top=2)

    first = await client.groups.by_group_id(group_id).members.get(RequestConfiguration(query_parameters=params))
    assert first is not None and first.odata_next_link is not None
    assert first.odata_next_link.startswith(standin.graph_base_url)
    seen: list[object] = []
    await PageIterator(first, client.request_adapter).iterate(lambda m: seen.append(m) or True)

    assert [m.id for m in seen] == [*user_ids, nested_id]  # type: ignore[attr-defined]
    assert [type(m) for m in seen] == [User] * 4 + [Group]
    assert len(standin.requests_to(f"/groups/{group_id}/members")) == 3


async def test_write_endpoints_change_the_tenant(standin: GraphStandin) -> None:
    user_id = standin.tenant.add_user("Ada").object_id
    client = standin_client(standin)

    created = await client.groups.post(
        Group(display_name="Made by API", mail_enabled=False, mail_nickname="api", security_enabled=True)
    )
    assert created is not None and created.id is not None
    members = client.groups.by_group_id(created.id).members
    await members.ref.post(ReferenceCreate(odata_id=f"{standin.graph_base_url}/directoryObjects/{user_id}"))
    assert standin.tenant.members[created.id] == {user_id: "users"}
    await members.by_directory_object_id(user_id).ref.delete()
    assert standin.tenant.members[created.id] == {}
    await client.groups.by_group_id(created.id).patch(Group(description="patched"))
    assert standin.tenant.get("groups", created.id)["description"] == "patched"
    await client.groups.by_group_id(created.id).delete()
    assert created.id not in standin.tenant.objects["groups"]
    kinds = [m.kind for m in standin.tenant.mutations[1:]]
    assert kinds == ["group.created", "member.added", "member.removed", "group.updated", "group.soft_deleted"]


async def test_subscription_handshake_then_notifications_for_each_mutation(standin: GraphStandin) -> None:
    client = standin_client(standin)
    async with running_receiver() as receiver:
        subscription = await client.subscriptions.post(
            Subscription(
                change_type="updated,deleted",
                notification_url=f"{receiver.url}/graph/notifications",
                lifecycle_notification_url=f"{receiver.url}/graph/lifecycle",
                resource="/groups",
                expiration_date_time=in_minutes(41_000),
                client_state="s3cret",
            )
        )
        assert subscription is not None and subscription.id is not None
        assert len(receiver.validations) == 2  # notificationUrl and lifecycleNotificationUrl
        assert receiver.validations[0].startswith("Validation: ")  # decoded, spaces and all

        soft = standin.tenant.add_group("Soon gone").object_id
        standin.tenant.soft_delete_group(soft)
        standin.tenant.hard_delete_group(soft)
        standin.tenant.add_user("users are not subscribed")
        deliveries = await standin.subscriptions.wait_for_deliveries(3)

    assert [d.status for d in deliveries] == [202, 202, 202]
    notifications = [body["value"][0] for body in receiver.bodies]
    assert [n["changeType"] for n in notifications] == ["updated", "updated", "deleted"]
    first = notifications[0]
    assert first["subscriptionId"] == subscription.id
    assert first["clientState"] == "s3cret"
    assert first["resource"] == f"Groups/{soft}"
    assert first["tenantId"] == standin.tenant_id
    assert first["resourceData"] == {
        "@odata.type": "#Microsoft.Graph.Group",
        "@odata.id": f"Groups/{soft}",
        "id": soft,
        "organizationId": standin.tenant_id,
    }


async def test_subscription_rules_of_graph_are_enforced(standin: GraphStandin) -> None:
    client = standin_client(standin)
    async with running_receiver(echo_token=False) as bad_receiver, running_receiver() as receiver:

        async def create(url: str, **changes: object) -> ODataError:
            fields: dict[str, object] = {
                "change_type": "updated",
                "notification_url": f"{url}/graph/notifications",
                "resource": "/groups",
                "expiration_date_time": in_minutes(60),
                "client_state": "s",
                **changes,
            }
            with pytest.raises(ODataError) as raised:
                await client.subscriptions.post(Subscription(**fields))
            return raised.value

        failed_handshake = await create(bad_receiver.url)
        created_type = await create(receiver.url, change_type="created,updated")
        too_long = await create(receiver.url, expiration_date_time=in_minutes(41_761))
        big_state = await create(receiver.url, client_state="x" * 129)

    assert failed_handshake.response_status_code == 400
    assert failed_handshake.error is not None and failed_handshake.error.code == "ValidationError"
    assert all(e.response_status_code == 400 for e in (created_type, too_long, big_state))
    assert standin.subscriptions.subscriptions == {}
    with pytest.raises(ODataError) as missing:
        await client.subscriptions.by_subscription_id("00000000-0000-0000-0000-000000000000").delete()
    assert missing.value.response_status_code == 404
    assert missing.value.error is not None and missing.value.error.code == "ResourceNotFound"


async def test_lifecycle_notification_pauses_deliveries_until_reauthorized(standin: GraphStandin) -> None:
    client = standin_client(standin)
    async with running_receiver() as receiver:
        subscription = await client.subscriptions.post(
            Subscription(
                change_type="updated",
                notification_url=f"{receiver.url}/graph/notifications",
                lifecycle_notification_url=f"{receiver.url}/graph/lifecycle",
                resource="/users",
                expiration_date_time=in_minutes(60),
                client_state="s",
            )
        )
        assert subscription is not None and subscription.id is not None
        delivery = await standin.send_lifecycle(subscription.id)
        standin.tenant.add_user("missed while paused")
        await client.subscriptions.by_subscription_id(subscription.id).reauthorize.post()
        user_id = standin.tenant.add_user("delivered").object_id
        await standin.subscriptions.wait_for_deliveries(2)

    assert delivery.status == 202 and delivery.kind == "lifecycle"
    assert receiver.bodies[0]["value"][0]["lifecycleEvent"] == "reauthorizationRequired"
    assert [b["value"][0]["resourceData"]["id"] for b in receiver.bodies[1:]] == [user_id]


async def test_sample_tenant_and_trickle_show_up_in_delta_rounds(standin: GraphStandin) -> None:
    synced = [SyncedUser(f"user-{i}", f"0000000{i}-aaaa-bbbb-cccc-dddddddddddd", f"Synced {i}") for i in range(4)]
    sample = seed_demo_tenant(standin.tenant, synced)
    client = standin_client(standin)
    users = await read_round(client, "users", None)
    groups = await read_round(client, "groups", None)

    guids = {u["id"]: u.get("onPremisesObjectIdentifier") for u in users.items}
    assert all(guids[u.id] == u.object_guid for u in synced)
    assert len(sample.cloud_users) == 3 and all(guids[u] is None for u in sample.cloud_users)
    by_name = {g["displayName"]: g for g in groups.items}
    assert by_name["All Staff"]["mailEnabled"] and by_name["Domain Admins (synced)"]["onPremisesSyncEnabled"]
    assert {"id": sample.groups["Platform"], "@odata.type": "#microsoft.graph.group"} in by_name["Engineering"][
        "members@delta"
    ]

    mutations = await trickle(standin.tenant, interval=0, changes=6, seed=1)
    following = await read_round(client, "groups", groups.delta_link)

    assert len(mutations) == 6
    assert {m.object_id for m in mutations if m.resource == "groups"} <= {g["id"] for g in following.items}


async def test_a_directory_extension_is_returned_only_when_selected_and_a_patch_of_it_is_a_delta_change(
    standin: GraphStandin,
) -> None:
    group_id = standin.tenant.add_group("Sales").object_id
    client = standin_client(standin)
    with_extension = [*GROUP_SELECT, WRITEBACK_ENABLED]
    # Cloud Sync's tutorial: PATCH /v1.0/groups/{id} {"extension_<appId>_WritebackEnabled": true}
    await client.groups.by_group_id(group_id).patch(Group(additional_data={WRITEBACK_ENABLED: True}))

    plain = await read_round(client, "groups", None)
    selected = await read_round(client, "groups", None, select=with_extension)
    assert WRITEBACK_ENABLED not in plain.items[0]
    assert selected.items[0][WRITEBACK_ENABLED] is True

    await client.groups.by_group_id(group_id).patch(Group(additional_data={WRITEBACK_ENABLED: False}))
    (changed,) = (await read_round(client, "groups", selected.delta_link)).items
    (changed_plain,) = (await read_round(client, "groups", plain.delta_link)).items  # its own $select still

    assert changed["id"] == group_id and changed[WRITEBACK_ENABLED] is False
    assert changed_plain["id"] == group_id and WRITEBACK_ENABLED not in changed_plain
    with pytest.raises(ValueError, match="extension_<32 hex digits>_<name>"):
        standin.tenant.update_group(group_id, extension_notanappid_WritebackEnabled=True)
