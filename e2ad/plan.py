"""`e2ad config plan`: what applying a configuration would do in AD, from the processors' state and one AD read.

The stages' own code decides: the processors' core (processors/provisioning.py) gives each group's
desired state under the configuration and whether it differs from the one published, the
deletion guard (fed a copy of its state) whether the deletes would be held, and the writer's pure
reconciliation (writers/reconcile.py) the change in AD. Nothing is written anywhere.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from rich import box
from rich.console import Console
from rich.table import Column, Table

from processors.deletion_guard import DeletionGuard, GuardSettings
from processors.mapping import MappingError
from processors.provisioning import ProvisioningState
from schemas.desired import DesiredGroup
from writers.directory import Directory, only_group
from writers.errors import ObjectError, Refused
from writers.reconcile import AdGroup, Plan, plan

PlannedAction = Literal["create", "update", "delete", "fail"]


class AttributeDiff(BaseModel):
    name: str
    old: list[str]
    new: list[str]  # empty: the attribute is removed


class GroupPlan(BaseModel):
    """One group AD would change for (or fail for) once the configuration is applied."""

    group_id: str
    display_name: str | None
    action: PlannedAction
    dn: str | None  # where the group is afterwards; for a delete, where it is now
    old_dn: str | None = None  # before a rename or a move
    renamed: bool = False
    moved: bool = False
    attributes: list[AttributeDiff] = []
    members_added: int = 0
    members_removed: int = 0
    waiting_for: int = 0  # nested groups that are not in AD and are not created by this plan either
    reason: str | None = None  # a delete: why the group goes (deleted in Entra, out of scope: …)
    held: bool = False  # a delete the deletion guard would stage for an operator (`e2ad deletes list`)
    error: str | None = None  # a failure: the mapping error, or why the writer would refuse


class PlanSummary(BaseModel):
    created: int
    updated: int
    renamed: int
    moved: int
    deleted: int
    held: int
    failed: int
    unchanged: int


class ConfigurationPlan(BaseModel):
    """`e2ad config plan --json` (docs/operations.md)."""

    file: str
    digest: str
    active_version: int
    active_digest: str | None
    active_state: str
    changes: bool
    summary: PlanSummary
    groups: list[GroupPlan]  # sorted by action, then display name, then id


def published_changes(core: ProvisioningState) -> tuple[list[DesiredGroup], list[GroupPlan]]:
    """The desired states the configuration would publish (they differ from the ones published), and its failures."""
    publish: list[DesiredGroup] = []
    failed: list[GroupPlan] = []
    for group_id in sorted(core.groups):
        try:
            desired = core.desired(group_id)
        except MappingError as exc:
            failed.append(_failure(group_id, _display_name(core, group_id), str(exc), None))
            continue
        if desired is not None and not core.is_published(group_id, desired):
            publish.append(desired)
    return publish, failed


def read_directory(
    directory: Directory, desired: Sequence[DesiredGroup]
) -> tuple[dict[str, list[AdGroup]], dict[str, uuid.UUID]]:
    """The one AD read: the groups by their anchors (as the writer reads a batch), and the nested groups'."""
    managed = {name for state in desired for name in state.attributes}
    found = directory.find_groups([state.anchor for state in desired], managed) if desired else {}
    nested = sorted({m.anchor for s in desired for m in s.members if m.type == "group" and m.anchor})
    return found, directory.resolve_groups(nested) if nested else {}


