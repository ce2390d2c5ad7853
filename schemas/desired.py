"""The desired state of one AD group, as processors publish it to ad.desired (keyed by group id).

It is the whole state, not a diff: the writer reads the group by its anchor and applies the
smallest change, so replays are harmless and drift is repaired (design principle 3).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

# ADS_GROUP_TYPE_SECURITY_ENABLED | ADS_GROUP_TYPE_UNIVERSAL_GROUP (MS-ADTS 2.2.12)
UNIVERSAL_SECURITY_GROUP = -2147483640
ANCHOR_PREFIX = "Group_"

AttributeValue = str | int | None


def anchor_of(group_id: str) -> str:
    """The value of msDS-ExternalDirectoryObjectId that links an AD group to its Entra group."""
    return f"{ANCHOR_PREFIX}{group_id}"


class DesiredMember(BaseModel):
    """A member the writer must put into the group: a user by objectGUID, or a group by anchor."""

    type: Literal["user", "group"]
    id: str  # Entra object id
    object_guid: str | None = None  # users: the AD objectGUID (Entra onPremisesObjectIdentifier)
    anchor: str | None = None  # groups: the nested group's anchor


class SkippedMember(BaseModel):
    id: str
    reason: str  # e.g. "cloud-only user", "group out of scope", "unsupported member type"


class DesiredGroup(BaseModel):
    group_id: str
    anchor: str
    state: Literal["present", "absent"]
    reason: str | None = None  # why absent: "deleted", "soft-deleted", "out of scope"
    container: str | None = None  # the parent DN (parentDistinguishedName)
    # Flowed on create and update; a None value removes the attribute in AD.
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)
    # Flowed only when the group is created (e.g. sAMAccountName).
    create_only: dict[str, AttributeValue] = Field(default_factory=dict)
    members: list[DesiredMember] = Field(default_factory=list)
    skipped_members: list[SkippedMember] = Field(default_factory=list)
    source_changed_at: dt.datetime | None = None  # when ingest observed the change behind this state
