"""Crash drills: a stage killed with SIGKILL, twice, is started again by the pipeline and consumes again.

On the embedded broker a member that died without leaving is never expired, so this only works
because each stage is a static group member (kafka.group_instance_id, set by the Pipeline) that
its restarted self replaces (docs/architecture.md, the embedded broker's limits).
"""

from __future__ import annotations

import datetime as dt
import signal
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from e2ad.topics import running_members
from harness.pipeline import Pipeline
from harness.services import free_port
from harness.standin import running_standin
from ingest.graph_worker import CONSUMER_GROUP as GRAPH_WORKER
from processors.app import APP_ID as PROCESSORS
from runtime import kafka
from schemas import topics
from schemas.changes import GroupChanged
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from schemas.desired import DesiredGroup
from schemas.notifications import ChangeNotification, NotificationBatch, ResourceData
from schemas.results import ProvisioningResult
from tests.integration.helpers import desired as desired_group
from tests.integration.stages import TopicWatcher, publish
from tests.polling import until
from writers.service import CONSUMER_GROUP as WRITERS

pytestmark = [pytest.mark.integration, pytest.mark.drill]

KILLS = 2
TARGET = "OU=Groups,DC=e2ad,DC=test"
SECURITY = {"securityEnabled": True, "mailEnabled": False}


async def members(settings: KafkaSettings, group: str) -> int:
    """How many members the broker counts in a consumer group now."""
    return len((await running_members(settings, [group])).get(group, []))


async def kill(stages: Pipeline, stage: str, times_killed: int) -> None:
    """SIGKILL the stage's process and wait until the pipeline has started it again."""
    process = stages.processes[stage]
    process.send_signal(signal.SIGKILL)
    assert await process.wait() == -signal.SIGKILL

    def restarted() -> bool:
        return stages.restarts.get(stage) == times_killed and stages.processes[stage].returncode is None

    await until(restarted, f"{stage} started again after kill {times_killed}", timeout=30)


async def test_the_processors_killed_twice_fold_new_changes_again(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    settings = Settings(
        kafka=kafka_settings, provisioning=ProvisioningSettings(target_container=TARGET), state_dir=tmp_path / "state"
    )
    groups = [str(uuid.uuid4()) for _ in range(KILLS + 1)]

    async def folded(kafka_settings: KafkaSettings, desired: TopicWatcher[DesiredGroup], group: str) -> None:
        change = GroupChanged(
            id=group, observed_at=dt.datetime.now(dt.UTC), attributes={**SECURITY, "displayName": group}
        )
        await publish(kafka_settings, topics.GRAPH_CHANGES, [(group, change)])
        await desired.wait_for(lambda d: d.group_id == group, timeout=60)

    async with (
        TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired,
        Pipeline(settings, stages=("process",), log_dir=tmp_path / "logs", restart=True) as stages,
    ):
        await folded(kafka_settings, desired, groups[0])
        for times_killed, group in enumerate(groups[1:], start=1):
            await kill(stages, "process", times_killed)
            # Records published after the kill wait for the restarted processor: it must own the partitions.
            await folded(kafka_settings, desired, group)
        assert await members(kafka_settings, PROCESSORS) == 1  # the killed members were replaced, not kept
    assert await members(kafka_settings, PROCESSORS) == 0  # a clean stop leaves the group


def hint(group_id: str) -> NotificationBatch:
    notification = ChangeNotification(
        subscription_id="00000000-0000-0000-0000-0000000000aa",
        change_type="updated",
        resource=f"Groups/{group_id}",
        resource_data=ResourceData(id=group_id),
    )
    return NotificationBatch(
        received_at=dt.datetime.now(dt.UTC), endpoint="notifications", notifications=[notification]
    )


async def test_the_graph_worker_killed_twice_serves_new_hints_again(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with running_standin() as standin:
        settings = Settings(
            kafka=kafka_settings,
            # Rounds only at start and on hints: a hint served is a hint consumed, then committed.
            graph=standin.graph_settings(delta_interval_seconds=3600, hint_debounce_seconds=0.2),
            webhook=WebhookSettings(listen_port=free_port()),
            provisioning=ProvisioningSettings(target_container=TARGET),
            state_dir=tmp_path / "state",
        )
        producer = kafka.producer(kafka_settings)
        await producer.start()
        committer = kafka.consumer(kafka_settings, group_id=GRAPH_WORKER)  # reads the group's offsets, joins nothing
        await committer.start()

        async def served(group_id: str) -> None:
            sent = await producer.send_and_wait(
                topics.GRAPH_NOTIFICATIONS, topics.encode(hint(group_id)), key=topics.key(group_id)
            )
            partition = TopicPartition(topics.GRAPH_NOTIFICATIONS, sent.partition)

            async def committed_past_the_hint() -> bool:
                return (await committer.committed(partition) or 0) > sent.offset

            await until(committed_past_the_hint, f"the hint for {group_id} consumed and committed", timeout=60)

        try:
            async with Pipeline(settings, stages=("ingest",), log_dir=tmp_path / "logs", restart=True) as stages:
                await served(standin.tenant.add_group("drill 0", securityEnabled=True).object_id)
                for times_killed in range(1, KILLS + 1):
                    await kill(stages, "ingest", times_killed)
                    await served(standin.tenant.add_group(f"drill {times_killed}", securityEnabled=True).object_id)
                assert await members(kafka_settings, GRAPH_WORKER) == 1
            assert await members(kafka_settings, GRAPH_WORKER) == 0
        finally:
            await kafka.stop_quietly(committer)
            await producer.stop()


async def test_the_writer_killed_twice_converges_new_groups_again(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, tmp_path: Path
) -> None:
    settings = Settings(
        kafka=kafka_settings,
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=test_ou),
        state_dir=tmp_path / "state",
    )

    async def converged(results: TopicWatcher[ProvisioningResult], name: str) -> None:
        state = desired_group(test_ou, name=name)
        await publish(kafka_settings, topics.AD_DESIRED, [(state.group_id, state)])
        result = await results.wait_for(lambda r: r.group_id == state.group_id, timeout=60)
        assert (result.action, result.status) == ("create", "success"), result

    async with (
        TopicWatcher(kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json) as results,
        Pipeline(settings, stages=("write",), log_dir=tmp_path / "logs", restart=True) as stages,
    ):
        await converged(results, "Drill0")
        for times_killed in range(1, KILLS + 1):
            await kill(stages, "write", times_killed)
            await converged(results, f"Drill{times_killed}")
        assert await members(kafka_settings, WRITERS) == 1
    assert await members(kafka_settings, WRITERS) == 0
