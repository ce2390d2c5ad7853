"""`e2ad provision GROUP_ID`: one group through the pipeline's own code, on demand, step by step.

No second implementation: the group and its members are read from Graph with ingest's $select and
turned into change records by ingest's `normalise`; the processors' core (compiled from the active
configuration) folds them into empty state and derives the desired state; the writer's pure
`plan` reconciles it with AD as the writer reads it. Only the command line may compose the stages.
A dry run writes nothing anywhere; --apply converges the desired state through the writer's group
sink (writers/sweep.py converge_once), which logs the decision on ad.results.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential

from e2ad import provision_report as report
from e2ad.plan import guard_holds
from ingest.delta import USER_SELECT, group_select, normalise
from ingest.graph_client import build_credential, build_graph_client, close_graph_client
from ingest.graph_transport import GraphTransport
from ingest.group_read import GroupRead, read_group
from processors.configuration import compile_core, first_configuration
from processors.deletion_guard import GuardSettings, utc_now
from processors.mapping import MappingError
from processors.provisioning import ProvisioningState
from processors.scoping import ScopeTrace
from processors.state import ProcessorStore
from runtime import kafka
from runtime.active_config import read_active
from runtime.names import instance_name
from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.config import Settings
from schemas.desired import DesiredGroup, anchor_of
from writers.directory import Directory, Named, only_group
from writers.errors import Refused
from writers.reconcile import AdGroup, Plan, plan
from writers.sink import DesiredRecord
from writers.sweep import converge_once

# Where the provisioning log's dead letters say an on-demand desired state came from.
SOURCE = "e2ad provision"
_REMOVED = {"changed": "soft-deleted", "deleted": "deleted"}


class ProvisionError(RuntimeError):
    """The group cannot be provisioned on demand; the message says why."""


class ApplyRefused(ProvisionError):
    """--apply will not perform this: the message says why and what does."""


@dataclass(frozen=True)
class Evaluation:
    """What the processors' core decided for the group: a desired state, a mapping failure, or nothing."""

    desired: DesiredGroup | None
    failure: str | None  # why the mappings fail for the group
    trace: ScopeTrace
    why_nothing: str | None  # when the core publishes nothing: why


@dataclass(frozen=True)
class Outcome:
    """The evaluation and what the writer's side read and planned for it."""

    evaluation: Evaluation
    current: AdGroup | None
    decided: Plan | None
    refused: str | None  # why the writer will not write (writers.errors.Refused)
    nested: dict[str, uuid.UUID]  # the anchors of nested member groups in AD → objectGUID
    names: dict[uuid.UUID, Named]  # the members to add or remove, as AD names them
    conflict: report.AdObject | None


async def provision(
    settings: Settings, group_id: str, *, apply: bool = False, credential: AsyncTokenCredential | None = None
) -> tuple[report.ProvisionReport, int]:
    """The report of one group's provisioning, and the exit code (0, or 1 when --apply failed).

    Raises ApplyRefused before anything is written when --apply may not perform the action.
    """
    started = time.perf_counter()
    active = await read_active(settings.kafka)
    effective, used = _configuration(settings, active)
    job = effective.job
    assert job is not None  # _configuration falls back on the file's
    select = group_attributes(effective)
    fetched = time.perf_counter()
    read = await read_from_graph(settings, group_id, select, credential)
    graph_ms = (time.perf_counter() - fetched) * 1000

    try:
        core = compile_core(settings, effective, users={}, groups={}, parents={})
    except ValueError as exc:  # the processors refuse it too: the one before stays in effect there
        raise ProvisionError(f"the processors cannot use this configuration: {exc}") from None
    job_settings = settings.with_job(job)
    directory = Directory(settings.ad)
    ad_started = time.perf_counter()
    try:
        outcome = await asyncio.to_thread(_evaluate_and_plan, core, read, select, directory, job_settings, group_id)
    finally:
        directory.close()
    ad_ms = (time.perf_counter() - ad_started) * 1000
    result = _report(group_id, read, used, outcome, dry_run=not apply)
    code = 0
    if apply:
        _check_apply(active, outcome)
        assert outcome.evaluation.desired is not None
        if outcome.evaluation.desired.state == "absent":
            await _check_guard(settings, outcome.evaluation.desired)
        statuses = await _apply(job_settings, outcome.evaluation.desired)
        result = result.model_copy(update={"applied": report.Applied(statuses=dict(statuses))})
        # As `e2ad reconcile`: a group the writer could not converge fails the command; a warning
        # (a nested group not in AD yet, which the group then waits for) does not.
        code = 1 if any(statuses.get(status) for status in ("failure", "unconverged", "unusable")) else 0
    total = (time.perf_counter() - started) * 1000
    timings = {"graph": round(graph_ms, 1), "ad": round(ad_ms, 1), "total": round(total, 1)}
    return result.model_copy(update={"timings_ms": timings}), code


