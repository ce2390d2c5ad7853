"""Microsoft Graph change and lifecycle notifications as they arrive at the webhook.

msgraph-sdk 1.65 has no models for them (microsoftgraph/msgraph-sdk-python#1322), so they are
defined here. Unknown fields are kept (extra="allow") and unknown enum values stay plain strings,
so one odd notification never fails a whole batch.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class ChangeType(StrEnum):
    created = "created"
    updated = "updated"
    deleted = "deleted"


class LifecycleEventType(StrEnum):
    missed = "missed"
    subscription_removed = "subscriptionRemoved"
    reauthorization_required = "reauthorizationRequired"


class ResourceData(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    odata_type: str | None = Field(None, alias="@odata.type")  # "#Microsoft.Graph.Group"
    odata_id: str | None = Field(None, alias="@odata.id")  # "Groups/{id}"
    odata_etag: str | None = Field(None, alias="@odata.etag")
    id: str | None = None


class ChangeNotification(BaseModel):
    """One entry of a delivery: a change notification, or a lifecycle notification."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    id: str | None = None
    subscription_id: str
    subscription_expiration_date_time: dt.datetime | None = None
    tenant_id: str | None = None
    client_state: str | None = None
    change_type: ChangeType | str | None = Field(None, union_mode="left_to_right")
    resource: str | None = None
    resource_data: ResourceData | None = None
    lifecycle_event: LifecycleEventType | str | None = Field(None, union_mode="left_to_right")
    encrypted_content: dict[str, Any] | None = None

    @property
    def is_lifecycle(self) -> bool:
        return self.lifecycle_event is not None


class ChangeNotificationCollection(BaseModel):
    """The body Graph POSTs to notificationUrl and lifecycleNotificationUrl."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    value: list[ChangeNotification]
    validation_tokens: list[str] | None = None


class NotificationBatch(BaseModel):
    """What the webhook persists to graph.notifications: the accepted notifications of one POST."""

    received_at: dt.datetime
    endpoint: str  # "notifications" or "lifecycle"
    notifications: list[ChangeNotification]
