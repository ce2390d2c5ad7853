"""`e2ad provision`'s report: the rendering of each step for a person, and the JSON keys scripts read."""

from __future__ import annotations

import io
import json

from rich.console import Console

from e2ad.provision_render import render
from e2ad.provision_report import (
    ActionStep,
    AdObject,
    AttributeChange,
    Clause,
    ConfigurationUsed,
    ImportStep,
    MatchStep,
    Member,
    ProvisionReport,
    ScopeStep,
    SkippedMember,
)

GROUP = "0f6a3b5c-1111-4000-8000-a1b2c3d4e5f6"
OLD_DN = "CN=Ops_a1b2c3d4e5f6,OU=First,DC=e2ad,DC=test"
NEW_DN = "CN=Operations_a1b2c3d4e5f6,OU=Second,DC=e2ad,DC=test"


def report(**action: object) -> ProvisionReport:
    fields: dict[str, object] = {
        "operations": ["rename", "move", "update"],
        "dn": NEW_DN,
        "old_dn": OLD_DN,
        "reason": "AD differs from the desired state",
        "error": None,
        "attributes": [
            AttributeChange(name="cn", old=["Ops_a1b2c3d4e5f6"], new=["Operations_a1b2c3d4e5f6"]),
            AttributeChange(name="description", old=["before"], new=[]),
        ],
        "members_to_add": [
            Member(type="user", id="u1", display_name="Bob", dn="CN=bob,DC=e2ad,DC=test", object_guid="9" * 32)
        ],
        "members_to_remove": [Member(type="unknown", id=None, display_name=None, dn=None, object_guid="8" * 32)],
        "members_skipped": [SkippedMember(type="user", id="u2", display_name="Cloud", reason="cloud-only user")],
        "warnings": [],
        **action,
    }
    return ProvisionReport(
        group_id=GROUP,
        display_name="Operations",
        dry_run=True,
        configuration=ConfigurationUsed(version=4, state="enabled", source="e2ad.config"),
        import_=ImportStep(
            in_entra=True,
            removed=None,
            attributes={"displayName": "Operations", "description": None},
            members=3,
            users=2,
            groups=0,
            other=1,
        ),
        scope=ScopeStep(
            in_scope=True,
            reason="all security groups; scoping filter 1 matched",
            security_passed=True,
            security_reason="all security groups",
            selected=None,
            clauses=[
                Clause(
                    filter=1,
                    clause='displayName EQUALS "Operations"',
                    attribute="displayName",
                    value="Operations",
                    passed=True,
                    detail=None,
                ),
            ],
        ),
        match=MatchStep(anchor=f"Group_{GROUP}", found=AdObject(dn=OLD_DN, object_guid="7" * 32), conflict=None),
        action=ActionStep(**fields),  # type: ignore[arg-type]
        timings_ms={"graph": 120.0, "ad": 80.0, "total": 260.0},
    )


def rendered(value: ProvisionReport) -> str:
    out = io.StringIO()
    render(value, Console(file=out, width=160, color_system=None))
    return out.getvalue()


def test_every_step_is_printed_with_its_values() -> None:
    text = rendered(report())
    assert "Provision Operations 0f6a3b5c-1111-4000-8000-a1b2c3d4e5f6: dry run, nothing is written" in text
    assert "configuration: e2ad.config version 4 (enabled)" in text
    assert "members: 3 (2 users, 0 groups, 1 other)" in text
    assert 'displayName EQUALS "Operations"' in text and "in scope: all security groups; scoping filter 1" in text
    assert f"3. Match by Group_{GROUP}: {OLD_DN}" in text
    assert f"4. Action: rename, move, update {OLD_DN} → {NEW_DN}" in text
    lines = text.splitlines()
    assert any("description" in line and "│ before" in line and "│ -" in line for line in lines)  # removed
    assert any("add user" in line and "Bob" in line and "CN=bob,DC=e2ad,DC=test" in line for line in lines)
    assert any("remove " in line and f"no AD object <GUID={'8' * 32}>" in line for line in lines)
    assert any("skip user" in line and "Cloud" in line and "cloud-only user" in line for line in lines)
    assert "took 260 ms (Graph 120 ms, AD 80 ms)" in text


def test_a_refusal_and_a_group_not_in_entra_are_said_plainly() -> None:
    value = report(operations=["skip"], old_dn=None, dn=OLD_DN, attributes=[], members_to_add=[],
                   members_to_remove=[], members_skipped=[], reason="the writer refuses to write this group",
                   error="refusing to touch CN=Domain Admins is a protected group")  # fmt: skip
    gone = value.model_copy(
        update={"import_": value.import_.model_copy(update={"in_entra": False, "removed": "deleted"})}
    )
    text = rendered(gone)
    assert "1. Import: not in Entra (deleted)" in text
    assert "4. Action: skip " + OLD_DN in text
    assert "refusing to touch CN=Domain Admins is a protected group" in text


def test_the_json_keys_are_the_documented_ones() -> None:
    value = json.loads(report().as_json())
    assert list(value) == [
        "group_id", "display_name", "dry_run", "configuration", "import", "scope", "match", "action", "applied",
        "timings_ms",
    ]  # fmt: skip
    assert list(value["action"]) == [
        "operations", "dn", "old_dn", "reason", "error", "attributes", "members_to_add", "members_to_remove",
        "members_skipped", "warnings",
    ]  # fmt: skip
    assert value["action"]["attributes"][1] == {"name": "description", "old": ["before"], "new": []}
