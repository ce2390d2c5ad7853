"""`e2ad logs` on the real broker, over what a writer on the real DC logged: a real LDAP failure found by
--status, groups found by display name, --since leaving older records out, --json as on the topic."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sys
import uuid

import pytest

from harness.pipeline import command_environment
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings
from schemas.desired import anchor_of
from schemas.results import ProvisioningResult, ProvisioningStep
from tests.integration.helpers import Harness, desired
from tests.integration.stages import TopicWatcher, run_e2ad

pytestmark = pytest.mark.integration

BLUE, FINANCE_A, FINANCE_B, SLASHED, OLD, MISPLACED = (str(uuid.uuid4()) for _ in range(6))


def operator(kafka_settings: KafkaSettings) -> dict[str, str]:
    return {"E2AD_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers}


async def logs(kafka_settings: KafkaSettings, *args: str) -> str:
    return await run_e2ad(operator(kafka_settings), "logs", *args)


async def log_two_hours_ago(kafka_settings: KafkaSettings) -> None:
    """A record as a writer logged it two hours ago: the broker's timestamp says so too."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    old = ProvisioningResult(
        at=then,
        group_id=OLD,
        anchor=anchor_of(OLD),
        action="update",
        status="success",
        steps=[ProvisioningStep(name="export", status="success", description="updated description")],
    )
    producer = kafka.producer(kafka_settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            topics.AD_RESULTS, topics.encode(old), key=topics.key(OLD), timestamp_ms=int(then.timestamp() * 1000)
        )
    finally:
        await producer.stop()


async def test_logs_finds_a_real_failure_groups_by_name_and_only_what_is_newer_than_since(
    kafka_settings: KafkaSettings, writer: Harness, test_ou: str
) -> None:
    await log_two_hours_ago(kafka_settings)
    results = await writer.converge(
        desired(test_ou, BLUE, name="Team Blue"),
        desired(test_ou, FINANCE_A, name="Finance"),
        desired(test_ou, FINANCE_B, name="Finance"),
        # The DC refuses a / in sAMAccountName: constraintViolation (samba-ad-dc.md §4).
        desired(test_ou, SLASHED, name="Sales", create_only={"sAMAccountName": "sales/emea"}),
    )
    assert {r.group_id: r.status for r in results}[SLASHED] == "failure"

    failures = await logs(kafka_settings, "--status", "failure")
    assert f"create failure  Sales {SLASHED}" in failures, failures
    assert "LDAP 19: create CN=Sales_" in failures and "constraintViolation" in failures, failures
    assert "recommendation" in failures and "a sAMAccountName with a character AD refuses" in failures
    assert BLUE not in failures and FINANCE_A not in failures and OLD not in failures

    blue = await logs(kafka_settings, "--group", "team BLUE")
    assert f"create success  Team Blue {BLUE}" in blue, blue
    assert "modified displayName" in blue and "(none) → Team Blue" in blue
    assert {BLUE} == {g for g in (BLUE, FINANCE_A, FINANCE_B, SLASHED, OLD) if g in blue}

    finance = await logs(kafka_settings, "--group", "Finance")
    assert f"--group 'Finance' names 2 groups, all shown: {', '.join(sorted([FINANCE_A, FINANCE_B]))}" in finance
    assert finance.count("create success  Finance") == 2

    async with TopicWatcher(kafka_settings, topics.AD_RESULTS, lambda value: value) as topic:
        await topic.read_to_end()
    on_topic = {json.loads(value)["group_id"]: json.loads(value) for value in topic.seen}

    recent = [json.loads(line) for line in (await logs(kafka_settings, "--since", "1h", "--json")).splitlines()]
    assert sorted(r["group_id"] for r in recent) == sorted([BLUE, FINANCE_A, FINANCE_B, SLASHED])
    assert all(record == on_topic[record["group_id"]] for record in recent)
    everything = [json.loads(line) for line in (await logs(kafka_settings, "--json")).splitlines()]
    assert everything[0] == on_topic[OLD] and len(everything) == 5  # oldest first
    [newest] = [json.loads(line) for line in (await logs(kafka_settings, "--limit", "1", "--json")).splitlines()]
    assert newest == max(recent, key=lambda r: r["at"])


async def test_follow_prints_a_failure_logged_while_it_runs_until_ctrl_c(
    kafka_settings: KafkaSettings, writer: Harness, test_ou: str
) -> None:
    follow = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "e2ad", "logs", "--follow", "--status", "failure", "--json",
        env=command_environment(operator(kafka_settings)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert follow.stderr is not None and follow.stdout is not None
        # Once it has read the log to its end, it says so (on standard error, beside JSON), then waits.
        assert await asyncio.wait_for(follow.stderr.readline(), 20) == b"following ad.results (Ctrl-C ends it)\n"
        await writer.converge(desired(test_ou, MISPLACED, name="Legal", container=f"OU=Missing,{test_ou}"))
        record = json.loads(await asyncio.wait_for(follow.stdout.readline(), 20))
        assert (record["group_id"], record["status"], record["error_code"]) == (MISPLACED, "failure", 32)
    finally:
        follow.send_signal(signal.SIGINT)
        await asyncio.wait_for(follow.wait(), 20)
    assert follow.returncode == 0
