"""The stand-in's directory: users, groups and memberships, with the change log delta rounds read.

Everything here is in-memory and synchronous, so tests and the demo mutate the tenant directly;
each mutation is recorded with a sequence number (delta tokens point into that sequence) and a
timestamp (tests measure end-to-end latency from it), then handed to the listeners that deliver
change notifications.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.graph import is_directory_extension

Resource = Literal["groups", "users"]
RemovedReason = Literal["changed", "deleted"]

USER_PROPERTIES = frozenset(
    {
        "displayName",
        "userPrincipalName",
        "mail",
        "givenName",
        "surname",
        "accountEnabled",
        "onPremisesObjectIdentifier",
        "onPremisesSecurityIdentifier",
        "onPremisesImmutableId",
        "onPremisesSamAccountName",
        "onPremisesSyncEnabled",
    }
)
GROUP_PROPERTIES = frozenset(
    {
        "displayName",
        "description",
        "securityEnabled",
        "mailEnabled",
        "mailNickname",
        "mail",
        "groupTypes",
        "onPremisesSyncEnabled",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
    }
)
# A directory extension property, as Graph names it: extension_<the owning app's id without hyphens>_<name>
# (entra-provisioning.md §1.3). Any object may carry one; Graph returns it only when $select names it.
ODATA_TYPE = {"users": "#microsoft.graph.user", "groups": "#microsoft.graph.group"}


class UnknownObject(KeyError):
    """No live object with this id (it never existed, or it is deleted)."""

    def __init__(self, resource: str, object_id: str) -> None:
        super().__init__(f"{resource} {object_id!r} does not exist")
        self.resource = resource
        self.object_id = object_id


@dataclass(frozen=True)
class Mutation:
    """One change to the tenant. change_type is what Graph puts in the change notification."""

    seq: int
    kind: str  # "group.created", "group.updated", "member.added", "user.soft_deleted", …
    resource: Resource
    object_id: str
    change_type: Literal["updated", "deleted"]
    at: float  # time.time() when the change happened
    monotonic: float  # time.monotonic(), for latency measurements


@dataclass
class _MemberEvent:
    seq: int
    member_type: Resource
    present: bool


@dataclass
class _Removal:
    seq: int
    reason: RemovedReason
    properties: dict[str, Any]  # kept for a restore
    memberships: dict[str, dict[str, Resource]] = field(default_factory=dict)  # group id -> links to restore


class Tenant:
    """Users, groups and memberships of one fake Entra tenant, and what changed when."""

    def __init__(self, tenant_id: str | None = None) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.objects: dict[Resource, dict[str, dict[str, Any]]] = {"users": {}, "groups": {}}
        self.members: dict[str, dict[str, Resource]] = {}  # group id -> {member id: member resource}
        self.mutations: list[Mutation] = []
        self.listeners: list[Callable[[Mutation], None]] = []
        self._seq = itertools.count(1)
        self._changed: dict[tuple[Resource, str], int] = {}  # last property change / creation / restore
        self._removed: dict[tuple[Resource, str], _Removal] = {}
        self._member_events: dict[str, dict[str, _MemberEvent]] = {}  # group id -> member id -> last event

    @property
    def seq(self) -> int:
        """The sequence number of the latest mutation (0 before any)."""
        return self.mutations[-1].seq if self.mutations else 0

    # -- users -------------------------------------------------------------------------------

    def add_user(self, display_name: str, *, id: str | None = None, **properties: Any) -> Mutation:
        object_id = id or str(uuid.uuid4())
        _check_properties("user", properties, USER_PROPERTIES)
        user = {
            "id": object_id,
            "displayName": display_name,
            "userPrincipalName": properties.pop("userPrincipalName", f"{object_id[:8]}@standin.example"),
            "accountEnabled": True,
            "onPremisesSyncEnabled": None,
            "onPremisesObjectIdentifier": None,
        }
        user.update(properties)
        return self._create("users", user)

    def update_user(self, user_id: str, **properties: Any) -> Mutation:
        _check_properties("user", properties, USER_PROPERTIES)
        return self._update("users", user_id, properties)

    def soft_delete_user(self, user_id: str) -> Mutation:
        return self._remove("users", user_id, "changed")

    def restore_user(self, user_id: str) -> Mutation:
        return self._restore("users", user_id)

    def hard_delete_user(self, user_id: str) -> Mutation:
        return self._remove("users", user_id, "deleted")

    # -- groups ------------------------------------------------------------------------------

    def add_group(self, display_name: str, *, id: str | None = None, **properties: Any) -> Mutation:
        object_id = id or str(uuid.uuid4())
        _check_properties("group", properties, GROUP_PROPERTIES)
        group = {
            "id": object_id,
            "displayName": display_name,
            "description": None,
            "securityEnabled": True,
            "mailEnabled": False,
            "mailNickname": display_name.replace(" ", "").lower() or object_id[:8],
            "groupTypes": [],
            "onPremisesSyncEnabled": None,
        }
        group.update(properties)
        self.members.setdefault(object_id, {})  # a refused second create must not empty the first
        return self._create("groups", group)

    def update_group(self, group_id: str, **properties: Any) -> Mutation:
        _check_properties("group", properties, GROUP_PROPERTIES)
        return self._update("groups", group_id, properties)

    def soft_delete_group(self, group_id: str) -> Mutation:
        return self._remove("groups", group_id, "changed")

    def restore_group(self, group_id: str) -> Mutation:
        return self._restore("groups", group_id)

    def hard_delete_group(self, group_id: str) -> Mutation:
        return self._remove("groups", group_id, "deleted")

    # -- memberships -------------------------------------------------------------------------

    def add_member(self, group_id: str, member_id: str) -> Mutation:
        self.get("groups", group_id)
        member_type = self.resource_of(member_id)
        if member_id in self.members[group_id]:
            raise ValueError(f"{member_id!r} is already a member of group {group_id!r}")
        seq = next(self._seq)
        self._link(seq, group_id, member_id, member_type)
        return self._record(seq, "member.added", "groups", group_id, "updated")

    def remove_member(self, group_id: str, member_id: str) -> Mutation:
        self.get("groups", group_id)
        if member_id not in self.members[group_id]:
            raise ValueError(f"{member_id!r} is not a member of group {group_id!r}")
        seq = next(self._seq)
        self._unlink(seq, group_id, member_id)
        return self._record(seq, "member.removed", "groups", group_id, "updated")

    # -- reads -------------------------------------------------------------------------------

    def get(self, resource: Resource, object_id: str) -> dict[str, Any]:
        try:
            return self.objects[resource][object_id]
        except KeyError:
            raise UnknownObject(resource, object_id) from None

    def deleted_item(self, object_id: str) -> dict[str, Any]:
        """A soft-deleted user or group, as /directory/deletedItems/{id} has it (a purged one is gone)."""
        for resource in ("users", "groups"):
            removal = self._removed.get((resource, object_id))
            if removal is not None and removal.reason == "changed":
                return {"@odata.type": ODATA_TYPE[resource], **removal.properties}
        raise UnknownObject("deletedItem", object_id)

    def resource_of(self, object_id: str) -> Resource:
        for resource in ("users", "groups"):
            if object_id in self.objects[resource]:
                return resource
        raise UnknownObject("directoryObject", object_id)

    def member_refs(self, group_id: str) -> list[dict[str, Any]]:
        """The group's members as Graph lists them: the member's properties plus @odata.type."""
        return [
            {"@odata.type": ODATA_TYPE[kind], **self.objects[kind][mid]} for mid, kind in self.members[group_id].items()
        ]

    def delta_items(self, resource: Resource, since: int | None) -> Iterator[dict[str, Any]]:
        """One delta round's items, unsplit: every live object when since is None, else what changed after since.

        Items carry every property (callers apply $select); a group's membership changes are in
        members@delta. A members-only change carries no properties, as with Prefer: return=minimal.
        """
        if since is None:
            for object_id, properties in self.objects[resource].items():
                item = dict(properties)
                if resource == "groups":
                    item["members@delta"] = [_member_item(m, kind) for m, kind in self.members[object_id].items()]
                yield item
            return
        for object_id, properties in self.objects[resource].items():
            item: dict[str, Any] = {}
            if self._changed.get((resource, object_id), 0) > since:
                item = dict(properties)
            if resource == "groups":
                events = self._member_events.get(object_id, {})
                changed = [_member_item(m, e.member_type, e.present) for m, e in events.items() if e.seq > since]
                if changed:
                    item = {"id": object_id, **item, "members@delta": changed}
            if item:
                yield item
        for (kind, object_id), removal in self._removed.items():
            if kind == resource and removal.seq > since:
                yield {"id": object_id, "@removed": {"reason": removal.reason}}

    # -- internals ---------------------------------------------------------------------------

    def _create(self, resource: Resource, properties: dict[str, Any]) -> Mutation:
        object_id = properties["id"]
        if object_id in self.objects[resource] or (resource, object_id) in self._removed:
            raise ValueError(f"{resource} {object_id!r} already exists")
        seq = next(self._seq)
        self.objects[resource][object_id] = properties
        self._changed[(resource, object_id)] = seq
        return self._record(seq, f"{resource[:-1]}.created", resource, object_id, "updated")

    def _update(self, resource: Resource, object_id: str, properties: dict[str, Any]) -> Mutation:
        self.get(resource, object_id).update(properties)
        seq = next(self._seq)
        self._changed[(resource, object_id)] = seq
        return self._record(seq, f"{resource[:-1]}.updated", resource, object_id, "updated")

    def _remove(self, resource: Resource, object_id: str, reason: RemovedReason) -> Mutation:
        seq = next(self._seq)
        removal = self._removed.get((resource, object_id))
        if removal is not None and removal.reason == "changed" and reason == "deleted":
            removal.seq, removal.reason = seq, "deleted"  # purging a soft-deleted object
        else:
            properties = self.objects[resource].pop(object_id, None)
            if properties is None:
                raise UnknownObject(resource, object_id)
            removal = _Removal(seq, reason, properties)
            # A deleted object leaves every group it was in; a restore brings the links back.
            for group_id, links in self.members.items():
                if object_id in links:
                    removal.memberships[group_id] = {object_id: links[object_id]}
                    self._unlink(seq, group_id, object_id)
            if resource == "groups":
                # Its member changes so far stay reported: a delta round from before the delete that
                # reads the group after its restore still sees a member removed before the delete.
                removal.memberships[object_id] = self.members.pop(object_id)
            self._removed[(resource, object_id)] = removal
        self._changed.pop((resource, object_id), None)
        kind = "soft_deleted" if reason == "changed" else "hard_deleted"
        # Graph notifies a soft delete as "updated" and only a permanent delete as "deleted".
        change_type: Literal["updated", "deleted"] = "updated" if reason == "changed" else "deleted"
        return self._record(seq, f"{resource[:-1]}.{kind}", resource, object_id, change_type)

    def _restore(self, resource: Resource, object_id: str) -> Mutation:
        removal = self._removed.get((resource, object_id))
        if removal is None or removal.reason != "changed":
            raise UnknownObject(f"deleted {resource}", object_id)
        del self._removed[(resource, object_id)]
        seq = next(self._seq)
        self.objects[resource][object_id] = removal.properties
        self._changed[(resource, object_id)] = seq
        if resource == "groups":
            self.members[object_id] = {}
        for group_id, links in removal.memberships.items():
            for member_id, member_type in links.items():
                if group_id in self.members and member_id in self.objects[member_type]:
                    self._link(seq, group_id, member_id, member_type)
                elif group_id == object_id:  # deleted meanwhile: it did not come back with the group
                    self._member_events.setdefault(group_id, {})[member_id] = _MemberEvent(seq, member_type, False)
        return self._record(seq, f"{resource[:-1]}.restored", resource, object_id, "updated")

    def _link(self, seq: int, group_id: str, member_id: str, member_type: Resource) -> None:
        self.members[group_id][member_id] = member_type
        self._member_events.setdefault(group_id, {})[member_id] = _MemberEvent(seq, member_type, True)

    def _unlink(self, seq: int, group_id: str, member_id: str) -> None:
        member_type = self.members[group_id].pop(member_id)
        self._member_events.setdefault(group_id, {})[member_id] = _MemberEvent(seq, member_type, False)

    def _record(
        self, seq: int, kind: str, resource: Resource, object_id: str, change_type: Literal["updated", "deleted"]
    ) -> Mutation:
        mutation = Mutation(seq, kind, resource, object_id, change_type, time.time(), time.monotonic())
        self.mutations.append(mutation)
        for listener in self.listeners:
            listener(mutation)
        return mutation


def _member_item(member_id: str, member_type: Resource, present: bool = True) -> dict[str, Any]:
    item: dict[str, Any] = {"@odata.type": ODATA_TYPE[member_type], "id": member_id}
    if not present:
        item["@removed"] = {"reason": "deleted"}
    return item


def _check_properties(kind: str, properties: Iterable[str], known: frozenset[str]) -> None:
    unknown = sorted(name for name in set(properties) - known if not is_directory_extension(name))
    if unknown:
        raise ValueError(
            f"unknown {kind} properties {unknown}; known: {sorted(known)} and extension_<32 hex digits>_<name>"
        )
