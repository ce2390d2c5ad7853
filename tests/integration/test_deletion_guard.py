"""The deletion guard in the processors, a real process on the real broker (no DC needed).

Threshold 500 as in production; the window is scaled down (WINDOW seconds) so that a held delete
is released within the test, yet long enough for the processors to fold 600 deletes inside it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import TopicPartition
from pydantic import BaseModel

from e2ad.control import send
from harness.services import free_port
from runtime import kafka
from schemas import topics
from schemas.changes import GroupChanged, GroupRemoved
from schemas.config import KafkaSettings
from schemas.control import ControlCommand
from schemas.deletes import StagedDelete
from schemas.desired import DesiredGroup
from schemas.results import ProvisioningResult
from schemas.status import ProcessorStatus
from tests.integration.smtp import Inbox, running_inbox
from tests.integration.stages import TopicWatcher, running_stage
from tests.polling import until

pytestmark = pytest.mark.integration

WINDOW = 6.0
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with running_inbox() as running:
        yield running


def env(kafka_settings: KafkaSettings, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "E2AD_PROVISIONING__TARGET_CONTAINER": "OU=Groups,DC=e2ad,DC=test",
        "E2AD_STATE_DIR": str(tmp_path / "state"),
        "E2AD_DELETES__THRESHOLD": "500",
        "E2AD_DELETES__WINDOW_SECONDS": str(WINDOW),
        **extra,
    }


def mail_env(port: int) -> dict[str, str]:
    return {
        "E2AD_NOTIFICATIONS__EMAIL__SMTP_HOST": "127.0.0.1",
        "E2AD_NOTIFICATIONS__EMAIL__SMTP_PORT": str(port),
        "E2AD_NOTIFICATIONS__EMAIL__SECURITY": "none",
        "E2AD_NOTIFICATIONS__EMAIL__FROM": "e2ad <e2ad@corp.example>",
        "E2AD_NOTIFICATIONS__EMAIL__TO": '["identity-admins@corp.example"]',
    }


def group_id(prefix: str, n: int) -> str:
    return f"{prefix}-{n:04d}-0000-4000-8000-000000000000"


def created(ids: list[str]) -> list[tuple[str, BaseModel]]:
    return [
        (
            gid,
            GroupChanged(
                id=gid,
                observed_at=NOW,
                attributes={"securityEnabled": True, "mailEnabled": False, "displayName": f"Group {gid[:9]}"},
            ),
        )
        for gid in ids
    ]


def removed(ids: list[str]) -> list[tuple[str, BaseModel]]:
    # Half soft-deleted ("changed": in the recycle bin), half hard-deleted.
    return [
        (gid, GroupRemoved(id=gid, observed_at=NOW, reason="changed" if i % 2 else "deleted"))
        for i, gid in enumerate(ids)
    ]


async def send_all(settings: KafkaSettings, topic: str, records: list[tuple[str, BaseModel]]) -> None:
    """Publish in one go (one batch per partition), not a round trip per record."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        sent = [await producer.send(topic, topics.encode(r), key=topics.key(k)) for k, r in records]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def command(settings: KafkaSettings, order: ControlCommand) -> None:
    await send_all(settings, topics.CONTROL, [("control", order)])


def optional(parse: Callable[[bytes], Any]) -> Callable[[bytes | None], Any]:
    return lambda value: None if value is None else parse(value)


def absent(desired: list[DesiredGroup], ids: set[str]) -> list[DesiredGroup]:
    return [d for d in desired if d.state == "absent" and d.group_id in ids]


def drained(condition: Callable[[], bool], watchers: list[TopicWatcher]) -> Callable[[], Awaitable[bool]]:
    """For `until` (interval=0): read what every watcher's topic holds now, then ask the condition."""

    async def check() -> bool:
        for watcher in watchers:
            await watcher.collect(0.2)
        return condition()

    return check


async def processors_committed(settings: KafkaSettings) -> int:
    """The offset the processors' consumer group has committed on e2ad.control (one partition)."""
    from processors.app import APP_ID

    reader = kafka.consumer(settings, group_id=APP_ID)
    await reader.start()
    try:
        return await reader.committed(TopicPartition(topics.CONTROL, 0)) or 0
    finally:
        await reader.stop()


async def processors_read_past(settings: KafkaSettings, offset: int) -> None:
    """Wait until the processors have applied and committed e2ad.control up to `offset`, inclusive.

    They commit a command once it is applied and its outputs are durable, in order: once past a
    marker command sent after the commands under test, those commands' records are all published.
    """

    async def past() -> bool:
        return await processors_committed(settings) > offset

    await until(past, f"the processors to commit {topics.CONTROL} past offset {offset}", timeout=60)


async def timer_running(log: Path) -> dt.datetime:
    """Wait until the processors' faust worker says it is ready (in its log); when it was seen.

    faust starts the app's tasks, the deletion guard's release timer among them, just before its
    worker says "Ready": from then on the timer ticks.
    """

    def ready() -> dt.datetime | None:
        return dt.datetime.now(dt.UTC) if "]: Ready" in log.read_text(errors="replace") else None

    return await until(ready, f"the processors' worker to be ready ({log.name})", timeout=120, interval=0.1)


