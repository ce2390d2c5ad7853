"""The AD writer end to end: DesiredGroup records on ad.desired → the real Samba DC → ad.results.

Each test gets its own broker and OU; a WriterService runs in the background while the test
publishes desired states and waits for their provisioning-log records.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable

import ldap3
import pytest

from processors.mapping import GroupMapper
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, DesiredMember, anchor_of
from tests.integration.helpers import (
    ANCHOR,
    Harness,
    committed,
    connects,
    desired,
    member_dns,
    metric,
    object_guid,
    read_group,
    renamed,
    user_members,
)
from tests.integration.stages import FlakyDc
from tests.polling import until
from writers.directory import Applied, Directory
from writers.provision import converge
from writers.reconcile import AdGroup, Plan, member_value

pytestmark = pytest.mark.integration


@pytest.fixture
def users(ad_admin, test_ou: str) -> list[tuple[str, uuid.UUID]]:
    """Four users in the test OU: (DN, objectGUID)."""
    created = []
    for i in range(4):
        user_dn = f"CN=user{i},{test_ou}"
        assert ad_admin.add(user_dn, "user", {"sAMAccountName": f"u{uuid.uuid4().hex[:14]}"}), ad_admin.result
        created.append((user_dn, object_guid(ad_admin, user_dn)))
    return created


async def test_create_converges_every_attribute_and_exactly_the_members(
    writer: Harness, ad_admin, test_ou: str, users
) -> None:
    state = desired(test_ou, members=[guid for _, guid in users[:3]])

    [result] = await writer.converge(state)

    group = read_group(ad_admin, test_ou, state.anchor)
    assert group is not None
    assert group["dn"] == f"CN=Sales_{state.group_id[-12:]},{test_ou}"
    assert group["cn"] == [f"Sales_{state.group_id[-12:]}"]
    assert group["description"] == ["Sales team"]
    assert group["displayName"] == ["Sales"]
    assert group[ANCHOR] == [state.anchor]
    assert group["adminDescription"] == [state.anchor]
    assert group["groupType"] == [str(UNIVERSAL_SECURITY_GROUP)]
    assert group["sAMAccountName"] == [f"g{state.group_id[-12:]}"]
    assert member_dns(group) == {dn.lower() for dn, _ in users[:3]}

    assert (result.action, result.status, result.dn) == ("create", "success", group["dn"])
    assert (result.members_added, result.members_removed) == (3, 0)
    assert [step.name for step in result.steps] == ["matching", "export"]
    assert {m.name: m.new for m in result.modified}["description"] == "Sales team"
    assert result.writer == "writer-under-test"
    assert result.source_changed_at == state.source_changed_at
    assert result.error_code is None and result.duration_ms > 0


async def test_update_renames_in_place_changes_description_and_removes_a_member(
    writer: Harness, ad_admin, test_ou: str, users
) -> None:
    state = desired(test_ou, members=[guid for _, guid in users[:3]])
    await writer.converge(state)
    guid_before = object_guid(ad_admin, read_group(ad_admin, test_ou, state.anchor)["dn"])

    update = renamed(state, cn="Sales EMEA", description="EMEA sales").model_copy(update={"members": state.members[:2]})
    [result] = await writer.converge(update)

    group = read_group(ad_admin, test_ou, state.anchor)
    assert group["dn"] == f"CN=Sales EMEA,{test_ou}"
    assert group["description"] == ["EMEA sales"]
    assert member_dns(group) == {dn.lower() for dn, _ in users[:2]}
    assert object_guid(ad_admin, group["dn"]) == guid_before
    assert (result.action, result.status, result.members_removed) == ("update", "success", 1)
    changes = {m.name: (m.old, m.new) for m in result.modified}
    assert changes["description"] == ("Sales team", "EMEA sales")
    assert changes["cn"] == (f"Sales_{state.group_id[-12:]}", "Sales EMEA")


async def test_container_change_moves_and_renames_in_one_step(writer: Harness, ad_admin, test_ou: str) -> None:
    state = desired(test_ou)
    await writer.converge(state)
    guid_before = object_guid(ad_admin, read_group(ad_admin, test_ou, state.anchor)["dn"])
    elsewhere = f"OU=Elsewhere,{test_ou}"
    assert ad_admin.add(elsewhere, "organizationalUnit"), ad_admin.result

    [result] = await writer.converge(renamed(state, cn="Moved").model_copy(update={"container": elsewhere}))

    assert (result.action, result.status, result.dn) == ("update", "success", f"CN=Moved,{elsewhere}")
    assert read_group(ad_admin, test_ou, state.anchor)["dn"] == f"CN=Moved,{elsewhere}"
    assert object_guid(ad_admin, f"CN=Moved,{elsewhere}") == guid_before
    assert {m.name: m.new for m in result.modified}["parentDistinguishedName"] == elsewhere


async def test_redelivered_identical_state_changes_nothing(writer: Harness, ad_admin, test_ou: str, users) -> None:
    state = desired(test_ou, members=[guid for _, guid in users[:2]])
    await writer.converge(state)
    usn_before = read_group(ad_admin, test_ou, state.anchor)["uSNChanged"]

    [result] = await writer.converge(state)

    assert (result.action, result.status, result.modified) == ("skip", "skipped", [])
    assert (result.members_added, result.members_removed) == (0, 0)
    assert read_group(ad_admin, test_ou, state.anchor)["uSNChanged"] == usn_before


async def test_manual_drift_is_repaired(writer: Harness, ad_admin, test_ou: str, users) -> None:
    state = desired(test_ou, members=[guid for _, guid in users[:2]])
    await writer.converge(state)
    group_dn = read_group(ad_admin, test_ou, state.anchor)["dn"]
    assert ad_admin.modify(
        group_dn,
        {"member": [(ldap3.MODIFY_ADD, [users[3][0]])], "description": [(ldap3.MODIFY_REPLACE, ["hand-edited"])]},
    ), ad_admin.result

    [result] = await writer.converge(state)

    group = read_group(ad_admin, test_ou, state.anchor)
    assert group["description"] == ["Sales team"]
    assert member_dns(group) == {dn.lower() for dn, _ in users[:2]}
    assert (result.action, result.status, result.members_removed) == ("update", "success", 1)


async def test_foreign_object_at_the_target_dn_is_never_overwritten(writer: Harness, ad_admin, test_ou: str) -> None:
    state = desired(test_ou)
    foreign = f"CN={state.attributes['cn']},{test_ou}"
    assert ad_admin.add(foreign, "group", {"sAMAccountName": f"f{uuid.uuid4().hex[:12]}", "description": "theirs"})
    ok = desired(test_ou, name="Other")

    results = {r.group_id: r for r in await writer.converge(state, ok)}

    failed = results[state.group_id]
    assert (failed.action, failed.status, failed.error_code) == ("create", "failure", 68)
    assert foreign in (failed.error_message or "") and failed.dn == foreign
    ad_admin.search(foreign, "(objectClass=*)", ldap3.BASE, attributes=["description", ANCHOR])
    assert ad_admin.response[0]["attributes"]["description"] == ["theirs"]
    assert not ad_admin.response[0]["attributes"].get(ANCHOR)
    # The failure is dead-lettered with its reason, and the next group of the batch still converged.
    await writer.settled()
    [letter] = writer.dead_letters
    assert letter.key == state.group_id.encode() and topics.decode(DesiredGroup, letter.value) == state
    assert foreign in dict(letter.headers)["e2ad-error"].decode()
    assert results[ok.group_id].status == "success"


class OvertakenDirectory(Directory):
    """A writer's real directory whose first read is overtaken: `other` writes right after it."""

    def __init__(self, settings: AdSettings, other: Callable[[], object]) -> None:
        super().__init__(settings)
        self._other: Callable[[], object] | None = other

    def find_group(self, anchor: str, managed: Iterable[str] = ()) -> AdGroup | None:
        found = super().find_group(anchor, managed)
        if self._other is not None:
            self._other, other = None, self._other
            other()
        return found


