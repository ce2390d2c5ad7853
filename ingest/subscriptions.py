"""The subscription keeper: one Graph subscription each for /groups and /users, kept alive.

It creates what is missing (Graph validates both URLs against the webhook), renews by PATCH
when expiry is near, reauthorizes on a reauthorizationRequired lifecycle event and recreates a
subscription Graph no longer knows (404). Typed SDK models are fine here: a handful of calls a day.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kiota_abstractions.api_error import APIError
from msgraph import GraphServiceClient
from msgraph.generated.models.subscription import Subscription

from ingest.webhook import LIFECYCLE_PATH, NOTIFICATIONS_PATH
from schemas.config import WebhookSettings

log = logging.getLogger(__name__)

RESOURCES = ("/groups", "/users")
# Users and groups support only these; creation and soft deletion arrive as "updated".
CHANGE_TYPE = "updated,deleted"
# Graph refuses an expiration beyond its maximum by its own clock, which may run behind ours.
CLOCK_MARGIN = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class KeptSubscription:
    id: str
    resource: str
    expires_at: dt.datetime


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SubscriptionKeeper:
    def __init__(
        self, client: GraphServiceClient, webhook: WebhookSettings, *, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        if webhook.public_url is None or webhook.client_state is None:
            raise ValueError("webhook.public_url and webhook.client_state are needed to keep Graph subscriptions")
        base = str(webhook.public_url).rstrip("/")
        self.notification_url = base + NOTIFICATIONS_PATH
        self.lifecycle_url = base + LIFECYCLE_PATH
        self._client = client
        self._client_state = webhook.client_state.get_secret_value()
        self._lifetime = dt.timedelta(minutes=webhook.subscription_minutes)
        self._renew_before = dt.timedelta(minutes=webhook.renew_before_minutes)
        self._clock = clock
        self._kept: dict[str, KeptSubscription] = {}
        self._adopted = False

    @property
    def subscriptions(self) -> dict[str, KeptSubscription]:
        """The kept subscription of each resource ("/groups", "/users")."""
        return dict(self._kept)

    async def ensure(self) -> None:
        """Create missing subscriptions and renew those within renew_before_minutes of expiry."""
        if not self._adopted:
            await self._adopt_existing()
            self._adopted = True
        for resource in RESOURCES:
            kept = self._kept.get(resource)
            if kept is None:
                await self._create(resource)
            elif kept.expires_at - self._clock() <= self._renew_before:
                await self._renew(kept)

    async def reauthorize(self, subscription_id: str) -> None:
        """Answer reauthorizationRequired: Graph pauses deliveries until the app reauthorizes."""
        kept = next((k for k in self._kept.values() if k.id == subscription_id), None)
        if kept is None:
            log.warning("reauthorizationRequired for subscription %s, which this keeper does not hold", subscription_id)
            await self.ensure()
            return
        try:
            await self._client.subscriptions.by_subscription_id(kept.id).reauthorize.post()
        except APIError as exc:
            await self._recreate_if_gone(kept, exc)
            return
        log.info("reauthorized subscription %s for %s", kept.id, kept.resource)

    async def _adopt_existing(self) -> None:
        """After a restart, keep using our subscriptions instead of piling up new ones."""
        response = await self._client.subscriptions.get()
        for subscription in (response.value if response else None) or []:
            resource = _normalised(subscription.resource)
            if (
                resource in RESOURCES
                and subscription.id
                and subscription.expiration_date_time
                and subscription.notification_url == self.notification_url
                and subscription.lifecycle_notification_url == self.lifecycle_url
                and subscription.client_state in (None, self._client_state)
            ):
                current = self._kept.get(resource)
                if current is None or subscription.expiration_date_time > current.expires_at:
                    self._kept[resource] = KeptSubscription(
                        subscription.id, resource, subscription.expiration_date_time
                    )
        for kept in self._kept.values():
            log.info("adopted subscription %s for %s (expires %s)", kept.id, kept.resource, kept.expires_at)

    async def _create(self, resource: str) -> None:
        created = await self._client.subscriptions.post(
            Subscription(
                change_type=CHANGE_TYPE,
                notification_url=self.notification_url,
                lifecycle_notification_url=self.lifecycle_url,
                resource=resource,
                expiration_date_time=self._expiration(),
                client_state=self._client_state,
            )
        )
        self._kept[resource] = self._remember(resource, created)
        log.info("created subscription %s for %s", self._kept[resource].id, resource)

    async def _recreate_if_gone(self, kept: KeptSubscription, exc: APIError) -> None:
        """Graph answers 404 for a subscription it dropped: make a new one; anything else is raised."""
        if exc.response_status_code != 404:
            raise exc
        log.warning("subscription %s for %s is gone (404): creating a new one", kept.id, kept.resource)
        await self._create(kept.resource)

    async def _renew(self, kept: KeptSubscription) -> None:
        try:
            renewed = await self._client.subscriptions.by_subscription_id(kept.id).patch(
                Subscription(expiration_date_time=self._expiration())
            )
        except APIError as exc:
            await self._recreate_if_gone(kept, exc)
            return
        self._kept[kept.resource] = self._remember(kept.resource, renewed, kept.id)
        log.info(
            "renewed subscription %s for %s until %s", kept.id, kept.resource, self._kept[kept.resource].expires_at
        )

    def _remember(
        self, resource: str, subscription: Subscription | None, known_id: str | None = None
    ) -> KeptSubscription:
        subscription_id = (subscription.id if subscription else None) or known_id
        if subscription_id is None:
            raise RuntimeError(f"Graph answered the {resource} subscription request without a subscription id")
        expires_at = (subscription.expiration_date_time if subscription else None) or self._expiration()
        return KeptSubscription(subscription_id, resource, expires_at)

    def _expiration(self) -> dt.datetime:
        return self._clock() + self._lifetime - CLOCK_MARGIN


def _normalised(resource: str | None) -> str:
    return "/" + (resource or "").strip("/").lower()