def plan_groups(
    core: ProvisioningState,
    desired: Sequence[DesiredGroup],
    found: Mapping[str, list[AdGroup]],
    resolved: Mapping[str, uuid.UUID],
    *,
    base_dn: str,
    default_container: str | None,
    containers: Sequence[str],
) -> list[GroupPlan]:
    """Each published desired state through the writer's reconciliation; the ones that would write or fail."""
    current: dict[str, AdGroup | None] = {}
    planned: list[GroupPlan] = []
    for state in desired:
        try:
            current[state.group_id] = only_group(state.anchor, found)
        except ObjectError as exc:
            planned.append(_failure(state.group_id, _display_name(core, state.group_id), str(exc), None))
    # A nested group this plan creates is added to its parents once created (the writer waits for
    # it, writers/pending.py): it counts as an added member, under a stand-in objectGUID.
    created = {s.anchor: uuid.uuid5(uuid.NAMESPACE_URL, s.anchor) for s in desired if _creates(s, current)}
    nested = {**created, **resolved}
    for state in desired:
        if state.group_id not in current:
            continue
        ad_group = current[state.group_id]
        name = _display_name(core, state.group_id)
        try:
            decided = plan(
                ad_group, state, nested, base_dn=base_dn, default_container=default_container, containers=containers
            )
        except Refused as exc:
            planned.append(_failure(state.group_id, name, str(exc), ad_group))
            continue
        if decided.writes:
            planned.append(_group_plan(state, name, decided, ad_group))
    return planned


def guard_holds(
    guard_state: Mapping[str, Any], settings: GuardSettings, publish: Iterable[DesiredGroup], now: dt.datetime
) -> set[str]:
    """The deletes among `publish` the deletion guard would stage, fed to a copy of its state as one burst at `now`.

    An apply's desired states reach the guard together (the processors evaluate every group at
    once), present ones too: a group coming back drops the delete the guard holds for it.
    """
    guard = DeletionGuard.from_state(dict(guard_state), settings, clock=lambda: now)
    deletes = set()
    for desired in publish:
        guard.decide(desired)
        if desired.state == "absent":
            deletes.add(desired.group_id)
    return set(guard.staged) & deletes


def summarise(groups: Sequence[GroupPlan], unchanged: int) -> PlanSummary:
    def count(action: PlannedAction) -> int:
        return sum(g.action == action for g in groups)

    return PlanSummary(
        created=count("create"),
        updated=count("update"),
        renamed=sum(g.renamed for g in groups),
        moved=sum(g.moved for g in groups),
        deleted=count("delete"),
        held=sum(g.held for g in groups),
        failed=count("fail"),
        unchanged=unchanged,
    )


def ordered(groups: Iterable[GroupPlan]) -> list[GroupPlan]:
    rank = {"fail": 0, "delete": 1, "create": 2, "update": 3}
    return sorted(groups, key=lambda g: (rank[g.action], (g.display_name or "").casefold(), g.group_id))


def _creates(state: DesiredGroup, current: Mapping[str, AdGroup | None]) -> bool:
    return state.state == "present" and state.group_id in current and current[state.group_id] is None


def _group_plan(state: DesiredGroup, name: str | None, decided: Plan, current: AdGroup | None) -> GroupPlan:
    if decided.action == "create":
        attributes = [AttributeDiff(name=k, old=[], new=[str(v)]) for k, v in decided.create_attributes.items()]
    else:
        attributes = [AttributeDiff(name=c.name, old=list(c.old), new=list(c.new)) for c in decided.changes]
    relocation = decided.relocation
    return GroupPlan(
        group_id=state.group_id,
        display_name=name,
        action=decided.action,  # type: ignore[arg-type]  # a plan that writes is never a skip
        dn=decided.dn,
        old_dn=relocation.old_dn if relocation else None,
        renamed=bool(relocation and relocation.new_cn is not None),
        moved=bool(relocation and relocation.new_parent is not None),
        attributes=attributes,
        members_added=sum(len(chunk) for chunk in decided.members_to_add),
        members_removed=sum(len(chunk) for chunk in decided.members_to_remove),
        waiting_for=len(decided.unresolved),
        reason=state.reason if state.state == "absent" else None,
    )


def _failure(group_id: str, name: str | None, error: str, current: AdGroup | None) -> GroupPlan:
    return GroupPlan(
        group_id=group_id, display_name=name, action="fail", dn=current.dn if current else None, error=error
    )