def test_a_create_overtaken_by_another_writer_converges_the_group_it_created(
    ad_settings: AdSettings, ad_admin, test_ou: str, users
) -> None:
    """Two writers overlap on a group while partitions move: both read "absent", both create."""
    (_, g0), (u1, g1), *_ = users
    first = desired(test_ou, name="Overlap", members=[g0])
    latest = renamed(first, description="the later state").model_copy(update={"members": user_members([g1])})
    other, overtaken = Directory(ad_settings), None
    try:
        earlier = []
        overtaken = OvertakenDirectory(
            ad_settings,
            lambda: earlier.append(converge(other, first, default_container=test_ou, writer="other")),
        )
        convergence = converge(overtaken, latest, default_container=test_ou, writer="this")
    finally:
        other.close()
        if overtaken is not None:
            overtaken.close()

    assert earlier[0].result.action == "create" and earlier[0].result.status == "success"
    result = convergence.result
    assert (result.action, result.status, result.error_code) == ("update", "success", None)
    assert convergence.created is None  # parents waiting for it were told by the writer that created it
    group = read_group(ad_admin, test_ou, first.anchor)  # asserts there is exactly one
    assert group is not None and group["description"] == ["the later state"]
    assert member_dns(group) == {u1.lower()}


async def test_nothing_is_written_outside_the_configured_containers(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, ad_admin, test_ou: str
) -> None:
    allowed, other = f"OU=Allowed,{test_ou}", f"OU=Other,{test_ou}"
    for ou in (allowed, other):
        assert ad_admin.add(ou, "organizationalUnit"), ad_admin.result
    provisioning = ProvisioningSettings(target_container=allowed, containers=[allowed])
    settings = Settings(kafka=kafka_settings, ad=ad_settings, provisioning=provisioning)
    inside, outside = desired(test_ou, name="Inside", container=allowed), desired(test_ou, container=other)

    async with Harness(settings) as writer:
        results = {r.group_id: r for r in await writer.converge(inside, outside)}
        assert results[inside.group_id].status == "success"
        refused = results[outside.group_id]
        assert refused.status == "failure" and "outside the containers e2ad writes in" in (refused.error_message or "")
        assert read_group(ad_admin, test_ou, outside.anchor) is None

        # Our group moved out by hand is moved back; out again, it is not deleted there.
        cn = inside.attributes["cn"]
        assert ad_admin.modify_dn(f"CN={cn},{allowed}", f"CN={cn}", new_superior=other), ad_admin.result
        [back] = await writer.converge(inside)
        assert back.status == "success" and read_group(ad_admin, test_ou, inside.anchor)["dn"] == f"CN={cn},{allowed}"
        assert ad_admin.modify_dn(f"CN={cn},{allowed}", f"CN={cn}", new_superior=other), ad_admin.result
        [kept] = await writer.converge(inside.model_copy(update={"state": "absent"}))
        assert (kept.action, kept.status) == ("delete", "failure")
        assert read_group(ad_admin, test_ou, inside.anchor)["dn"] == f"CN={cn},{other}"