def _configuration(
    settings: Settings, active: ActiveConfiguration | None
) -> tuple[ActiveConfiguration, report.ConfigurationUsed]:
    """The configuration the pipeline would use: e2ad.config's; the file's when there is none or it is deleted."""
    if active is not None and active.job is not None:
        return active, report.ConfigurationUsed(version=active.version, state=active.state, source="e2ad.config")
    # What the processors publish as version 1 on an empty e2ad.config, and what they would
    # provision with after the deleted one is replaced by this file's (`e2ad config apply`).
    first = first_configuration(settings.job, changed_by=instance_name("provision"), source=None)
    state = "none" if active is None else active.state
    return first, report.ConfigurationUsed(version=None, state=state, source="file")


def group_attributes(active: ActiveConfiguration) -> list[str]:
    """Ingest's group $select for this configuration, but members: read on their own, with their attributes."""
    return [name for name in group_select(active) if name != "members"]


async def read_from_graph(
    settings: Settings, group_id: str, select: list[str], credential: AsyncTokenCredential | None = None
) -> GroupRead:
    """The group and its members, with a client of its own (one transport: its CAs are loaded once);
    without `credential`, one from graph's settings, as ingest builds it."""
    transport = GraphTransport.from_settings(settings.graph)
    token_source = build_credential(settings.graph, transport) if credential is None else credential
    client = build_graph_client(token_source, settings.graph, transport=transport)
    try:
        return await read_group(client, group_id, select)
    finally:
        await close_graph_client(client)
        if credential is None:  # a credential the caller gave stays the caller's to close
            await token_source.close()


def _evaluate_and_plan(
    core: ProvisioningState, read: GroupRead, select: list[str], directory: Directory, settings: Settings, group_id: str
) -> Outcome:
    """The processors' decision and the writer's plan, with the AD reads they need (blocking: ldap3)."""
    anchor = anchor_of(group_id)
    _fold(core, read, select)
    desired, failure = _desired(core, group_id)
    current = only_group(anchor, directory.find_groups([anchor], desired.attributes if desired else ()))
    if desired is None and failure is None and current is not None:
        # The core deletes only a group it provisioned; its state here is new, and the anchor in
        # AD says the group was provisioned.
        core.kept(group_id)
        desired, failure = _desired(core, group_id)
    evaluation = _evaluation(core, read, group_id, desired, failure, current)
    decided: Plan | None = None
    refused: str | None = None
    nested: dict[str, uuid.UUID] = {}
    if evaluation.desired is not None:
        desired = evaluation.desired
        nested = directory.resolve_groups(m.anchor for m in desired.members if m.type == "group" and m.anchor)
        provisioning = settings.provisioning
        try:
            decided = plan(
                current,
                desired,
                nested,
                base_dn=directory.base_dn,
                default_container=provisioning.target_container,
                containers=provisioning.write_containers,
            )
        except Refused as exc:
            refused = str(exc)
    names = directory.describe(_member_guids(decided)) if decided is not None else {}
    return Outcome(evaluation, current, decided, refused, nested, names, _conflict(directory, decided, anchor))


