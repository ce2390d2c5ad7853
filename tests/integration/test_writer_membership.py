"""Membership at scale and nested groups in any order, on the real Samba DC (and broker).

The writer is driven through its public pieces (Directory, converge, PendingReferences /
PendingKafka); the connection is the real one, wrapped only to count what goes over it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import ldap3
import pytest

from runtime import kafka
from schemas.config import AdSettings, KafkaSettings
from schemas.desired import DesiredGroup
from tests.integration.helpers import ANCHOR, Harness, desired, user_members
from tests.integration.wiretap import Wiretap
from tests.polling import until
from writers.connection import connect
from writers.directory import Applied, Directory
from writers.pending import PendingReferences
from writers.pending_kafka import PendingKafka
from writers.provision import Convergence, converge
from writers.reconcile import MEMBER_CHUNK, plan

pytestmark = pytest.mark.integration

EXTENDED_DN = ("1.2.840.113556.1.4.529", False, None)


@pytest.fixture
def make_users(ad_admin, ad_settings: AdSettings, test_ou: str) -> Iterator[Callable[[int, str], list[uuid.UUID]]]:
    """Creates users (no password: the fastest add Samba takes) and returns their objectGUIDs.

    Afterwards the groups, then the users, are deleted one by one: one tree delete of thousands
    of linked objects holds the shared DC's write lock for minutes (measured: 3,100 users, >60 s).
    The clean-up uses a new connection, as another test may have restarted the DC meanwhile.
    """

    def make(count: int, prefix: str) -> list[uuid.UUID]:
        prefix += uuid.uuid4().hex[:6]  # sAMAccountName is unique in the whole (shared) domain
        for i in range(count):
            user_dn = f"CN={prefix}{i},{test_ou}"
            assert ad_admin.add(user_dn, "user", {"sAMAccountName": f"{prefix}{i}"}), ad_admin.result
        guids = {}
        for entry in ad_admin.extend.standard.paged_search(
            test_ou, f"(&(objectClass=user)(cn={prefix}*))", attributes=["cn", "objectGUID"], paged_size=1000
        ):
            guids[entry["attributes"]["cn"][0]] = uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0])
        return [guids[f"{prefix}{i}"] for i in range(count)]

    yield make
    cleanup = connect(ad_settings)
    try:
        for object_class in ("group", "user"):
            _, _, found, _ = cleanup.search(test_ou, f"(objectClass={object_class})", ldap3.LEVEL, attributes=["cn"])
            for entry in [entry for entry in found if entry.get("type") == "searchResEntry"]:
                cleanup.delete(entry["dn"])
    finally:
        cleanup.unbind()


def run(directory: Directory, state: DesiredGroup) -> Convergence:
    return converge(directory, state, default_container=None, writer="test")


def members_of(ad_admin, test_ou: str, anchor: str) -> set[uuid.UUID]:
    """objectGUIDs of the direct members, read independently of the writer (through memberOf)."""
    ad_admin.search(test_ou, f"({ANCHOR}={anchor})", attributes=["cn"])
    [group] = ad_admin.response
    found = ad_admin.extend.standard.paged_search(
        test_ou, f"(memberOf={ldap3.utils.conv.escape_filter_chars(group['dn'])})", attributes=["objectGUID"],
        paged_size=1000,
    )  # fmt: skip
    return {uuid.UUID(bytes_le=entry["raw_attributes"]["objectGUID"][0]) for entry in found}


def test_a_5000_member_group_then_2000_removed_and_2000_added(
    directory: Directory, wiretap: Wiretap, make_users, ad_admin, test_ou: str, measured
) -> None:
    started = time.monotonic()
    users = make_users(7000, "m")
    measured(f"membership: 7,000 users created in {time.monotonic() - started:.1f} s")
    state = desired(test_ou, name="Big", members=users[:5000])

    started = time.monotonic()
    created = run(directory, state).result
    measured(f"membership: 5,000-member group created in {time.monotonic() - started:.2f} s")

    assert (created.action, created.status, created.members_added) == ("create", "success", 5000)
    assert members_of(ad_admin, test_ou, state.anchor) == set(users[:5000])
    # The first 1,000 members go into the add itself, the other 4,000 in modifies of 1,000.
    assert wiretap.member_modifies() == [MEMBER_CHUNK] * 4

    wiretap.clear()
    changed = state.model_copy(update={"members": user_members(users[2000:7000])})
    started = time.monotonic()
    result = run(directory, changed).result
    measured(f"membership: -2,000 +2,000 on the 5,000-member group applied in {time.monotonic() - started:.2f} s")

    assert (result.action, result.status) == ("update", "success")
    assert (result.members_added, result.members_removed) == (2000, 2000)
    assert members_of(ad_admin, test_ou, state.anchor) == set(users[2000:7000])
    assert sorted(wiretap.member_modifies()) == [1000] * 4  # 2 chunks removed, 2 added, none retried
    # The group's 5,000 members were read range by range from the real DC, with GUIDs.
    ranges = [name for attributes in wiretap.searches() for name in attributes if name.startswith("member;range=")]
    assert ranges == [
        "member;range=0-1499",
        "member;range=1500-2999",
        "member;range=3000-4499",
        "member;range=4500-5999",
    ]
    again = run(directory, changed).result
    assert (again.action, again.members_added, again.members_removed) == ("skip", 0, 0)


def test_members_missing_from_ad_are_warnings_and_the_rest_is_applied(
    directory: Directory, wiretap: Wiretap, make_users, ad_admin, test_ou: str
) -> None:
    users = make_users(30, "w")
    ghosts = [uuid.uuid4(), uuid.uuid4()]
    state = desired(test_ou, name="Ghosts", members=[*users[:15], ghosts[0], *users[15:], ghosts[1]])

    result = run(directory, state).result

    assert (result.status, result.members_added) == ("warning", 30)
    assert [w for w in result.warnings if "does not exist in AD" in w] == [
        w for w in result.warnings if str(ghosts[0]) in w or str(ghosts[1]) in w
    ] and len(result.warnings) == 2
    assert members_of(ad_admin, test_ou, state.anchor) == set(users)
    # The rejected chunk of 32 was halved down to the two ghosts (at most 1 + 2·2·log2(32) modifies),
    # not retried value by value (1 + 32).
    assert max(wiretap.member_modifies()) == 32 and len(wiretap.member_modifies()) <= 1 + 2 * 2 * 5


def test_a_member_already_there_or_already_gone_does_not_fail_the_group(
    directory: Directory, make_users, ad_admin, test_ou: str
) -> None:
    users = make_users(6, "d")
    state = desired(test_ou, name="Drift", members=users[:4])
    run(directory, state)
    current = directory.find_group(state.anchor)
    assert current is not None
    dn = current.dn
    # Between the writer's read and its write, someone adds one wanted member and removes one unwanted.
    target = state.model_copy(update={"members": user_members([*users[:2], *users[4:]])})
    stale_plan = plan(current, target, {}, base_dn=directory.base_dn)
    assert ad_admin.modify(dn, {"member": [(ldap3.MODIFY_ADD, [f"<GUID={users[4]}>"])]}), ad_admin.result
    assert ad_admin.modify(dn, {"member": [(ldap3.MODIFY_DELETE, [f"<GUID={users[3]}>"])]}), ad_admin.result
    applied = Applied()

    directory.apply(stale_plan, current, applied)

    assert (applied.members_added, applied.members_removed) == (1, 1)
    assert members_of(ad_admin, test_ou, state.anchor) == {*users[:2], *users[4:]}


@pytest.mark.parametrize("order", ["parent first", "child first"])
def test_nested_groups_in_either_order_with_pending_references(
    directory: Directory, ad_admin, test_ou: str, order: str
) -> None:
    child = desired(test_ou, name="Child")
    parent = desired(test_ou, name="Parent", groups=[child])
    pending = PendingReferences()
    pending.assign([0])
    pending.load(0, {})

    def converge_and_record(state: DesiredGroup) -> Convergence:
        outcome = run(directory, state)
        pending.record(state, 0, outcome.missing)
        if outcome.created:  # what ad.created announces
            pending.resolved([state.anchor])
        return outcome

    first, second = (parent, child) if order == "parent first" else (child, parent)
    outcomes = [converge_and_record(first), converge_and_record(second)]
    again = [converge_and_record(waiting.desired) for waiting in pending.due()]

    child_guid = directory.resolve_groups([child.anchor])[child.anchor]
    assert directory.find_group(parent.anchor).members == {child_guid}  # type: ignore[union-attr]
    assert len(pending) == 0 and pending.due() == []
    if order == "parent first":
        assert outcomes[0].missing == {child.anchor} and outcomes[0].result.status == "warning"
        assert [o.result.members_added for o in again] == [1]
    else:
        assert outcomes[1].missing == frozenset() and outcomes[1].result.members_added == 1
        assert again == []


async def test_waits_survive_a_restart_and_announcements_reach_the_parents_writer(
    kafka_settings: KafkaSettings, directory: Directory, ad_admin, test_ou: str
) -> None:
    """Through the real broker: ad.pending is read back on (re)assignment, ad.created is heard by every writer."""
    child, late = desired(test_ou, name="Child"), desired(test_ou, name="Late")
    parent = desired(test_ou, name="Parent", groups=[child, late])
    producer = kafka.producer(kafka_settings)
    await producer.start()
    parents_writer, childs_writer = PendingKafka(kafka_settings, producer), PendingKafka(kafka_settings, producer)
    try:
        await parents_writer.start()
        await parents_writer.load({2: None})
        await childs_writer.start()
        await childs_writer.load({1: None})
        outcome = run(directory, parent)
        assert outcome.missing == {child.anchor, late.anchor}
        for sent in await parents_writer.settle(parent, 2, outcome):
            await sent

        async def resolve(anchors: frozenset[str]) -> dict[str, uuid.UUID]:
            return directory.resolve_groups(anchors)

        # Another writer creates the child: its announcement brings the parent back.
        for sent in await childs_writer.settle(child, 1, run(directory, child)):
            await sent
        [waiting] = await until(
            lambda: parents_writer.due(resolve), "the parent's wait to become due", timeout=10, interval=0.1
        )
        outcome = run(directory, waiting.desired)
        assert (outcome.result.members_added, outcome.missing) == (1, {late.anchor})
        for sent in await parents_writer.settle(waiting.desired, 2, outcome):
            await sent
        assert await parents_writer.due(resolve) == []

        # The parent's writer stops; the last nested group is created meanwhile, unheard by anyone.
        await parents_writer.stop()
        run(directory, late)
        successor = PendingKafka(kafka_settings, producer)
        await successor.start()
        await successor.load({2: None})  # a fresh writer is assigned partition 2
        [waiting] = await successor.due(resolve)  # found by the one lookup after loading
        assert waiting.desired == parent and waiting.missing == {late.anchor}
        outcome = run(directory, waiting.desired)
        assert (outcome.result.members_added, outcome.missing) == (1, frozenset())
        for sent in await successor.settle(waiting.desired, 2, outcome):
            await sent
        await successor.stop()

        # Its wait is over: a tombstone, so the next owner resumes nothing.
        last = PendingKafka(kafka_settings, producer)
        await last.start()
        await last.load({2: None})
        assert len(last.references) == 0
        await last.stop()
    finally:
        await childs_writer.stop()
        await parents_writer.stop()
        await producer.stop()
    guids = directory.resolve_groups([child.anchor, late.anchor])
    assert directory.find_group(parent.anchor).members == set(guids.values())  # type: ignore[union-attr]


@pytest.mark.parametrize("order", ["parent first", "child first"])
async def test_a_running_writer_completes_nested_groups_in_either_order(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, ad_admin, test_ou: str, order: str
) -> None:
    """Through WriterService: the parent is completed when the child is created, without a new parent record."""
    from schemas.config import ProvisioningSettings, Settings

    settings = Settings(
        kafka=kafka_settings, ad=ad_settings, provisioning=ProvisioningSettings(target_container=test_ou)
    )
    child = desired(test_ou, name="Child")
    parent = desired(test_ou, name="Parent", groups=[child])
    async with Harness(settings) as writer:
        if order == "parent first":
            [waits] = await writer.converge(parent)
            assert (waits.action, waits.status) == ("create", "warning")
            seen = len(writer.results)
            await writer.publish(child)
            results = await writer.wait_results({child.group_id, parent.group_id}, after=seen)
            completed = next(r for r in results if r.group_id == parent.group_id)
        else:
            await writer.converge(child)
            [completed] = await writer.converge(parent)
            assert completed.action == "create"
        assert (completed.status, completed.members_added) == ("success", 1)

    ad_admin.search(test_ou, f"({ANCHOR}={child.anchor})", attributes=["cn"])
    child_dn = ad_admin.response[0]["dn"]
    ad_admin.search(test_ou, f"({ANCHOR}={parent.anchor})", attributes=["member"])
    assert [m.lower() for m in ad_admin.response[0]["attributes"]["member"]] == [child_dn.lower()]