async def test_absent_state_deletes_the_anchored_group_and_never_a_foreign_one(
    writer: Harness, ad_admin, test_ou: str
) -> None:
    ours = desired(test_ou)
    await writer.converge(ours)
    ours_dn = read_group(ad_admin, test_ou, ours.anchor)["dn"]
    # An object that looks like one of ours but lacks the anchor: the writer must not find it.
    unanchored_id = str(uuid.uuid4())
    unanchored = f"CN=Sales_{unanchored_id[-12:]},{test_ou}"
    assert ad_admin.add(unanchored, "group", {"sAMAccountName": f"n{uuid.uuid4().hex[:12]}"})

    absent = [ours.model_copy(update={"state": "absent"}), desired(test_ou, unanchored_id, state="absent")]

    results = {r.group_id: r for r in await writer.converge(*absent)}
    assert (results[ours.group_id].action, results[ours.group_id].status) == ("delete", "success")
    assert results[ours.group_id].dn == ours_dn
    assert read_group(ad_admin, test_ou, ours.anchor) is None
    assert (results[unanchored_id].action, results[unanchored_id].status) == ("skip", "skipped")
    assert ad_admin.search(unanchored, "(objectClass=*)", ldap3.BASE) and ad_admin.entries


async def test_an_anchor_on_two_objects_touches_neither(writer: Harness, ad_admin, test_ou: str) -> None:
    state = desired(test_ou)
    twins = [f"CN=twin{i},{test_ou}" for i in range(2)]
    for twin in twins:
        assert ad_admin.add(twin, "group", {"sAMAccountName": f"t{uuid.uuid4().hex[:12]}", ANCHOR: state.anchor})

    [result] = await writer.converge(state.model_copy(update={"state": "absent"}))

    assert result.status == "failure" and all(twin in (result.error_message or "") for twin in twins)
    for twin in twins:
        assert ad_admin.search(twin, "(objectClass=*)", ldap3.BASE) and ad_admin.entries


