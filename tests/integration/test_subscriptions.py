"""The subscription keeper against the stand-in, with a small webhook answering the handshake."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from harness.standin import GraphStandin, running_standin
from ingest.subscriptions import SubscriptionKeeper
from schemas.config import WebhookSettings
from tests.fakes import WebhookReceiver, running_receiver, standin_client


class Clock:
    def __init__(self) -> None:
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin() as standin:
        yield standin


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as receiver:
        yield receiver


def webhook(receiver: WebhookReceiver) -> WebhookSettings:
    return WebhookSettings(
        public_url=receiver.url, client_state="kept-secret", subscription_minutes=60, renew_before_minutes=30
    )


def graph_writes(standin: GraphStandin) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in standin.requests_to("/subscriptions") if r.method != "GET"]


async def test_ensure_creates_one_validated_subscription_per_resource(
    standin: GraphStandin, receiver: WebhookReceiver
) -> None:
    keeper = SubscriptionKeeper(standin_client(standin), webhook(receiver))

    await keeper.ensure()
    await keeper.ensure()  # nothing near expiry: no further writes

    subscriptions = list(standin.subscriptions.subscriptions.values())
    assert sorted(s["resource"] for s in subscriptions) == ["/groups", "/users"]
    for subscription in subscriptions:
        assert subscription["changeType"] == "updated,deleted"
        assert subscription["notificationUrl"] == f"{receiver.url}/graph/notifications"
        assert subscription["lifecycleNotificationUrl"] == f"{receiver.url}/graph/lifecycle"
        assert subscription["clientState"] == "kept-secret"
    assert len(receiver.validations) == 4  # both URLs of both subscriptions
    assert graph_writes(standin) == [("POST", "/v1.0/subscriptions")] * 2
    lifetime = keeper.subscriptions["/groups"].expires_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=58) < lifetime <= dt.timedelta(minutes=60)

    group_id = standin.tenant.add_group("notified").object_id
    (delivery,) = await standin.subscriptions.wait_for_deliveries(1)
    assert delivery.status == 202
    assert receiver.bodies[0]["value"][0]["resourceData"]["id"] == group_id


async def test_renews_near_expiry(standin: GraphStandin, receiver: WebhookReceiver) -> None:
    clock = Clock()
    keeper = SubscriptionKeeper(standin_client(standin), webhook(receiver), clock=clock)
    await keeper.ensure()
    before = keeper.subscriptions

    clock.offset = dt.timedelta(minutes=31)  # 29 minutes left, renew_before is 30
    await keeper.ensure()

    after = keeper.subscriptions
    assert {r: s.id for r, s in after.items()} == {r: s.id for r, s in before.items()}
    assert all(after[r].expires_at - before[r].expires_at >= dt.timedelta(minutes=30) for r in after)
    patches = [p for m, p in graph_writes(standin) if m == "PATCH"]
    assert sorted(patches) == sorted(f"/v1.0/subscriptions/{s.id}" for s in before.values())


async def test_reauthorize_resumes_a_paused_subscription(standin: GraphStandin, receiver: WebhookReceiver) -> None:
    keeper = SubscriptionKeeper(standin_client(standin), webhook(receiver))
    await keeper.ensure()
    groups = keeper.subscriptions["/groups"]
    await standin.send_lifecycle(groups.id)
    assert groups.id in standin.subscriptions.paused

    await keeper.reauthorize(groups.id)

    assert groups.id not in standin.subscriptions.paused
    assert ("POST", f"/v1.0/subscriptions/{groups.id}/reauthorize") in graph_writes(standin)


async def test_subscription_gone_is_recreated_on_renew_and_reauthorize(
    standin: GraphStandin, receiver: WebhookReceiver
) -> None:
    clock = Clock()
    keeper = SubscriptionKeeper(standin_client(standin), webhook(receiver), clock=clock)
    await keeper.ensure()
    old = keeper.subscriptions
    standin.subscriptions.delete(old["/groups"].id)
    standin.subscriptions.delete(old["/users"].id)

    await keeper.reauthorize(old["/groups"].id)
    clock.offset = dt.timedelta(minutes=31)
    await keeper.ensure()  # the /users renewal gets 404

    new = keeper.subscriptions
    assert new["/groups"].id != old["/groups"].id and new["/users"].id != old["/users"].id
    assert set(standin.subscriptions.subscriptions) == {new["/groups"].id, new["/users"].id}


async def test_a_restarted_keeper_adopts_its_subscriptions(standin: GraphStandin, receiver: WebhookReceiver) -> None:
    first = SubscriptionKeeper(standin_client(standin), webhook(receiver))
    await first.ensure()

    restarted = SubscriptionKeeper(standin_client(standin), webhook(receiver))
    await restarted.ensure()

    assert restarted.subscriptions == first.subscriptions
    assert len(standin.subscriptions.subscriptions) == 2


async def test_keeper_needs_a_public_url() -> None:
    with pytest.raises(ValueError, match="public_url"):
        SubscriptionKeeper(object(), WebhookSettings())  # type: ignore[arg-type]
