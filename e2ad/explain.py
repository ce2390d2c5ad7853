"""`e2ad explain`: why one group is not in AD, or not as expected, from the stages' latest records.

The facts are read by the command (processors.state, e2ad.config, ad.results, ad.pending,
e2ad.status); diagnose() turns them into a few lines, the reason, and the command that fixes or
retries it. Scope and mappings are decided by the processors' own core under the active
configuration, so the reason is the one the processors acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Column, Table

from processors.mapping import MappingError
from processors.provisioning import ProvisioningState
from schemas.active import ActiveConfiguration
from schemas.deletes import DeletionTrip, HeldDelete
from schemas.desired import ANCHOR_PREFIX, DesiredGroup
from schemas.pending import PendingGroup
from schemas.results import ProvisioningResult
from schemas.status import WriterStatus

APPLY = "fix the configuration, check it with `e2ad config plan FILE`, then `e2ad config apply FILE`"


@dataclass(frozen=True)
class Facts:
    group_id: str
    active: ActiveConfiguration | None
    group: dict[str, Any] | None  # the group's record on processors.state
    core: ProvisioningState | None  # the processors' core under the active configuration
    held: HeldDelete | None  # the deletion guard's record of the group
    trip: DeletionTrip | None
    result: ProvisioningResult | None  # the latest provisioning-log record on ad.results
    pending: PendingGroup | None  # the writer's wait for nested groups on ad.pending
    writers: Sequence[WriterStatus] = ()


@dataclass
class Explanation:
    reason: str
    fix: str | None
    lines: list[tuple[str, str]] = field(default_factory=list)  # what was looked at, and what it says


def diagnose(facts: Facts) -> Explanation:
    """The facts as lines, and the first of them that explains the group's state in AD."""
    lines = [("configuration", _configuration(facts.active))]
    if facts.active is None or facts.active.job is None:
        return Explanation("nothing is provisioned: there is no active configuration", _apply_file(), lines)
    if facts.group is None or facts.core is None:
        reason = "the processors have not seen this group in a delta round (or it is not a group's object id)"
        return Explanation(reason, "`e2ad restart` runs a full delta round; check the id in Entra", lines)
    found = _group_lines(facts, lines)
    if found is not None:
        return Explanation(*found, lines)
    if facts.active.state == "disabled":
        return Explanation("the configuration is disabled: nothing is written to AD", "`e2ad config enable`", lines)
    if facts.pending is not None:
        nested = ", ".join(_group_id(anchor) for anchor in facts.pending.missing)
        reason = f"its writer waits for nested group(s) not in AD yet: {nested}"
        return Explanation(reason, f"`e2ad explain {nested.split(', ')[0]}` says why that group is not in AD", lines)
    result = facts.result
    if result is not None and result.status == "failure":
        code = f"LDAP error {result.error_code}: " if result.error_code is not None else ""
        fix = f"fix the cause, then `e2ad provision {facts.group_id} --apply` retries it"
        if any(w.state != "running" for w in facts.writers):
            fix += "; `e2ad quarantine clear` lets the quarantined writers write again"
        return Explanation(f"the last {result.action} failed: {code}{result.error_message}", fix, lines)
    if result is None:
        return Explanation("no writer has decided on it yet (nothing on ad.results)", None, lines)
    return Explanation(f"AD matches its desired state as of the last {result.action} ({result.status})", None, lines)


def _group_lines(facts: Facts, lines: list[tuple[str, str]]) -> tuple[str, str | None] | None:
    """Lines for the group's state, scope, mapping, guard and log; the reason and fix when one of them explains it."""
    assert facts.group is not None and facts.core is not None
    attributes = facts.group.get("attributes", {})
    name = attributes.get("displayName") or "-"
    removed = {"deleted": "deleted in Entra", "changed": "soft-deleted in Entra"}.get(facts.group.get("removed") or "")
    members = len(facts.group.get("members", {}))
    lines.append(("Entra", f"{name}: {removed or 'present'}, {members} member(s) (the processors' state)"))
    decision = facts.core.scope.decide(facts.group_id, attributes)
    lines.append(("scope", "in scope" if decision.in_scope else f"out of scope: {decision.reason}"))
    mapping_error: str | None = None
    try:
        lines.append(("desired state", _desired(facts.core.desired(facts.group_id))))
    except MappingError as exc:
        mapping_error = str(exc)
        lines.append(("desired state", f"attribute mapping failed: {exc}"))
    held = facts.held if facts.held is not None and facts.held.status != "counted" else None
    if held is not None:
        state = "staged" if held.status == "staged" else "pending, released after the window"
        trip = f" (trip {_time(facts.trip.since)})" if facts.trip and held.status == "staged" else ""
        lines.append(("deletion guard", f"delete {state} since {_time(held.arrived_at)}{trip}"))
    if facts.result is not None:
        lines.append(("provisioning log", _result(facts.result)))
    if facts.pending is not None:
        lines.append(("waiting for", ", ".join(facts.pending.missing)))

    if held is not None and held.status == "staged":
        approve = f"`e2ad deletes approve {facts.group_id}` deletes it in AD"
        return "its delete is held by the deletion guard", f"{approve}, `e2ad deletes reject {facts.group_id}` keeps it"
    if held is not None:
        return "its delete waits for the deletion guard's window (deletes.window_seconds)", None
    if removed:
        return f"it is {removed}", "restore it in Entra (`e2ad restart` if the restore is not picked up)"
    if not decision.in_scope:
        return f"it is out of scope: {decision.reason}", APPLY
    if mapping_error is not None:
        return f"its attribute mapping fails: {mapping_error}", APPLY
    return None


def render(explanation: Explanation, group_id: str, console: Console) -> None:
    table = Table(
        Column(no_wrap=True),
        Column(overflow="fold"),
        show_header=False,
        box=box.SIMPLE,
        title=f"group {group_id}",
        title_justify="left",
    )
    for what, detail in explanation.lines:
        table.add_row(what, detail)
    console.print(table)
    console.print(f"why: {explanation.reason}", soft_wrap=True)
    console.print(f"fix: {explanation.fix}" if explanation.fix else "fix: nothing to do", soft_wrap=True)


def _configuration(active: ActiveConfiguration | None) -> str:
    if active is None:
        return "none on e2ad.config"
    return f"version {active.version} ({active.state}), changed {_time(active.changed_at)} by {active.changed_by}"


def _desired(desired: DesiredGroup | None) -> str:
    if desired is None:
        return "none to publish (never provisioned, or its removal was published already)"
    if desired.state == "absent":
        return f"absent ({desired.reason})"
    return f"present: {desired.attributes.get('cn')} in {desired.container}, {len(desired.members)} member(s)"


def _result(result: ProvisioningResult) -> str:
    detail = f"{_time(result.at)} {result.action} {result.status}"
    if result.dn:
        detail += f" {result.dn}"
    if result.error_message:
        code = f" (LDAP {result.error_code})" if result.error_code is not None else ""
        detail += f": {result.error_message}{code}"
    return detail


def _group_id(anchor: str) -> str:
    return anchor.removeprefix(ANCHOR_PREFIX)


def _apply_file() -> str:
    return "`e2ad config apply FILE` (the processors publish their file's configuration at their first start)"


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")