@pytest.mark.parametrize(
    "name",
    ['Sales, EMEA + "Partners"', "R&D \\ Lab; <x>=1", "#hash leading and trailing ", "Ünïcødé Grüppe ✓ 東京"],
)
async def test_names_that_need_escaping(writer: Harness, ad_admin, test_ou: str, name: str) -> None:
    state = renamed(desired(test_ou), cn=name, displayName=name)

    [created] = await writer.converge(state)
    group = read_group(ad_admin, test_ou, state.anchor)
    [again] = await writer.converge(state)  # no rename loop from escaping differences
    [back] = await writer.converge(renamed(state, cn=f"{name} 2"))

    assert created.status == "success" and group["cn"] == [name] and group["displayName"] == [name]
    assert again.action == "skip"
    assert (back.action, back.status) == ("update", "success")
    assert read_group(ad_admin, test_ou, state.anchor)["cn"] == [f"{name} 2"]


async def test_an_80_character_display_name_gets_the_default_64_character_cn(
    writer: Harness, ad_admin, test_ou: str
) -> None:
    group_id = str(uuid.uuid4())
    name = 'Global Finance, Risk + Compliance "EMEA" Ünïcødé 東京 – all permanent staff and contractors'[:80]
    assert len(name) == 80
    mapped = GroupMapper({}, {}, test_ou).map(group_id, {"displayName": name, "description": "long"})
    state = desired(test_ou, group_id).model_copy(
        update={"attributes": mapped.attributes, "create_only": mapped.create_only}
    )
    too_long = desired(test_ou, name="Other").model_copy(
        update={"attributes": {**mapped.attributes, "cn": name}}  # a cn mapping without Left(…, 51)
    )

    results = {r.group_id: r for r in await writer.converge(state, too_long)}

    group = read_group(ad_admin, test_ou, state.anchor)
    assert results[state.group_id].status == "success"
    assert group["cn"] == [f"{name[:51]}_{group_id[-12:]}"] and len(group["cn"][0]) == 64
    assert group["displayName"] == [name]
    refused = results[too_long.group_id]
    assert (refused.action, refused.status) == ("create", "failure")
    assert "80 UTF-16 code units long, AD allows 64" in (refused.error_message or "")
    assert read_group(ad_admin, test_ou, too_long.anchor) is None