async def folded_past(settings: KafkaSettings, desired: TopicWatcher, deadline: dt.datetime) -> None:
    """Wait until the guard has had its chance to release what it could release by `deadline`, then
    read ad.desired up to its end. `deadline`: a delete's arrival plus the window, and no earlier
    than the release timer is known to run.

    The window is elapsed time on the processors' clock (this host's): nothing but time passing
    lets a held delete out, so the wait for the deadline is a wait for time itself, not for
    nothing to happen. The positive signal that the processors got past it: a group created two
    timer ticks after the deadline, seen on ad.desired. The release timer asks for its turn every
    tick (TICK_SECONDS after its last), and turns are taken in the order asked, so a tick past the
    deadline ran before that create was folded in, and what it released was durable before the
    create's state was published. (It assumes the processors' loop is never stalled for a tick; if
    it were, the check could pass when it should fail, never fail when it should pass.)
    """
    from processors.app import TICK_SECONDS

    ticked = deadline + dt.timedelta(seconds=2 * TICK_SECONDS)
    await until(
        lambda: dt.datetime.now(dt.UTC) >= ticked, f"the clock to pass {ticked}", timeout=WINDOW + 60, interval=0.1
    )
    marker = group_id("m", next(_MARKERS))
    await send_all(settings, topics.GRAPH_CHANGES, created([marker]))
    await desired.wait_for(lambda d: d.group_id == marker and d.state == "present", timeout=60)
    await desired.read_to_end()


_MARKERS = itertools.count(1)  # the marker groups' numbers


async def test_a_burst_is_staged_survives_a_restart_and_is_applied_once_on_approval(
    kafka_settings: KafkaSettings, tmp_path: Path, inbox: tuple[Inbox, int]
) -> None:
    mails, smtp_port = inbox
    ids = [group_id("b", n) for n in range(600)]
    wanted = set(ids)
    canary = group_id("c", 1)
    web_port = free_port()
    settings = env(kafka_settings, tmp_path, E2AD_PROCESSORS__WEB_PORT=str(web_port), **mail_env(smtp_port))
    async with (
        TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired,
        TopicWatcher(kafka_settings, topics.AD_STAGED_DELETES, optional(StagedDelete.model_validate_json)) as staged,
        TopicWatcher(kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json) as results,
        TopicWatcher(kafka_settings, topics.STATUS, ProcessorStatus.model_validate_json) as status,
    ):
        watchers = [desired, staged, results, status]
        with running_stage("process", settings, tmp_path / "process-1.log"):
            await send_all(kafka_settings, topics.GRAPH_CHANGES, created(ids))
            await until(
                drained(lambda: len({d.group_id for d in desired.seen}) == 600, watchers),
                "the 600 groups on ad.desired",
                timeout=120,
                interval=0,
            )

            # 600 deletes (half soft, half hard) in one go, and a group created in the same batch.
            await send_all(kafka_settings, topics.GRAPH_CHANGES, [*removed(ids), *created([canary])])
            await desired.wait_for(lambda d: d.group_id == canary and d.state == "present", timeout=30)
            await until(
                drained(
                    lambda: (
                        len([s for s in staged.seen if s]) == 600
                        and len([r for r in results.seen if r.action == "StagedDelete"]) == 600
                        and any(s.state == "quarantined" and s.staged == 600 for s in status.seen)
                    ),
                    watchers,
                ),
                "600 staged deletes, their 600 results and a quarantined status with 600 staged",
                timeout=120,
                interval=0,
            )
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{web_port}/healthz") as health:
                    assert health.status == 503
                    assert (await health.json())["reason"] == "delete threshold exceeded"
                async with http.get(f"http://127.0.0.1:{web_port}/metrics") as metrics:
                    text = await metrics.text()
            assert "e2ad_processors_staged_deletes 600.0" in text
            assert "e2ad_processors_delete_threshold_exceeded 1.0" in text
            await until(lambda: len(mails.received) == 1, "the trip's e-mail", timeout=60)

        assert {s.group_id for s in staged.seen if s} == wanted
        assert {s.reason for s in staged.seen if s} == {"deleted in Entra", "soft-deleted in Entra"}
        result = next(r for r in results.seen if r.action == "StagedDelete")
        assert result.status == "skipped" and "e2ad deletes approve" in result.steps[-1].description
        message = mails.received[0]
        body = message.get_content()
        assert "600 group deletes held" in message["Subject"]
        for line in ("e2ad deletes list", "e2ad deletes approve --all", "e2ad deletes reject --all", "e2ad restart"):
            assert line in body
        assert "Group b-0000-0" in body and "... and 580 more" in body

        # Restarted while deletes are staged: still staged, still quarantined, nothing deleted.
        restarted_at = dt.datetime.now(dt.UTC)
        with running_stage("process", settings, tmp_path / "process-2.log"):
            again = await status.wait_for(
                lambda s: s.updated_at > restarted_at and s.state == "quarantined", timeout=120
            )
            # As read back: 600 staged, none waiting for the window.
            assert (again.staged, again.pending) == (600, 0)
            timer_started = await timer_running(tmp_path / "process-2.log")
            last_arrival = max(s.arrived_at for s in staged.seen if s)
            deadline = max(last_arrival + dt.timedelta(seconds=WINDOW), again.updated_at, timer_started)
            await folded_past(kafka_settings, desired, deadline)
            assert absent(desired.seen, wanted) == [], "a staged delete reached ad.desired"

            approval = ControlCommand(command="approve-deletes")
            await command(kafka_settings, approval)
            await until(
                drained(lambda: len(absent(desired.seen, wanted)) == 600, watchers),
                "the 600 approved deletes on ad.desired",
                timeout=120,
                interval=0,
            )
            await until(
                drained(lambda: sum(s is None for s in staged.seen) == 600, watchers),
                "600 tombstones on ad.staged-deletes",
                timeout=60,
                interval=0,
            )
            await status.wait_for(lambda s: s.state == "running" and s.staged == 0, timeout=60)
            await command(kafka_settings, approval)  # delivered again: applied once
            # The writers' command: the processors ignore it, and commit past it after the approval.
            marker = await send(kafka_settings, ControlCommand(command="clear-quarantine", writer="none"))
            await processors_read_past(kafka_settings, marker)
            staged_before = len(staged.seen)
            await desired.read_to_end()
            await staged.read_to_end()
            assert staged.seen[staged_before:] == [], "the approval repeated changed ad.staged-deletes"
        assert len(absent(desired.seen, wanted)) == 600
        assert len(mails.received) == 1, "one e-mail per trip"