def _fold(core: ProvisioningState, read: GroupRead, select: list[str]) -> None:
    """Users and nested groups first, as a delta round publishes users before groups; then the group."""
    now = dt.datetime.now(dt.UTC)
    records = [
        *normalise("users", read.of_type("user"), full_round=True, observed_at=now, selected=USER_SELECT),
        *normalise("groups", read.of_type("group"), full_round=True, observed_at=now, selected=select),
        *normalise("groups", [read.group], full_round=True, observed_at=now, selected=select),
    ]
    for record in records:
        core.apply(record)  # what it would publish is asked below, whether published or not


def _desired(core: ProvisioningState, group_id: str) -> tuple[DesiredGroup | None, str | None]:
    """The processors' desired state for the group, or why its mappings fail."""
    try:
        return core.desired(group_id), None
    except MappingError as exc:
        return None, str(exc)


def _evaluation(
    core: ProvisioningState,
    read: GroupRead,
    group_id: str,
    desired: DesiredGroup | None,
    failure: str | None,
    current: AdGroup | None,
) -> Evaluation:
    attributes = {name: value for name, value in read.group.items() if "@" not in name and name != "id"}
    trace = core.scope.trace(group_id, attributes)
    if desired is not None or failure is not None:
        return Evaluation(desired, failure, trace, None)
    if current is None:
        why = "not in AD, and not provisioned: nothing to do"
    else:
        why = "kept in AD: provisioning.on_soft_delete_or_out_of_scope is keep"
    return Evaluation(None, None, trace, why)


def _member_guids(decided: Plan) -> set[uuid.UUID]:
    values = [value for chunk in (*decided.members_to_add, *decided.members_to_remove) for value in chunk]
    return {_guid_of(value) for value in values}


def _guid_of(member_value: str) -> uuid.UUID:
    return uuid.UUID(member_value.removeprefix("<GUID=").removesuffix(">"))


def _conflict(directory: Directory, decided: Plan | None, anchor: str) -> report.AdObject | None:
    """An object that is not this group at the DN a create or a rename/move would write."""
    if decided is None:
        return None
    target = decided.dn if decided.action == "create" else decided.relocation.new_dn if decided.relocation else None
    if target is None:
        return None
    occupant = directory.occupant(target)
    if occupant is None or (occupant.anchor or "").casefold() == anchor.casefold():
        return None
    return report.AdObject(dn=occupant.dn, anchor=occupant.anchor)


# -- the report ---------------------------------------------------------------------------------


def _report(
    group_id: str,
    read: GroupRead,
    used: report.ConfigurationUsed,
    outcome: Outcome,
    *,
    dry_run: bool,
) -> report.ProvisionReport:
    current = outcome.current
    attributes = {name: value for name, value in read.group.items() if "@" not in name}
    return report.ProvisionReport(
        group_id=group_id,
        display_name=attributes.get("displayName"),
        dry_run=dry_run,
        configuration=used,
        import_=_import_step(read, attributes),
        scope=_scope_step(outcome.evaluation.trace),
        match=report.MatchStep(
            anchor=anchor_of(group_id),
            found=None
            if current is None
            else report.AdObject(dn=current.dn, object_guid=str(current.object_guid), anchor=current.anchor),
            conflict=outcome.conflict,
        ),
        action=_action_step(read, outcome),
        timings_ms={},
    )


def _import_step(read: GroupRead, attributes: dict[str, Any]) -> report.ImportStep:
    removed = read.group.get("@removed")
    users, groups = len(read.of_type("user")), len(read.of_type("group"))
    return report.ImportStep(
        in_entra=removed is None,
        removed=_REMOVED[removed["reason"]] if removed else None,
        attributes=attributes,
        members=len(read.members),
        users=users,
        groups=groups,
        other=len(read.members) - users - groups,
    )


