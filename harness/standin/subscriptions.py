"""The stand-in's change-notification side: subscriptions, the validation handshake and deliveries.

Rules follow Graph's subscription resource for /groups and /users: changeType only updated and
deleted, clientState at most 128 characters, at most 41,760 minutes of lifetime, and both URLs
must echo the validation token (200, text/plain) within 10 s. Deliveries run in the background
with Graph's 3 s client timeout and never block the mutation that caused them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from yarl import URL

from harness.standin.odata import GraphError, graph_time, parse_graph_time
from harness.standin.tenant import Mutation

MAX_MINUTES = 41_760
MAX_CLIENT_STATE = 128
HANDSHAKE_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 3.0
SUPPORTED_CHANGE_TYPES = frozenset({"updated", "deleted"})
RESOURCE_NAMES = {"groups": "Groups", "users": "Users"}
RESOURCE_TYPES = {"groups": "#Microsoft.Graph.Group", "users": "#Microsoft.Graph.User"}


@dataclass(frozen=True)
class Delivery:
    """One POST the stand-in made to a subscriber, and how the subscriber answered."""

    subscription_id: str
    url: str
    kind: Literal["change", "lifecycle"]
    body: dict[str, Any]
    status: int | None  # None when the request failed or timed out
    error: str | None
    elapsed: float
    mutation: Mutation | None


class SubscriptionService:
    def __init__(self, tenant_id: str, application_id: str) -> None:
        self.tenant_id = tenant_id
        self.application_id = application_id
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.deliveries: list[Delivery] = []
        self.handshakes: list[tuple[str, int | None]] = []  # (url, status) of every validation request
        # Graph pauses a subscription after reauthorizationRequired until the app reauthorizes it.
        self.paused: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivered = asyncio.Condition()

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        resource = str(body.get("resource", ""))
        kind = _resource_kind(resource)
        change_types = [c.strip() for c in str(body.get("changeType", "")).split(",") if c.strip()]
        unsupported = [c for c in change_types if c not in SUPPORTED_CHANGE_TYPES]
        if not change_types or unsupported:
            raise GraphError(
                400,
                "InvalidRequest",
                f"changeType {body.get('changeType')!r} is not supported for resource '{resource}' "
                f"({kind} support only updated and deleted)",
            )
        client_state = body.get("clientState")
        if client_state is not None and len(str(client_state)) > MAX_CLIENT_STATE:
            raise GraphError(400, "InvalidRequest", f"clientState is longer than {MAX_CLIENT_STATE} characters")
        expiration = _valid_expiration(body.get("expirationDateTime"))
        urls = [body.get("notificationUrl"), body.get("lifecycleNotificationUrl")]
        if not urls[0]:
            raise GraphError(400, "InvalidRequest", "notificationUrl is required")
        for url in (u for u in urls if u):
            await self._validate_endpoint(str(url))
        subscription_id = str(uuid.uuid4())
        subscription = {
            "id": subscription_id,
            "resource": resource,
            "applicationId": self.application_id,
            "changeType": ",".join(change_types),
            "clientState": client_state,
            "notificationUrl": urls[0],
            "lifecycleNotificationUrl": urls[1],
            "expirationDateTime": graph_time(expiration),
            "creatorId": str(uuid.uuid4()),
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationQueryOptions": None,
            "notificationUrlAppId": None,
        }
        self.subscriptions[subscription_id] = subscription
        return subscription

    def get(self, subscription_id: str) -> dict[str, Any]:
        try:
            return self.subscriptions[subscription_id]
        except KeyError:
            raise GraphError(
                404, "ResourceNotFound", f"The object was not found. Subscription '{subscription_id}' does not exist."
            ) from None

    def renew(self, subscription_id: str, body: dict[str, Any]) -> dict[str, Any]:
        subscription = self.get(subscription_id)
        subscription["expirationDateTime"] = graph_time(_valid_expiration(body.get("expirationDateTime")))
        self.paused.discard(subscription_id)
        return subscription

    def reauthorize(self, subscription_id: str) -> None:
        self.get(subscription_id)
        self.paused.discard(subscription_id)

    def delete(self, subscription_id: str) -> None:
        self.get(subscription_id)
        del self.subscriptions[subscription_id]
        self.paused.discard(subscription_id)

    def notify(self, mutation: Mutation) -> None:
        """Queue one change notification per matching subscription; returns at once."""
        for subscription in list(self.subscriptions.values()):
            if subscription["id"] in self.paused or not _matches(subscription, mutation):
                continue
            body = {"value": [self._change_notification(subscription, mutation)]}
            task = asyncio.get_running_loop().create_task(
                self._post(subscription, subscription["notificationUrl"], "change", body, mutation)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def send_lifecycle(self, subscription_id: str, event: str = "reauthorizationRequired") -> Delivery:
        subscription = self.get(subscription_id)
        url = subscription["lifecycleNotificationUrl"]
        if not url:
            raise ValueError(f"subscription {subscription_id} has no lifecycleNotificationUrl")
        notification = {
            "subscriptionId": subscription_id,
            "subscriptionExpirationDateTime": subscription["expirationDateTime"],
            "tenantId": self.tenant_id,
            "clientState": subscription["clientState"],
            "lifecycleEvent": event,
        }
        if event == "reauthorizationRequired":
            self.paused.add(subscription_id)
        await self._post(subscription, url, "lifecycle", {"value": [notification]}, None)
        return self.deliveries[-1]

    async def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        """Wait until at least count deliveries are recorded (tests)."""
        async with self._delivered:
            await asyncio.wait_for(self._delivered.wait_for(lambda: len(self.deliveries) >= count), timeout)
        return list(self.deliveries)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _change_notification(self, subscription: dict[str, Any], mutation: Mutation) -> dict[str, Any]:
        odata_id = f"{RESOURCE_NAMES[mutation.resource]}/{mutation.object_id}"
        return {
            "subscriptionId": subscription["id"],
            "subscriptionExpirationDateTime": subscription["expirationDateTime"],
            "clientState": subscription["clientState"],
            "changeType": mutation.change_type,
            "resource": odata_id,
            "tenantId": self.tenant_id,
            "resourceData": {
                "@odata.type": RESOURCE_TYPES[mutation.resource],
                "@odata.id": odata_id,
                "id": mutation.object_id,
                "organizationId": self.tenant_id,
            },
        }

    async def _validate_endpoint(self, url: str) -> None:
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        status: int | None = None
        try:
            async with self._client().post(
                URL(url).update_query(validationToken=token),
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=aiohttp.ClientTimeout(total=HANDSHAKE_TIMEOUT),
            ) as response:
                status = response.status
                text = await response.text()
                valid = status == 200 and response.content_type == "text/plain" and text == token
        except (aiohttp.ClientError, TimeoutError):
            valid = False
        self.handshakes.append((url, status))
        if not valid:
            raise GraphError(
                400,
                "ValidationError",
                f"Subscription validation request failed. Notification endpoint {url} must respond with "
                "200 OK and the validation token as text/plain within 10 seconds.",
            )

    async def _post(
        self,
        subscription: dict[str, Any],
        url: str,
        kind: Literal["change", "lifecycle"],
        body: dict[str, Any],
        mutation: Mutation | None,
    ) -> None:
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with self._client().post(
                url, json=body, timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT)
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        delivery = Delivery(subscription["id"], url, kind, body, status, error, time.monotonic() - started, mutation)
        async with self._delivered:
            self.deliveries.append(delivery)
            self._delivered.notify_all()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _resource_kind(resource: str) -> str:
    kind = resource.strip("/").split("/")[0].lower()
    if kind not in RESOURCE_NAMES:
        raise GraphError(400, "InvalidRequest", f"resource '{resource}' is not supported by the stand-in")
    return kind


def _matches(subscription: dict[str, Any], mutation: Mutation) -> bool:
    parts = subscription["resource"].strip("/").lower().split("/")
    if parts[0] != mutation.resource or mutation.change_type not in subscription["changeType"].split(","):
        return False
    return len(parts) == 1 or parts[1] == mutation.object_id.lower()


def _valid_expiration(value: object) -> dt.datetime:
    expiration = parse_graph_time(value, "expirationDateTime")
    now = dt.datetime.now(dt.UTC)
    if expiration <= now:
        raise GraphError(400, "InvalidRequest", f"expirationDateTime {value} is in the past")
    if expiration > now + dt.timedelta(minutes=MAX_MINUTES):
        raise GraphError(
            400,
            "InvalidRequest",
            f"Subscription expiration can only be {MAX_MINUTES} minutes in the future; {value} is later",
        )
    return expiration
