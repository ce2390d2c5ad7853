"""`e2ad provision`: a dry run prints the steps and changes nothing in AD or Kafka; --apply does what it printed.

Against the Graph stand-in (the real SDK paths), the real broker and the real Samba DC, each test
in an OU of its own; the command runs as an operator runs it, in its own process.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.pipeline import settings_environment
from harness.standin import GraphStandin, running_standin
from schemas import topics
from schemas.active import ACTIVE_KEY
from schemas.config import (
    AdSettings,
    DeleteSettings,
    KafkaSettings,
    ProvisioningSettings,
    ScopeClause,
    ScopeSettings,
    Settings,
)
from schemas.desired import anchor_of
from tests.active import active_configuration
from tests.integration.helpers import create_ad_user, end_offsets, read_group
from tests.integration.stages import publish, run_e2ad

pytestmark = pytest.mark.integration


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin() as standin:
        yield standin


def settings_for(
    standin: GraphStandin, kafka: KafkaSettings, ad: AdSettings, container: str, **sections: Any
) -> Settings:
    """The file of an operator's host: groups go to `container`, the writer writes anywhere in the test's OU."""
    fence = container[container.index("OU=t-") :]
    provisioning = ProvisioningSettings(target_container=container, containers=[fence])
    return Settings(kafka=kafka, ad=ad, graph=standin.graph_settings(), provisioning=provisioning, **sections)


async def provision(settings: Settings, group_id: str, *args: str, expect: int = 0) -> str:
    return await run_e2ad(settings_environment(settings), "provision", group_id, *args, expect=expect)


async def dry_run(settings: Settings, group_id: str, ad_admin: Any, ou: str) -> dict[str, Any]:
    """The --json report of a dry run, checked to have changed nothing in AD or on any topic."""
    ad_before, topics_before = ad_snapshot(ad_admin, ou), await topic_snapshot(settings.kafka)
    report = json.loads(await provision(settings, group_id, "--json"))
    assert report["dry_run"] is True and report["applied"] is None
    assert ad_snapshot(ad_admin, ou) == ad_before
    assert await topic_snapshot(settings.kafka) == topics_before
    return report


def ad_snapshot(ad_admin: Any, base: str) -> list[tuple[str, dict[str, Any]]]:
    """Every object below `base` with every attribute and uSNChanged: any write changes it."""
    ad_admin.search(base, "(objectClass=*)", attributes=["*", "uSNChanged"])
    return sorted((entry["dn"], dict(entry["raw_attributes"])) for entry in ad_admin.response)


async def topic_snapshot(kafka: KafkaSettings) -> dict[str, int]:
    return {topic: await end_offsets(kafka, topic) for topic in topics.ALL_TOPICS}


def in_ad(ad_admin: Any, ou: str, group_id: str) -> dict[str, Any]:
    group = read_group(ad_admin, ou, anchor_of(group_id))
    assert group is not None
    return group


def assert_applied(report: dict[str, Any], group: dict[str, Any]) -> None:
    """AD after --apply is what the dry run's action printed: its DN, every new value, every member change."""
    action = report["action"]
    assert group["dn"].lower() == action["dn"].lower()
    for change in action["attributes"]:
        if change["name"] in ("cn", "parentDistinguishedName", "groupType"):
            continue  # the DN carries the first two; groupType reads back as a number
        value = group.get(change["name"])
        values = value if isinstance(value, list) else [] if value is None else [value]
        assert [str(v) for v in values] == change["new"], change["name"]
    members = {dn.lower() for dn in group.get("member", [])}
    assert {m["dn"].lower() for m in action["members_to_add"]} <= members
    assert not {m["dn"].lower() for m in action["members_to_remove"]} & members


