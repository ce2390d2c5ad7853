"""The processors' core: fold Graph changes into state and derive each group's desired AD state.

Pure apart from the mappings it is given, which faust backs with changelogged tables and the
unit tests with plain dicts. Replaying graph.changes into empty mappings reproduces the same
desired states (design principle 2).

State, all keyed by Entra object id:
- users:   the user's last known attributes;
- groups:  attributes, members (id → member type), removal, and the fingerprint of the desired
           state last published, so unchanged states are not published again;
- parents: for each member id, the groups it is a member of — a user or nested group change
           re-evaluates exactly the groups that contain it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, MutableMapping
from typing import Any

from processors.mapping import GroupMapper, MappingError
from processors.scoping import Scope
from schemas.changes import ChangeRecord, GroupChanged, GroupRemoved, UserChanged, UserRemoved
from schemas.config import ProvisioningSettings
from schemas.desired import DesiredGroup, DesiredMember, SkippedMember, anchor_of
from schemas.results import ProvisioningResult, ProvisioningStep

State = MutableMapping[str, Any]
# A desired state for ad.desired, or a failed mapping for the provisioning log (ad.results).
Decision = DesiredGroup | ProvisioningResult


class ProvisioningState:
    def __init__(
        self,
        settings: ProvisioningSettings,
        mapper: GroupMapper,
        scope: Scope,
        *,
        users: State,
        groups: State,
        parents: State,
        paused: bool = False,
        on_premises_users: bool = True,
    ) -> None:
        # Paused (the configuration disabled): the state follows Graph, no desired state is
        # published; reevaluate() publishes what changed meanwhile once enabled again.
        self.paused = paused
        # membership.on_premises_users: whether synced users are written as members.
        self.on_premises_users = on_premises_users
        self.settings = settings
        self.mapper = mapper
        self.scope = scope
        self.users = users
        self.groups = groups
        self.parents = parents

    def apply(self, record: ChangeRecord) -> list[Decision]:
        """Fold one change in; return the desired states that changed because of it."""
        match record:
            case UserChanged():
                self.users[record.id] = {**self.users.get(record.id, {}), **record.attributes}
                affected = self._parents_of(record.id)
            case UserRemoved():
                self.users.pop(record.id, None)
                affected = self._parents_of(record.id)
            case GroupChanged():
                affected = self._group_changed(record)
            case GroupRemoved():
                group = dict(self.groups.get(record.id) or _new_group())
                group["removed"] = record.reason
                group["removed_in"] = record.round_from
                self.groups[record.id] = group
                affected = [record.id, *self._parents_of(record.id)]
        return [d for gid in dict.fromkeys(affected) if (d := self._evaluate(gid, record.observed_at)) is not None]

    def reevaluate(self, observed_at: Any) -> list[Decision]:
        """Every known group's desired state under the current configuration: the ones that changed.

        A new configuration (scope, mappings, membership) is applied to the state, without Graph:
        groups entering the scope are created, groups leaving it deleted (through the deletion
        guard), changed attributes updated. Unchanged states are not published again.
        """
        return [d for gid in list(self.groups) if (d := self._evaluate(gid, observed_at)) is not None]

    def kept(self, group_id: str) -> None:
        """The group's published delete was not applied (rejected, or dropped by a restart): it stays in AD.

        It counts as provisioned again, so that a later delete for another reason (deleted in Entra
        after leaving the scope) reaches AD; the same delete is not published again (its
        fingerprint is the one published), and a return to the scope publishes the group as ever.
        """
        group = self.groups.get(group_id)
        if group is not None and not group.get("provisioned"):
            self.groups[group_id] = {**group, "provisioned": True}

    # -- folding -----------------------------------------------------------------------------
    def _group_changed(self, record: GroupChanged) -> list[str]:
        group = dict(self.groups.get(record.id) or _new_group())
        was_in_scope = self._in_scope(record.id, group)
        group["attributes"] = {**group["attributes"], **record.attributes}
        # A change of a removed group means it was restored. Read by a round that started after
        # the one that saw the delete, its members@delta is relative to a token taken while the
        # group was deleted: the restored group's whole membership, which replaces the one before
        # the delete (members that did not come back with it, like a user deleted meanwhile, are
        # not listed as removed). In the same round repeated (a crash before its cursor was saved)
        # it is relative to a token from before the delete, a difference like any other.
        restored_later = group["removed"] is not None and group.get("removed_in") != record.round_from
        group["removed"] = None
        complete = record.members_complete or restored_later
        members: dict[str, str] = {} if complete else dict(group["members"])
        for ref in record.members_removed:
            members.pop(ref.id, None)
        for ref in record.members_added:
            members[ref.id] = ref.type
        for gone in set(group["members"]) - set(members):
            self._unlink(gone, record.id)
        for new in set(members) - set(group["members"]):
            self._link(new, record.id)
        group["members"] = members
        self.groups[record.id] = group
        # Groups nesting this one must re-evaluate when it enters or leaves the scope.
        nesting = self._parents_of(record.id) if self._in_scope(record.id, group) != was_in_scope else []
        return [record.id, *nesting]

    def _link(self, member_id: str, group_id: str) -> None:
        self.parents[member_id] = sorted({*self.parents.get(member_id, ()), group_id})

    def _unlink(self, member_id: str, group_id: str) -> None:
        remaining = [g for g in self.parents.get(member_id, ()) if g != group_id]
        if remaining:
            self.parents[member_id] = remaining
        else:
            self.parents.pop(member_id, None)

    def _parents_of(self, member_id: str) -> list[str]:
        return list(self.parents.get(member_id, ()))

    # -- evaluation --------------------------------------------------------------------------
    def _in_scope(self, group_id: str, group: dict[str, Any]) -> bool:
        return (
            group["removed"] is None
            and bool(group["attributes"])
            and self.scope.decide(group_id, group["attributes"]).in_scope
        )

    def desired(self, group_id: str) -> DesiredGroup | None:
        """The group's desired state under this configuration, whether or not it was published already.

        None when there is nothing to publish for it (unknown; out of scope and never provisioned;
        kept). Raises MappingError when its mappings fail. Changes nothing, and ignores `paused`:
        `e2ad config plan` asks it what a configuration would publish.
        """
        group = self.groups.get(group_id)
        return None if group is None else self._desired(group_id, group)

    def is_published(self, group_id: str, desired: DesiredGroup) -> bool:
        """Whether this desired state is the one last published for the group: it is not published again."""
        group = self.groups.get(group_id)
        return group is not None and _fingerprint(desired) == group.get("published")

    def _evaluate(self, group_id: str, observed_at: Any) -> Decision | None:
        if self.paused:
            return None
        try:
            desired = self.desired(group_id)
        except MappingError as exc:
            return _mapping_failure(group_id, str(exc), observed_at)
        if desired is None or self.is_published(group_id, desired):
            return None
        self.groups[group_id] = {
            **self.groups[group_id],
            "published": _fingerprint(desired),
            "provisioned": desired.state == "present",
        }
        return desired.model_copy(update={"source_changed_at": observed_at})

    def _desired(self, group_id: str, group: dict[str, Any]) -> DesiredGroup | None:
        anchor = anchor_of(group_id)
        if self._in_scope(group_id, group):
            mapped = self.mapper.map(group_id, group["attributes"])
            members, skipped = self._resolve_members(group["members"].items())
            return DesiredGroup(
                group_id=group_id,
                anchor=anchor,
                state="present",
                container=mapped.container,
                attributes=mapped.attributes,
                create_only=mapped.create_only,
                members=members,
                skipped_members=skipped,
            )
        if not group.get("provisioned"):
            return None  # never provisioned: nothing in AD to remove
        if group["removed"] is None and self.scope.unread(group["attributes"]):
            # A new configuration's filters read attributes this group was not read with yet: it
            # stays as it is until the full round the new $select triggers brings them.
            return None
        reason = _absence_reason(group, self._scope_reason(group_id, group))
        if group["removed"] != "deleted" and self.settings.on_soft_delete_or_out_of_scope == "keep":
            return None
        return DesiredGroup(group_id=group_id, anchor=anchor, state="absent", reason=reason)

    def _scope_reason(self, group_id: str, group: dict[str, Any]) -> str:
        return self.scope.decide(group_id, group["attributes"]).reason

    def _nested_skip_reason(self, group_id: str, group: dict[str, Any] | None) -> str:
        if group is None or not group["attributes"]:
            return "nested group not in scope: not seen yet"
        if group["removed"] is not None:
            return "nested group not in scope: removed in Entra"
        return f"nested group not in scope: {self._scope_reason(group_id, group)}"

    def _resolve_members(self, members: Iterable[tuple[str, str]]) -> tuple[list[DesiredMember], list[SkippedMember]]:
        resolved: list[DesiredMember] = []
        skipped: list[SkippedMember] = []
        for member_id, member_type in sorted(members):
            if member_type == "user":
                if not self.on_premises_users:
                    skipped.append(SkippedMember(id=member_id, reason="membership.on_premises_users is off"))
                    continue
                user = self.users.get(member_id)
                guid = (user or {}).get("onPremisesObjectIdentifier")
                if guid:
                    resolved.append(DesiredMember(type="user", id=member_id, object_guid=str(guid)))
                else:
                    reason = "cloud-only user (no onPremisesObjectIdentifier)" if user else "user not seen yet"
                    skipped.append(SkippedMember(id=member_id, reason=reason))
            elif member_type == "group":
                nested = self.groups.get(member_id)
                if nested is not None and self._in_scope(member_id, nested):
                    resolved.append(DesiredMember(type="group", id=member_id, anchor=anchor_of(member_id)))
                else:
                    skipped.append(SkippedMember(id=member_id, reason=self._nested_skip_reason(member_id, nested)))
            else:
                skipped.append(SkippedMember(id=member_id, reason=f"unsupported member type {member_type}"))
        return resolved, skipped


def _mapping_failure(group_id: str, message: str, observed_at: Any) -> ProvisioningResult:
    return ProvisioningResult(
        group_id=group_id,
        anchor=anchor_of(group_id),
        action="skip",
        status="failure",
        steps=[
            ProvisioningStep(name="scoping", status="success", description="in scope"),
            ProvisioningStep(name="processing", status="failure", description=f"attribute mapping failed: {message}"),
        ],
        error_message=message,
        source_changed_at=observed_at,
    )


def _new_group() -> dict[str, Any]:
    return {"attributes": {}, "members": {}, "removed": None, "published": None, "provisioned": False}


def _absence_reason(group: dict[str, Any], scope_reason: str) -> str:
    if group["removed"] == "deleted":
        return "deleted in Entra"
    if group["removed"] == "changed":
        return "soft-deleted in Entra"
    return f"out of scope: {scope_reason}"


def _fingerprint(desired: DesiredGroup) -> str:
    body = desired.model_dump(mode="json", exclude={"source_changed_at"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