async def test_below_the_threshold_deletes_pass_after_the_window_and_a_spread_burst_is_held_then_rejected(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    few = [group_id("f", n) for n in range(499)]
    spread = [group_id("s", n) for n in range(600)]
    async with (
        TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired,
        TopicWatcher(kafka_settings, topics.AD_STAGED_DELETES, optional(StagedDelete.model_validate_json)) as staged,
        TopicWatcher(kafka_settings, topics.STATUS, ProcessorStatus.model_validate_json) as status,
    ):
        watchers = [desired, staged, status]
        with running_stage("process", env(kafka_settings, tmp_path), tmp_path / "process.log") as process:
            await send_all(kafka_settings, topics.GRAPH_CHANGES, created(few + spread))
            await until(
                drained(lambda: len({d.group_id for d in desired.seen}) == 1099, watchers),
                "the 1099 groups on ad.desired",
                timeout=120,
                interval=0,
            )

            # 499 deletes in one go: held for the window, then all released.
            sent_at = asyncio.get_running_loop().time()
            await send_all(kafka_settings, topics.GRAPH_CHANGES, removed(few))
            await until(
                drained(lambda: len(absent(desired.seen, set(few))) == 499, watchers),
                "the 499 deletes released on ad.desired",
                timeout=120,
                interval=0,
            )
            assert asyncio.get_running_loop().time() - sent_at >= WINDOW - 0.5, "released before the window"
            assert [s for s in staged.seen if s] == []
            # No wait: a delete is released once it is one window old, so all 499 have left the
            # window, and the next burst is counted on its own (the burst_first_arrival check below).
            spread_sent_at = dt.datetime.now(dt.UTC)

            # 600 deletes in 30 rounds of 20, within the window: held the same way.
            for start in range(0, 600, 20):
                await send_all(kafka_settings, topics.GRAPH_CHANGES, removed(spread[start : start + 20]))
                await asyncio.sleep(0.05)
            await until(
                drained(lambda: len([s for s in staged.seen if s]) == 600, watchers),
                "600 staged deletes",
                timeout=120,
                interval=0,
            )
            await status.wait_for(lambda s: s.state == "quarantined", timeout=60)
            held = [s for s in staged.seen if s]
            assert min(s.burst_first_arrival for s in held) >= spread_sent_at, "the released deletes counted again"

            await command(kafka_settings, ControlCommand(command="reject-deletes"))
            await until(
                drained(lambda: sum(s is None for s in staged.seen) == 600, watchers),
                "600 tombstones on ad.staged-deletes",
                timeout=120,
                interval=0,
            )
            running = await status.wait_for(lambda s: s.state == "running" and s.staged == 0, timeout=60)
            last_arrival = max(s.arrived_at for s in held)
            await folded_past(
                kafka_settings, desired, max(last_arrival + dt.timedelta(seconds=WINDOW), running.updated_at)
            )
            assert absent(desired.seen, set(spread)) == [], "a rejected delete reached ad.desired"
            assert process.poll() is None
    log = (tmp_path / "process.log").read_text()
    assert "no e-mail is configured" in log