def _scope_step(trace: ScopeTrace) -> report.ScopeStep:
    return report.ScopeStep(
        in_scope=trace.decision.in_scope,
        reason=trace.decision.reason,
        security_passed=trace.security.in_scope,
        security_reason=trace.security.reason,
        selected=trace.selected,
        clauses=[
            report.Clause(
                filter=number,
                clause=clause.clause,
                attribute=clause.attribute,
                value=clause.value,
                passed=clause.holds,
                detail=clause.failure,
            )
            for number, clauses in enumerate(trace.filters, 1)
            for clause in clauses
        ],
    )


def _action_step(read: GroupRead, outcome: Outcome) -> report.ActionStep:
    evaluation, current, decided, refused = outcome.evaluation, outcome.current, outcome.decided, outcome.refused
    display = {str(m["id"]): m.get("displayName") for m in read.members}
    kinds = read.member_types()
    desired = evaluation.desired
    skipped = [
        report.SkippedMember(type=kinds.get(s.id, "other"), id=s.id, display_name=display.get(s.id), reason=s.reason)
        for s in (desired.skipped_members if desired else ())
    ]
    empty = report.ActionStep(
        operations=["skip"],
        dn=current.dn if current else None,
        old_dn=None,
        reason="",
        error=None,
        attributes=[],
        members_to_add=[],
        members_to_remove=[],
        members_skipped=skipped,
        warnings=[],
    )
    if evaluation.failure is not None:
        message = evaluation.failure
        return empty.model_copy(update={"reason": "the attribute mapping failed", "error": message})
    if desired is None:
        return empty.model_copy(update={"reason": evaluation.why_nothing})
    if refused is not None or decided is None:
        return empty.model_copy(update={"reason": "the writer refuses to write this group", "error": refused})
    skipped += [
        report.SkippedMember(type="group", id=m.id, display_name=display.get(m.id), reason="nested group not in AD yet")
        for m in decided.unresolved
    ]
    by_guid = _entra_members(desired, outcome.nested)
    names = outcome.names
    return report.ActionStep(
        operations=_operations(decided),
        dn=decided.dn,
        old_dn=decided.relocation.old_dn if decided.relocation else None,
        reason=_action_reason(desired, current, decided),
        error=None,
        attributes=_attribute_changes(decided, current),
        members_to_add=[_member(v, by_guid, names, display) for chunk in decided.members_to_add for v in chunk],
        members_to_remove=[_member(v, by_guid, names, display) for chunk in decided.members_to_remove for v in chunk],
        members_skipped=skipped,
        warnings=[w for w in decided.warnings if "is not in AD yet" not in w],  # those are skipped members
    )


def _operations(decided: Plan) -> list[report.Operation]:
    if decided.action != "update":
        return [decided.action]
    operations: list[report.Operation] = []
    if decided.relocation and decided.relocation.new_cn is not None:
        operations.append("rename")
    if decided.relocation and decided.relocation.new_parent is not None:
        operations.append("move")
    if decided.changes or decided.members_to_add or decided.members_to_remove:
        operations.append("update")
    return operations


def _action_reason(desired: DesiredGroup, current: AdGroup | None, decided: Plan) -> str:
    if desired.state == "absent":
        return desired.reason or "absent"
    if current is None:
        return "in scope and not in AD"
    return "AD differs from the desired state" if decided.writes else "AD matches the desired state"


