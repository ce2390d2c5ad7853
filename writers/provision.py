"""Converge one desired group and describe the decision as a provisioning-log record.

read by anchor (matching) → resolve nested groups (referenceResolution) → plan → apply (export).
Per-object failures and refusals become failure results; DirectoryUnavailable propagates so
the consumer loop can reconnect and retry the same record.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from schemas.desired import DesiredGroup
from schemas.results import Action, ModifiedAttribute, ProvisioningResult, ProvisioningStep, Status
from writers import dn as dns
from writers.directory import Applied, Directory, only_group
from writers.errors import ObjectError, Refused, WrittenMeanwhile
from writers.reconcile import AdGroup, Plan, Values, plan

StepName = Literal["matching", "referenceResolution", "export"]


@dataclass(frozen=True)
class Convergence:
    """One decision, and what it means for nested groups in any order (writers/pending.py)."""

    result: ProvisioningResult
    missing: frozenset[str]  # anchors of nested groups not in AD yet: the group waits for them
    created: str | None  # the DN, when this convergence created the group: parents may wait for it


def converge(
    directory: Directory,
    desired: DesiredGroup,
    *,
    default_container: str | None,
    writer: str | None,
    containers: Sequence[str] = (),
    found: Mapping[str, list[AdGroup]] | None = None,
) -> Convergence:
    """Converge one group: the decision, with the nested groups it still waits for and whether it was created.

    `found`: what Directory.find_groups read for the whole batch, instead of a read of this group now.
    """
    try:
        return _converge_once(directory, desired, default_container, containers, found, writer=writer)
    except WrittenMeanwhile:
        # Another writer created or moved the group after our read (partitions moving between
        # writers). What it wrote is ours too: converge from what is there now. A second overlap
        # in a row is not expected; it fails the group like any rejected write.
        return _converge_once(directory, desired, default_container, containers, None, writer=writer, again=True)


def _converge_once(
    directory: Directory,
    desired: DesiredGroup,
    default_container: str | None,
    containers: Sequence[str],
    found: Mapping[str, list[AdGroup]] | None,
    *,
    writer: str | None,
    again: bool = False,
) -> Convergence:
    started = time.monotonic()
    steps: list[ProvisioningStep] = []
    current: AdGroup | None = None
    decided: Plan | None = None
    applied = Applied()

    def result(action: Action, status: Status, **fields: object) -> Convergence:
        logged = ProvisioningResult(
            group_id=desired.group_id,
            anchor=desired.anchor,
            action=action,
            status=status,
            steps=steps,
            members_added=applied.members_added,
            members_removed=applied.members_removed,
            warnings=[*(decided.warnings if decided else ()), *applied.warnings],
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            writer=writer,
            source_changed_at=desired.source_changed_at,
            **fields,  # type: ignore[arg-type]
        )
        missing = frozenset(str(m.anchor) for m in decided.unresolved) if decided else frozenset()
        return Convergence(logged, missing, applied.created)

    stage: StepName = "matching"  # the step a failure is reported under
    try:
        if found is None:
            current = directory.find_group(desired.anchor, desired.attributes)
        else:
            current = only_group(desired.anchor, found)
        steps.append(_matching(desired, current))
        stage = "referenceResolution"
        nested_anchors = [m.anchor for m in desired.members if m.type == "group" and m.anchor]
        nested = directory.resolve_groups(nested_anchors) if nested_anchors and desired.state == "present" else {}
        stage = "export"
        decided = plan(
            current,
            desired,
            nested,
            base_dn=directory.base_dn,
            default_container=default_container,
            containers=containers,
        )
        if nested_anchors and desired.state == "present":
            steps.append(_reference_resolution(len(nested_anchors), decided))
        if decided.writes:
            directory.apply(decided, current, applied)
    except (ObjectError, Refused) as exc:
        if isinstance(exc, WrittenMeanwhile) and not again:
            raise
        object_error = exc if isinstance(exc, ObjectError) else None
        steps.append(ProvisioningStep(name=stage, status="failure", description=_export_summary(applied, exc)))
        return result(
            decided.action if decided else _intended_action(desired, current),
            "failure",
            dn=_failed_dn(object_error, decided, current),
            error_code=object_error.code if object_error else None,
            error_message=str(exc),
        )

    warned = bool(decided.warnings or applied.warnings)
    if decided.writes:
        status: Status = "warning" if warned else "success"
        steps.append(ProvisioningStep(name="export", status=status, description=_export_summary(applied)))
    else:
        status = "warning" if warned else "skipped"
        steps.append(ProvisioningStep(name="export", status="skipped", description="AD already matches"))
    return result(decided.action, status, dn=decided.dn, modified=_modified(decided, current))


def _failed_dn(error: ObjectError | None, decided: Plan | None, current: AdGroup | None) -> str | None:
    """The object the failure is about: the one AD named, else where the group is or was going."""
    if error is not None and error.dn:
        return error.dn
    return decided.dn if decided else current.dn if current else None


def _intended_action(desired: DesiredGroup, current: AdGroup | None) -> Action:
    if desired.state == "absent":
        return "delete" if current else "skip"
    return "update" if current else "create"


def _matching(desired: DesiredGroup, current: AdGroup | None) -> ProvisioningStep:
    found = f"found {current.dn} by {desired.anchor}" if current else f"no group in AD has {desired.anchor}"
    return ProvisioningStep(name="matching", status="success", description=found)


def _reference_resolution(wanted: int, decided: Plan) -> ProvisioningStep:
    missing = [str(m.anchor) for m in decided.unresolved]
    description = f"resolved {wanted - len(missing)} of {wanted} nested group(s)"
    if missing:
        description += f"; not in AD yet: {', '.join(missing)}"
    return ProvisioningStep(
        name="referenceResolution", status="warning" if missing else "success", description=description
    )


def _export_summary(applied: Applied, error: Exception | None = None) -> str:
    parts = [*applied.done]
    if applied.members_added or applied.members_removed:
        parts.append(f"members +{applied.members_added} -{applied.members_removed}")
    if error is not None:
        parts.append(f"failed: {error}")
    return "; ".join(parts) or "nothing to change"


def _modified(decided: Plan, current: AdGroup | None) -> list[ModifiedAttribute]:
    """Old → new values for the provisioning log; members are counted, not listed."""
    if decided.action == "create":
        return [
            ModifiedAttribute(name=name, new=value)
            for name, value in decided.create_attributes.items()
            if name != "objectClass"
        ]
    modified = [ModifiedAttribute(name=c.name, old=_shown(c.old), new=_shown(c.new)) for c in decided.changes]
    if decided.relocation is not None and current is not None:
        relocation = decided.relocation
        if relocation.new_cn is not None:
            modified.append(ModifiedAttribute(name="cn", old=_shown(current.values("cn")), new=relocation.new_cn))
        if relocation.new_parent is not None:
            old_parent = dns.split(relocation.old_dn)[1]
            modified.append(
                ModifiedAttribute(name="parentDistinguishedName", old=old_parent, new=relocation.new_parent)
            )
    return modified


def _shown(values: Values) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)