def _display_name(core: ProvisioningState, group_id: str) -> str | None:
    name = (core.groups.get(group_id) or {}).get("attributes", {}).get("displayName")
    return name if isinstance(name, str) else None


def configuration_plan(
    core: ProvisioningState,
    guard_state: Mapping[str, Any],
    guard_settings: GuardSettings,
    directory: Directory,
    *,
    default_container: str | None,
    containers: Sequence[str],
    now: dt.datetime,
) -> tuple[list[GroupPlan], int]:
    """The groups the configuration would change or fail for, and how many it leaves unchanged."""
    publish, failed = published_changes(core)
    found, resolved = read_directory(directory, publish)
    planned = plan_groups(
        core,
        publish,
        found,
        resolved,
        base_dn=directory.base_dn,
        default_container=default_container,
        containers=containers,
    )
    held = guard_holds(guard_state, guard_settings, publish, now)
    planned = [g.model_copy(update={"held": g.action == "delete" and g.group_id in held}) for g in planned]
    return ordered([*failed, *planned]), len(core.groups) - len(planned) - len(failed)


def render(result: ConfigurationPlan, console: Console) -> None:
    """The plan for a person: one table of the groups, one of the attribute changes, a summary."""
    was = f"version {result.active_version} ({result.active_state}, {result.active_digest})"
    console.print(f"Plan: {result.file} ({result.digest}) instead of {was}", soft_wrap=True)
    if result.groups:
        # Ids and DNs are folded, never cut short: an operator copies them into the next command.
        groups = Table(
            Column("ACTION", no_wrap=True),
            Column("GROUP", min_width=36, overflow="fold"),
            Column("DN", overflow="fold"),
            Column("CHANGE", overflow="fold"),
            box=box.SIMPLE_HEAD,
        )
        for group in result.groups:
            label = f"{group.display_name or '-'}\n{group.group_id}"
            groups.add_row(group.action, label, group.dn or "-", _change(group))
        console.print(groups)
    changes = [(g, a) for g in result.groups if g.action == "update" for a in g.attributes]
    if changes:
        attributes = Table(
            *(Column(name, overflow="fold") for name in ("GROUP", "ATTRIBUTE", "OLD", "NEW")), box=box.SIMPLE_HEAD
        )
        for group, attribute in changes:
            attributes.add_row(
                group.display_name or group.group_id, attribute.name, _values(attribute.old), _values(attribute.new)
            )
        console.print(attributes)
    s = result.summary
    console.print(
        f"{s.created} to create, {s.updated} to update ({s.renamed} renamed, {s.moved} moved), {s.deleted} to delete"
        f" ({s.held} held by the deletion guard), {s.failed} failing, {s.unchanged} unchanged",
        soft_wrap=True,
    )
    if s.held:
        console.print(
            "the deletion guard stages the held deletes: `e2ad deletes list` shows them once applied,"
            " `e2ad deletes approve|reject` decides",
            soft_wrap=True,
        )
    if result.active_state == "disabled":
        console.print(
            "the configuration is disabled: nothing changes in AD until `e2ad config enable`, which does the above",
            soft_wrap=True,
        )


def _change(group: GroupPlan) -> str:
    lines: list[str] = []
    if group.action == "fail":
        lines.append(group.error or "")
    if group.action == "delete":
        lines.append(group.reason or "")
        if group.held:
            lines.append("held by the deletion guard")
    if group.renamed or group.moved:
        how = " and ".join(word for word, done in (("renamed", group.renamed), ("moved", group.moved)) if done)
        lines.append(f"{how} from {group.old_dn}")
    if group.action == "update" and group.attributes:
        lines.append(", ".join(a.name for a in group.attributes))
    if group.members_added or group.members_removed:
        lines.append(f"members +{group.members_added} -{group.members_removed}")
    if group.waiting_for:
        lines.append(f"waits for {group.waiting_for} nested group(s) not in AD")
    return "\n".join(lines)


def _values(values: list[str]) -> str:
    return "; ".join(values) if values else "-"