def _attribute_changes(decided: Plan, current: AdGroup | None) -> list[report.AttributeChange]:
    if decided.action == "create":
        return [
            report.AttributeChange(name=name, old=[], new=[str(value)])
            for name, value in decided.create_attributes.items()
            if name != "objectClass"
        ]
    changes = [report.AttributeChange(name=c.name, old=list(c.old), new=list(c.new)) for c in decided.changes]
    relocation = decided.relocation
    if relocation is not None and current is not None:
        if relocation.new_cn is not None:
            changes.insert(
                0, report.AttributeChange(name="cn", old=list(current.values("cn")), new=[relocation.new_cn])
            )
        if relocation.new_parent is not None:
            old_parent = relocation.old_dn.split(",", 1)[1] if "," in relocation.old_dn else ""
            changes.insert(
                0, report.AttributeChange(name="parentDistinguishedName", old=[old_parent], new=[relocation.parent])
            )
    return changes


def _entra_members(desired: DesiredGroup, nested: dict[str, uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    """objectGUID → (member type, Entra id) of the desired members: users by onPremisesObjectIdentifier,
    nested groups by the objectGUID their anchor resolved to."""
    found: dict[uuid.UUID, tuple[str, str]] = {}
    for member in desired.members:
        if member.type == "group" and (guid := nested.get(member.anchor or "")) is not None:
            found[guid] = ("group", member.id)
        elif member.type == "user" and member.object_guid:
            try:
                found[uuid.UUID(member.object_guid)] = ("user", member.id)
            except ValueError:
                continue  # not a member value the plan adds: it warns about it
    return found


def _member(
    value: str, by_guid: dict[uuid.UUID, tuple[str, str]], names: dict[uuid.UUID, Named], display: dict[str, Any]
) -> report.Member:
    guid = _guid_of(value)
    kind, entra_id = by_guid.get(guid, ("unknown", None))
    named = names.get(guid)
    name = display.get(entra_id) if entra_id else None
    return report.Member(
        type=kind,  # type: ignore[arg-type]
        id=entra_id,
        display_name=name or (named.name if named else None),
        dn=named.dn if named else None,
        object_guid=str(guid),
    )


# -- --apply ------------------------------------------------------------------------------------


def _check_apply(active: ActiveConfiguration | None, outcome: Outcome) -> None:
    evaluation = outcome.evaluation
    if active is not None and active.state != "enabled":
        raise ApplyRefused(
            f"the active configuration (version {active.version}) is {active.state}: nothing is written to AD"
            " (`e2ad config enable`, or `e2ad config apply FILE`); the dry run above shows what it would do"
        )
    if evaluation.failure is not None:
        raise ApplyRefused(f"the attribute mapping fails, nothing to apply: {evaluation.failure}")
    if evaluation.desired is None:
        raise ApplyRefused(f"nothing to apply: {evaluation.why_nothing}")
    if outcome.refused is not None:
        raise ApplyRefused(f"the writer refuses: {outcome.refused}")


async def _check_guard(settings: Settings, desired: DesiredGroup) -> None:
    """Refuse a delete the deletion guard holds: staged already, the guard quarantined, or this one tripping it.

    The guard's state is the processors' (processors.state), read and copied, never written: a delete
    it would let through is applied at once, as Cloud Sync's on-demand provisioning applies it; the
    processors' own delete for the group, released later, then finds nothing left to delete.
    """
    store = ProcessorStore()
    store.load(await kafka.read_latest(settings.kafka, topics.PROCESSORS_STATE))
    guard = GuardSettings(settings.deletes.threshold, settings.deletes.window_seconds)
    if desired.group_id in guard_holds(store.guard, guard, [desired], utc_now()):
        raise ApplyRefused(
            "the deletion guard holds this delete (staged, or a burst of deletes.threshold reached):"
            f" `e2ad deletes list`, then `e2ad deletes approve {desired.group_id}` or reject it"
        )


async def _apply(settings: Settings, desired: DesiredGroup) -> dict[str, int]:
    """Converge through the writer's group sink: AD, then the decision on ad.results (a failure on ad.dead-letter)."""
    record = DesiredRecord(topics.key(desired.group_id), topics.encode(desired), SOURCE, partition=None)
    return dict(await converge_once(settings, [record], name=instance_name("provision")))