async def test_nested_group_is_added_once_it_exists(writer: Harness, ad_admin, test_ou: str) -> None:
    inner = desired(test_ou, name="Inner")
    outer = desired(test_ou, name="Outer").model_copy(
        update={"members": [DesiredMember(type="group", id=inner.group_id, anchor=inner.anchor)]}
    )

    [first] = await writer.converge(outer)
    assert (first.action, first.status) == ("create", "warning")
    assert any(inner.anchor in warning for warning in first.warnings)
    assert [s.status for s in first.steps if s.name == "referenceResolution"] == ["warning"]

    await writer.converge(inner)
    [second] = await writer.converge(outer)

    assert (second.action, second.status, second.members_added) == ("update", "success", 1)
    inner_dn = read_group(ad_admin, test_ou, inner.anchor)["dn"]
    assert member_dns(read_group(ad_admin, test_ou, outer.anchor)) == {inner_dn.lower()}


async def test_a_member_missing_from_ad_does_not_fail_the_group(writer: Harness, ad_admin, test_ou: str, users) -> None:
    ghost = uuid.uuid4()
    state = desired(test_ou, members=[users[0][1], ghost, users[1][1]])

    [result] = await writer.converge(state)

    assert (result.status, result.members_added) == ("warning", 2)
    assert any(str(ghost) in warning for warning in result.warnings)
    assert member_dns(read_group(ad_admin, test_ou, state.anchor)) == {users[0][0].lower(), users[1][0].lower()}


async def test_ad_rejection_is_a_failure_result_and_protected_names_are_refused(writer: Harness, test_ou: str) -> None:
    invalid = desired(test_ou, create_only={"sAMAccountName": "bad/name"})
    protected = desired(test_ou, create_only={"sAMAccountName": "Domain Admins"})

    results = {r.group_id: r for r in await writer.converge(invalid, protected)}

    rejected = results[invalid.group_id]
    assert (rejected.action, rejected.status, rejected.error_code) == ("create", "failure", 19)
    assert rejected.dn and rejected.dn in (rejected.error_message or "")
    assert "sAMAccountName" in (rejected.error_message or "")
    assert results[protected.group_id].status == "failure"
    assert "protected" in (results[protected.group_id].error_message or "")
    await writer.settled()
    assert {letter.key.decode() for letter in writer.dead_letters} == {invalid.group_id, protected.group_id}


async def test_an_unreadable_desired_state_fails_alone_naming_the_field(
    writer: Harness, ad_admin, test_ou: str
) -> None:
    good = desired(test_ou, name="Readable")
    broken_id = str(uuid.uuid4())
    broken = topics.encode(desired(test_ou, broken_id)).replace(b'"state":"present"', b'"state":"maybe"')
    await writer.send(broken, broken_id)

    results = {r.group_id: r for r in await writer.converge(good)}
    results.update({r.group_id: r for r in await writer.wait_results({broken_id}, after=0)})

    unreadable = results[broken_id]
    assert (unreadable.action, unreadable.status) == ("skip", "failure")
    assert "invalid desired state" in (unreadable.error_message or "") and "state" in (unreadable.error_message or "")
    assert results[good.group_id].status == "success" and read_group(ad_admin, test_ou, good.anchor) is not None
    assert read_group(ad_admin, test_ou, anchor_of(broken_id)) is None
    await writer.settled()
    assert broken_id.encode() in {letter.key for letter in writer.dead_letters}