def clauses(report: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    return [(c["clause"], c["value"], c["passed"]) for c in report["scope"]["clauses"]]


async def test_a_new_group_dry_run_prints_every_step_and_apply_creates_exactly_that(
    standin: GraphStandin, kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any
) -> None:
    team = ScopeClause(attribute="description", operator="INCLUDES", value="team")
    settings = settings_for(standin, kafka_settings, ad_settings, test_ou, scope=ScopeSettings(filters=[[team]]))
    tenant = standin.tenant
    alice_dn, alice_guid = create_ad_user(ad_admin, test_ou, "alice-prov")
    alice = tenant.add_user("Alice", onPremisesObjectIdentifier=alice_guid).object_id
    cloud = tenant.add_user("Cloud Only").object_id
    nested_out = tenant.add_group("Mail list", mailEnabled=True, description="team").object_id
    nested_new = tenant.add_group("Nested", description="team").object_id
    group_id = tenant.add_group("Sales", description="the sales team").object_id
    for member in (alice, cloud, nested_out, nested_new):
        tenant.add_member(group_id, member)

    report = await dry_run(settings, group_id, ad_admin, test_ou)
    assert report["configuration"] == {"version": None, "state": "none", "source": "file"}
    assert report["import"]["attributes"]["description"] == "the sales team"
    assert (report["import"]["users"], report["import"]["groups"]) == (2, 2)
    assert report["scope"]["in_scope"] and report["scope"]["security_passed"]
    assert clauses(report) == [('description INCLUDES "team"', "the sales team", True)]
    assert report["match"] == {"anchor": anchor_of(group_id), "found": None, "conflict": None}
    action = report["action"]
    assert action["operations"] == ["create"]
    assert action["dn"] == f"CN=Sales_{group_id[24:]},{test_ou}"
    assert {"name": "description", "old": [], "new": ["the sales team"]} in action["attributes"]
    assert [(m["display_name"], m["dn"]) for m in action["members_to_add"]] == [("Alice", alice_dn)]
    skipped = {m["display_name"]: m["reason"] for m in action["members_skipped"]}
    assert skipped == {
        "Cloud Only": "cloud-only user (no onPremisesObjectIdentifier)",
        "Mail list": "nested group not in scope: mail-enabled groups are not provisioned",
        "Nested": "nested group not in AD yet",
    }

    printed = await provision(settings, group_id)
    for line in ("1. Import", "2. Determine scope", "3. Match", "no AD object carries the anchor", "4. Action: create"):
        assert line in printed

    applied = json.loads(await provision(settings, group_id, "--apply", "--json"))
    # A warning, as the writer decides it: Nested is not in AD yet, and the group waits for it.
    assert applied["applied"] == {"statuses": {"warning": 1}}
    assert_applied(report, in_ad(ad_admin, test_ou, group_id))
    result = await topic_snapshot(kafka_settings)
    assert result[topics.AD_RESULTS] == 1 and result[topics.AD_DESIRED] == 0

    again = await dry_run(settings, group_id, ad_admin, test_ou)
    assert again["action"]["operations"] == ["skip"]
    assert again["action"]["reason"] == "AD matches the desired state"


async def test_a_changed_renamed_and_moved_group_is_planned_then_applied_as_printed(
    standin: GraphStandin, kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any
) -> None:
    first = f"OU=first,{test_ou}"
    second = f"OU=second,{test_ou}"
    for ou in (first, second):
        assert ad_admin.add(ou, "organizationalUnit"), ad_admin.result
    tenant = standin.tenant
    alice_dn, alice_guid = create_ad_user(ad_admin, test_ou, "alice-move")
    bob_dn, bob_guid = create_ad_user(ad_admin, test_ou, "bob-move")
    alice = tenant.add_user("Alice", onPremisesObjectIdentifier=alice_guid).object_id
    bob = tenant.add_user("Bob", onPremisesObjectIdentifier=bob_guid).object_id
    group_id = tenant.add_group("Ops", description="before").object_id
    tenant.add_member(group_id, alice)
    await provision(settings_for(standin, kafka_settings, ad_settings, first), group_id, "--apply")
    before = in_ad(ad_admin, test_ou, group_id)

    tenant.update_group(group_id, displayName="Operations", description="after")
    tenant.remove_member(group_id, alice)
    tenant.add_member(group_id, bob)
    settings = settings_for(standin, kafka_settings, ad_settings, second)
    report = await dry_run(settings, group_id, ad_admin, test_ou)
    assert report["match"]["found"]["dn"] == before["dn"]
    action = report["action"]
    assert action["operations"] == ["rename", "move", "update"]
    assert action["old_dn"] == before["dn"]
    assert action["dn"] == f"CN=Operations_{group_id[24:]},{second}"
    changes = {c["name"]: (c["old"], c["new"]) for c in action["attributes"]}
    assert changes["description"] == (["before"], ["after"])
    assert changes["displayName"] == (["Ops"], ["Operations"])
    assert changes["cn"] == ([f"Ops_{group_id[24:]}"], [f"Operations_{group_id[24:]}"])
    assert [(m["display_name"], m["dn"]) for m in action["members_to_add"]] == [("Bob", bob_dn)]
    assert [m["dn"].lower() for m in action["members_to_remove"]] == [alice_dn.lower()]

    applied = json.loads(await provision(settings, group_id, "--apply", "--json"))
    assert applied["applied"] == {"statuses": {"success": 1}}
    after = in_ad(ad_admin, test_ou, group_id)
    assert_applied(report, after)
    assert {m.lower() for m in after["member"]} == {bob_dn.lower()}


async def test_out_of_scope_and_deleted_groups_show_the_delete_and_apply_deletes_unless_the_guard_holds_it(
    standin: GraphStandin, kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any
) -> None:
    settings = settings_for(standin, kafka_settings, ad_settings, test_ou)
    tenant = standin.tenant
    never = tenant.add_group("Never", securityEnabled=False).object_id
    leaving = tenant.add_group("Leaving").object_id
    soft = tenant.add_group("Soft").object_id
    hard = tenant.add_group("Hard").object_id
    for group_id in (leaving, soft, hard):
        await provision(settings, group_id, "--apply")

    report = await dry_run(settings, never, ad_admin, test_ou)
    assert not report["scope"]["in_scope"] and report["scope"]["reason"] == "not a security group"
    assert report["action"]["operations"] == ["skip"]
    assert report["action"]["reason"] == "not in AD, and not provisioned: nothing to do"

    tenant.update_group(leaving, mailEnabled=True)
    tenant.soft_delete_group(soft)
    tenant.hard_delete_group(hard)
    expected = {
        leaving: (None, "out of scope: mail-enabled groups are not provisioned"),
        soft: ("soft-deleted", "soft-deleted in Entra"),
        hard: ("deleted", "deleted in Entra"),
    }
    for group_id, (removed, reason) in expected.items():
        dn = in_ad(ad_admin, test_ou, group_id)["dn"]
        report = await dry_run(settings, group_id, ad_admin, test_ou)
        assert report["import"]["removed"] == removed
        assert (report["action"]["operations"], report["action"]["dn"], report["action"]["reason"]) == (
            ["delete"],
            dn,
            reason,
        )

    # A guard whose threshold this one delete reaches holds it: nothing is written.
    held = settings.model_copy(update={"deletes": DeleteSettings(threshold=1)})
    ad_before = ad_snapshot(ad_admin, test_ou)
    refused = await provision(held, hard, "--apply", expect=1)
    assert "the deletion guard holds this delete" in refused and f"e2ad deletes approve {hard}" in refused
    assert ad_snapshot(ad_admin, test_ou) == ad_before

    # Below the threshold the delete is applied at once, as the dry run printed it.
    for group_id in expected:
        await provision(settings, group_id, "--apply")
        assert read_group(ad_admin, test_ou, anchor_of(group_id)) is None


async def test_a_disabled_configuration_allows_the_dry_run_and_refuses_apply(
    standin: GraphStandin, kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any
) -> None:
    settings = settings_for(standin, kafka_settings, ad_settings, test_ou)
    disabled = active_configuration(3, "disabled", target_container=test_ou)
    await publish(kafka_settings, topics.CONFIG, [(ACTIVE_KEY.decode(), disabled)])
    group_id = standin.tenant.add_group("Paused").object_id
    report = await dry_run(settings, group_id, ad_admin, test_ou)
    assert report["configuration"] == {"version": 3, "state": "disabled", "source": "e2ad.config"}
    assert report["action"]["operations"] == ["create"]
    refused = await provision(settings, group_id, "--apply", expect=1)
    assert "the active configuration (version 3) is disabled: nothing is written to AD" in refused
    assert read_group(ad_admin, test_ou, anchor_of(group_id)) is None
