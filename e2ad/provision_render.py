"""`e2ad provision` for a person: the four steps as rich tables, in Cloud Sync's order."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from e2ad.provision_report import ActionStep, AttributeChange, Member, ProvisionReport

PASS, FAIL = "pass", "FAIL"


def render(report: ProvisionReport, console: Console) -> None:
    name = report.display_name or "(not in Entra)"
    mode = "dry run, nothing is written to AD or Kafka (--apply performs it)" if report.dry_run else "--apply"
    config = report.configuration
    source = (
        f"e2ad.config version {config.version} ({config.state})"
        if config.source == "e2ad.config"
        else f"this file's (e2ad.config: {config.state})"
    )
    console.print(f"[bold]Provision {name}[/bold] {report.group_id}: {mode}")
    console.print(f"configuration: {source}")
    _import(report, console)
    _scope(report, console)
    _match(report, console)
    _action(report.action, console)
    if report.applied is not None:
        statuses = ", ".join(f"{count} {status}" for status, count in sorted(report.applied.statuses.items()))
        console.print(f"[bold]Applied[/bold]: {statuses or 'nothing decided'} (provisioning log: ad.results)")
    timings = report.timings_ms
    total, graph, ad = (timings.get(name, 0.0) for name in ("total", "graph", "ad"))
    console.print(f"took {total:.0f} ms (Graph {graph:.0f} ms, AD {ad:.0f} ms)")


def _import(report: ProvisionReport, console: Console) -> None:
    step = report.import_
    if not step.in_entra:
        console.print(f"\n[bold]1. Import[/bold]: not in Entra ({step.removed})")
        return
    table = Table("attribute", "value", title="1. Import: the source attributes", title_justify="left")
    for attribute, value in step.attributes.items():
        table.add_row(attribute, _shown(value))
    console.print()
    console.print(table)
    console.print(f"members: {step.members} ({step.users} users, {step.groups} groups, {step.other} other)")


def _scope(report: ProvisionReport, console: Console) -> None:
    step = report.scope
    table = Table("filter", "clause", "value", "result", title="2. Determine scope", title_justify="left")
    security = PASS if step.security_passed else f"{FAIL}: {step.security_reason}"
    table.add_row("-", "security group (always on)", "", security)
    if step.selected is not None:
        table.add_row("-", "scope.mode selected: in scope.groups", "", PASS if step.selected else FAIL)
    for clause in step.clauses:
        table.add_row(str(clause.filter), clause.clause, _shown(clause.value), PASS if clause.passed else FAIL)
    console.print()
    console.print(table)
    console.print(f"{'in scope' if step.in_scope else 'out of scope'}: {step.reason}")


def _match(report: ProvisionReport, console: Console) -> None:
    step = report.match
    console.print(f"\n[bold]3. Match[/bold] by {step.anchor}: ", end="")
    if step.found is None:
        console.print("no AD object carries the anchor")
    else:
        console.print(f"{step.found.dn} (objectGUID {step.found.object_guid})")
    if step.conflict is not None:
        theirs = step.conflict.anchor or "none"
        console.print(f"conflict: {step.conflict.dn} is already there (anchor {theirs}): e2ad never overwrites it")


def _action(step: ActionStep, console: Console) -> None:
    where = step.dn or "-"
    if step.old_dn:
        where = f"{step.old_dn} → {step.dn}"
    console.print(f"\n[bold]4. Action[/bold]: {', '.join(step.operations)} {where}")
    console.print(f"why: {step.reason}")
    if step.error:
        console.print(f"[red]{step.error}[/red]")
    if step.attributes:
        console.print(_attribute_table(step.attributes))
    if step.members_to_add or step.members_to_remove or step.members_skipped:
        console.print(_member_table(step))
    for warning in step.warnings:
        console.print(f"warning: {warning}")


def _attribute_table(changes: list[AttributeChange]) -> Table:
    table = Table("attribute", "old", "new", title="attributes", title_justify="left")
    for change in changes:
        table.add_row(change.name, _values(change.old), _values(change.new))
    return table


def _member_table(step: ActionStep) -> Table:
    table = Table("member", "name", "DN / reason", title="members", title_justify="left")
    for label, members in (("add", step.members_to_add), ("remove", step.members_to_remove)):
        for member in members:
            where = member.dn or f"no AD object <GUID={member.object_guid}>"
            kind = "" if member.type == "unknown" else f" {member.type}"  # only AD has it: removed
            table.add_row(f"{label}{kind}", _name(member), where)
    for skipped in step.members_skipped:
        table.add_row(f"skip {skipped.type}", skipped.display_name or skipped.id, skipped.reason)
    return table


def _name(member: Member) -> str:
    return member.display_name or member.id or member.object_guid


def _values(values: list[str]) -> str:
    return "-" if not values else "; ".join(values)


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    return value if isinstance(value, str) else json.dumps(value)