async def test_a_batch_is_read_in_a_few_searches_and_an_ambiguous_anchor_fails_alone(
    writer: Harness, ad_admin, test_ou: str
) -> None:
    """The writer reads a batch's groups together, not one search per group (docs/benchmarks.md)."""
    states = [desired(test_ou, name=f"Batch{i}") for i in range(30)]
    await writer.converge(*states)
    twice = states[0]
    for twin in (f"CN=TwinA,{test_ou}", f"CN=TwinB,{test_ou}"):
        assert ad_admin.add(twin, "group", {"sAMAccountName": f"t{uuid.uuid4().hex[:12]}", ANCHOR: twice.anchor})
    await writer.stop_writer()  # the changes then wait together, as after a burst or a restart

    changed = [renamed(state, description="changed in one batch") for state in states]
    results = {r.group_id: r for r in await writer.converge(*changed)}

    assert writer.service is not None
    registry = writer.service.metrics.registry
    searches = registry.get_sample_value("e2ad_writer_ldap_operation_seconds_count", {"operation": "search"})
    assert searches <= 4  # one per batch the consumer hands over, at most one per partition; was one per group
    ambiguous = results[twice.group_id]
    assert ambiguous.status == "failure" and "is on 3 objects" in (ambiguous.error_message or "")
    assert all(results[s.group_id].status == "success" for s in changed[1:])
    assert read_group(ad_admin, test_ou, changed[1].anchor)["description"] == ["changed in one batch"]


async def test_a_burst_of_states_collapses_to_the_latest(writer: Harness, ad_admin, test_ou: str) -> None:
    first = desired(test_ou)
    states = [renamed(first, description=f"v{i}") for i in range(5)]
    await writer.publish(*states)  # before the writer starts: one batch

    await writer.start_writer()
    await writer.wait_results({first.group_id}, after=0)
    await writer.settled()  # all five committed: every result they lead to is read

    assert [r.action for r in writer.results] == ["create"]
    assert read_group(ad_admin, test_ou, first.anchor)["description"] == ["v4"]


async def test_unreachable_dc_is_retried_and_nothing_is_committed_meanwhile(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin
) -> None:
    async with FlakyDc(ad_settings.url) as dc:
        dc.stop()
        settings = Settings(
            kafka=kafka_settings,
            ad=ad_settings.model_copy(update={"url": f"ldaps://127.0.0.1:{dc.port}"}),
            provisioning=ProvisioningSettings(target_container=test_ou),
        )
        async with Harness(settings) as harness:
            state = desired(test_ou)
            await harness.publish(state)
            await harness.start_writer()
            await until(lambda: metric(harness, "e2ad_writer_ad_unavailable") == 1, "the writer to find the DC away")
            tried = connects(harness)
            await until(lambda: connects(harness) > tried, "the writer to try the DC again")
            await harness.caught_up()
            assert harness.results == []
            assert await committed(kafka_settings) == 0

            dc.start()
            [result] = await harness.wait_results({state.group_id}, after=0)

            assert result.status == "success"
            assert read_group(ad_admin, test_ou, state.anchor) is not None
            await harness.stop_writer()
            assert await committed(kafka_settings) == 1


def test_member_chunks_rejected_for_one_value_are_retried_value_by_value(
    ad_settings: AdSettings, ad_admin, test_ou: str, users
) -> None:
    """AD rejects a whole member modify for one value already there (68) or already gone (53)."""
    anchor = anchor_of(str(uuid.uuid4()))
    group_dn = f"CN=chunky,{test_ou}"
    (u0, g0), (u1, g1), (u2, g2), (_, g3) = users
    assert ad_admin.add(
        group_dn, "group", {"sAMAccountName": f"c{uuid.uuid4().hex[:12]}", ANCHOR: anchor, "member": [u0, u2]}
    )
    directory = Directory(ad_settings)
    try:
        current = directory.find_group(anchor)
        assert current is not None and current.members == {g0, g2}
        stale = Plan(
            "update",
            group_dn,
            members_to_add=((member_value(g0), member_value(g1)),),  # g0 is already a member
            members_to_remove=((member_value(g2), member_value(g3)),),  # g3 never was
        )
        applied = Applied()
        directory.apply(stale, current, applied)
    finally:
        directory.close()

    assert (applied.members_added, applied.members_removed) == (1, 1)
    assert member_dns(read_group(ad_admin, test_ou, anchor)) == {u0.lower(), u1.lower()}
