"""Normalised change records on graph.changes, one per changed Entra object, keyed by its id.

The delta reader turns Graph's delta pages into these; processors fold them into state.
`attributes` holds only the properties the delta item carried: processors merge them into
what they already know, so a members-only change does not erase the display name.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

MemberType = Literal["user", "group", "other"]


class MemberRef(BaseModel):
    id: str
    type: MemberType

    @classmethod
    def from_odata(cls, item: dict[str, Any]) -> MemberRef:
        """From a members@delta entry such as {"@odata.type": "#microsoft.graph.user", "id": …}."""
        odata_type = str(item.get("@odata.type", "")).lower()
        kind: MemberType = "other"
        if odata_type.endswith(".user"):
            kind = "user"
        elif odata_type.endswith(".group"):
            kind = "group"
        return cls(id=str(item["id"]), type=kind)


class _Change(BaseModel):
    id: str
    observed_at: dt.datetime  # when the delta reader saw the change
    full_round: bool = False  # True when it comes from a full (initial or resync) delta round
    # Which round: a digest of the delta token it started from (None: a full round, or not known).
    # A round repeated after a crash has the same; the processors tell a restore apart by it.
    round_from: str | None = None


class GroupChanged(_Change):
    kind: Literal["group.changed"] = "group.changed"
    attributes: dict[str, Any] = Field(default_factory=dict)
    members_added: list[MemberRef] = Field(default_factory=list)
    members_removed: list[MemberRef] = Field(default_factory=list)
    # In a full round the group's whole membership arrives as additions; processors then
    # replace what they knew instead of adding to it, so removals missed while away are applied.
    members_complete: bool = False


class GroupRemoved(_Change):
    kind: Literal["group.removed"] = "group.removed"
    reason: Literal["changed", "deleted"]  # Graph's @removed reason: soft-deleted or permanent


class UserChanged(_Change):
    kind: Literal["user.changed"] = "user.changed"
    attributes: dict[str, Any] = Field(default_factory=dict)


class UserRemoved(_Change):
    kind: Literal["user.removed"] = "user.removed"
    reason: Literal["changed", "deleted"]


ChangeRecord = Annotated[GroupChanged | GroupRemoved | UserChanged | UserRemoved, Field(discriminator="kind")]
CHANGE_RECORD: TypeAdapter[ChangeRecord] = TypeAdapter(ChangeRecord)


class DeltaCursor(BaseModel):
    """graph.cursors value, keyed by resource ("groups" / "users"): where the next round starts."""

    resource: str
    delta_link: str
    saved_at: dt.datetime
    # The $select of the full round the delta link descends from: Graph keeps applying that one, so
    # a round asking for other attributes must start over. None: saved before e2ad stored it, when
    # the $select was always ingest's own (ingest/delta.py SELECT).
    select: list[str] | None = None
