"""Microsoft Graph change and lifecycle notifications as they arrive at the webhook.

msgraph-sdk 1.65 has no models for them (microsoftgraph/msgraph-sdk-python#1322), so they are
defined here. Unknown fields are kept (extra="allow") and unknown enum values stay plain strings,
so one odd notification never fails a whole batch.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
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
    # The shared secret: the webhook checks it, and it is never serialised (not to graph.notifications,
    # not to a log), so that whoever reads the topic cannot forge deliveries.
    client_state: str | None = Field(None, exclude=True)
    change_type: ChangeType | str | None = Field(None, union_mode="left_to_right")
    resource: str | None = None
    resource_data: ResourceData | None = None
    lifecycle_event: LifecycleEventType | str | None = Field(None, union_mode="left_to_right")
    encrypted_content: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _no_second_client_state(self) -> ChangeNotification:
        # Given both as "clientState" and by its field name, the second one would be kept, and
        # serialised, as an extra field.
        if self.model_extra:
            self.model_extra.pop("client_state", None)
        return self

    @property
    def is_lifecycle(self) -> bool:
        return self.lifecycle_event is not None


class ChangeNotificationCollection(BaseModel):
    """The body Graph POSTs to notificationUrl and lifecycleNotificationUrl."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    value: list[ChangeNotification]
    validation_tokens: list[str] | None = None


class NotificationBatch(BaseModel):
    """What the webhook persists to graph.notifications: the accepted notifications of one POST
    (or a part of them: a large delivery is split over several records)."""

    received_at: dt.datetime
    endpoint: str  # "notifications" or "lifecycle"
    # Each notification's clientState matched webhook.client_state, and was removed: the secret
    # is never stored, so whoever reads the topic cannot forge deliveries.
    client_state_matched: bool = False
    notifications: list[ChangeNotification]
