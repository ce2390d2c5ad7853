"""Two `e2ad write` processes share ad.desired's partitions; one is stopped mid-run.

SIGTERM: the writer commits what it converged and leaves the group. SIGKILL: it dies with a
batch half applied and uncommitted. Either way the survivor takes over its partitions from their
last commit and converges the same desired states again; because the writer is level-triggered,
AD ends exactly as desired: every group once, with its latest attributes and members.

The takeover is the broker's group coordinator at work, so these tests run on a broker whose
coordinator expires a silent member as Apache Kafka does (failover_kafka_settings).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2

from harness.pipeline import settings_environment
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.desired import DesiredGroup
from schemas.results import ProvisioningResult
from tests.integration.helpers import ANCHOR, desired, object_guid, renamed, user_members
from tests.integration.stages import TopicWatcher, publish, running_stage
from tests.polling import until

pytestmark = pytest.mark.integration

GROUPS = 200
PARTITIONS = 4  # failover_kafka_settings' partitions
WAIT_SECONDS = 120


def with_members(state: DesiredGroup, guids: list[uuid.UUID]) -> DesiredGroup:
    return state.model_copy(update={"members": user_members(guids)})


def groups_in_ad(ad_admin, ou: str) -> dict[str, list[dict]]:
    """Every anchored group below the OU, by anchor: a list, so that duplicates would show."""
    ad_admin.search(ou, f"(&(objectClass=group)({ANCHOR}=*))", attributes=[ANCHOR, "description", "member"])
    found: dict[str, list[dict]] = {}
    for entry in ad_admin.response:
        attributes = entry["attributes"]
        found.setdefault(attributes[ANCHOR][0], []).append(attributes)
    return found


@dataclasses.dataclass
class Workload:
    """GROUPS groups created, then each changed once: latest is what AD must end as."""

    users: list[tuple[str, uuid.UUID]]
    created: list[DesiredGroup]
    latest: dict[str, DesiredGroup]
    env: dict[str, str]


@pytest.fixture
def workload(failover_kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin) -> Workload:
    users = []
    for i in range(6):
        dn = f"CN=member{i},{test_ou}"
        assert ad_admin.add(dn, "user", {"sAMAccountName": f"m{uuid.uuid4().hex[:14]}"}), ad_admin.result
        users.append((dn, object_guid(ad_admin, dn)))
    guids = [guid for _, guid in users]
    created = [
        with_members(desired(test_ou, name=f"Scale{i}"), [guids[i % 6], guids[(i + 1) % 6]]) for i in range(GROUPS)
    ]
    latest = {
        state.group_id: with_members(renamed(state, description=f"second version of {i}"), [guids[(i + 2) % 6]])
        for i, state in enumerate(created)
    }
    settings = Settings(
        kafka=failover_kafka_settings, ad=ad_settings, provisioning=ProvisioningSettings(target_container=test_ou)
    )
    return Workload(users, created, latest, settings_environment(settings))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
async def test_two_writers_one_stopped_mid_run_the_survivor_takes_over(
    sig: int,
    workload: Workload,
    failover_kafka_settings: KafkaSettings,
    test_ou: str,
    ad_admin,
    tmp_path: Path,
    measured: Callable[[str], None],
) -> None:
    how = signal.Signals(sig).name
    async with TopicWatcher(
        failover_kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json
    ) as results:
        with (
            running_stage("write", writer_env(workload, "writer-a"), tmp_path / "a.log") as writer_a,
            running_stage("write", writer_env(workload, "writer-b"), tmp_path / "b.log") as writer_b,
        ):
            orphaned = await _run_until_stopped(results, workload, failover_kafka_settings, writer_a, sig)
            stopped = time.monotonic()
            seen_at_stop = len(results.seen)

            def taken_over() -> bool:
                after = results.seen[seen_at_stop:]
                return any(r.writer == "writer-b" and partition_of(r.group_id) in orphaned for r in after)

            await _until(results, taken_over, "the survivor to take over the stopped writer's partitions")
            measured(f"writer scale-out: survivor converges the partitions of a writer {_since(stopped)} after {how}")
            found = await _until_converged(results, workload, ad_admin, test_ou)
            measured(f"writer scale-out: AD exactly as desired {_since(stopped)} after {how} ({GROUPS} groups)")
            assert writer_b.poll() is None, "the surviving writer died; see b.log"
    _assert_exactly_once(found, workload, results)


def writer_env(workload: Workload, name: str) -> dict[str, str]:
    return {**workload.env, "E2AD_WRITER__NAME": name}


async def _run_until_stopped(
    results: TopicWatcher, workload: Workload, kafka_settings: KafkaSettings, writer: subprocess.Popen[bytes], sig: int
) -> set[int]:
    """Feed the workload to both writers and stop writer-a mid-run: the partitions it was deciding then."""
    name = "writer-a"

    def decided_by(writer_name: str) -> list[ProvisioningResult]:
        return [r for r in results.seen if r.writer == writer_name]

    # Feed the first groups slowly until both writers decide some: both own partitions then. A
    # group join can take many seconds (tansu waits half the session timeout, once 18 s measured).
    fed = 0

    async def both_deciding() -> bool:
        nonlocal fed
        if decided_by(name) and decided_by("writer-b"):
            return True
        if fed < GROUPS:
            await publish(kafka_settings, topics.AD_DESIRED, [(s.group_id, s) for s in workload.created[fed : fed + 2]])
            fed += 2
        await results.collect(0.3)
        return False

    await until(
        both_deciding, "the two writers to share the partitions; see their logs", timeout=WAIT_SECONDS, interval=0
    )
    await publish(kafka_settings, topics.AD_DESIRED, [(s.group_id, s) for s in workload.created[fed:]])
    await publish(kafka_settings, topics.AD_DESIRED, [(s.group_id, s) for s in workload.latest.values()])

    done_before = len(decided_by(name))
    await results.wait_for(lambda r: r.writer == name and len(decided_by(name)) >= done_before + 30)
    os.kill(writer.pid, sig)
    writer.wait(timeout=30)
    return {partition_of(r.group_id) for r in decided_by(name)[done_before:]}


async def _until_converged(results: TopicWatcher, workload: Workload, ad_admin, test_ou: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}

    def converged() -> bool:
        found.clear()
        found.update(groups_in_ad(ad_admin, test_ou))
        return _as_desired(found, workload.latest, workload.users)

    await _until(results, converged, "AD to converge to the latest desired states")
    return found


def _assert_exactly_once(found: dict[str, list[dict]], workload: Workload, results: TopicWatcher) -> None:
    assert set(found) == {state.anchor for state in workload.latest.values()}
    assert all(len(objects) == 1 for objects in found.values()), "a group exists twice"
    creates = Counter(r.group_id for r in results.seen if r.action == "create")
    assert max(creates.values()) == 1  # a create is never repeated: the next writer finds the group by anchor
    assert [r for r in results.seen if r.status == "failure"] == []


def _as_desired(found: dict[str, list[dict]], latest: dict[str, DesiredGroup], users: list) -> bool:
    dn_of = {str(guid): dn.lower() for dn, guid in users}
    for state in latest.values():
        objects = found.get(state.anchor, [])
        if len(objects) != 1 or objects[0].get("description") != [state.attributes["description"]]:
            return False
        members = {m.lower() for m in objects[0].get("member", [])}
        if members != {dn_of[m.object_guid] for m in state.members if m.object_guid}:
            return False
    return len(found) == len(latest)


async def _until(results: TopicWatcher, condition: Callable[[], bool], what: str) -> None:
    """Until the condition holds, the watcher collecting what arrives meanwhile."""

    async def met() -> bool:
        if condition():
            return True
        await results.collect(0.3)
        return False

    # Generous: other test sessions may load the shared DC; alone this takes seconds.
    await until(met, f"{what}; see the writers' logs", timeout=WAIT_SECONDS, interval=0)


def partition_of(group_id: str) -> int:
    """The partition of ad.desired (and ad.results) a group's records go to: Kafka's default partitioner."""
    return (murmur2(topics.key(group_id)) & 0x7FFFFFFF) % PARTITIONS


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"
