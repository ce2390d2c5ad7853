"""`e2ad replay STAGE --from …`: re-run a stage over past records by moving its consumer group's offsets.

The plan (e2ad/replay.py) is printed first; --dry-run stops there. The stage must be stopped: a
running member would keep its own position and commit over the moved offsets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING

import click
from aiokafka import TopicPartition

from e2ad.control import run_once
from e2ad.replay import Origin, ReplayError, ReplayPlan, Stage, describe_plan, parse_origin, plan_replay, stage_named
from e2ad.topics import running_members
from processors.state import replay_writes
from runtime import kafka
from runtime.kafka import stop_quietly
from schemas import topics
from schemas.config import KafkaSettings

if TYPE_CHECKING:
    from e2ad.cli import Context

log = logging.getLogger(__name__)
# How often --wait asks the broker whether the stage's consumer group is empty yet.
WAIT_POLL_SECONDS = 1.0


class StageRunning(RuntimeError):
    """The stage's consumer group still has members."""


@click.command()
@click.argument("stage", type=click.Choice(["processors", "writers", "ingest"]))
@click.option(
    "--from",
    "origin",
    required=True,
    metavar="TIME|OFFSET",
    help="`beginning`, an ISO-8601 time (UTC unless it says), a time ago (30m, 2h, 1d), an offset for every"
    " partition, or P:OFFSET[,P:OFFSET…] for those partitions only.",
)
@click.option(
    "--to",
    "until",
    metavar="TIME",
    help="Not supported yet: a replay reads every partition to its current end (see docs/operations.md).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (topic, partitions, offsets, records) and change nothing."
)
@click.option("--wait", is_flag=True, help="Wait until the stage's consumer group is empty instead of refusing.")
@click.option("--wait-timeout", default=120.0, show_default=True, metavar="SECONDS", help="How long --wait waits.")
@click.pass_obj
def replay(
    context: Context, stage: str, origin: str, until: str | None, dry_run: bool, wait: bool, wait_timeout: float
) -> None:
    """Re-run STAGE (processors or writers) over past records of its input topic.

    processors: from `beginning` the state is rebuilt from graph.changes' offset 0; from a time or
    offset the records are folded again onto the current state. Nothing reaches ad.desired until
    every partition is folded up to where it ended when the replay was issued; then every group's
    desired state is published once. writers: ad.desired is read again from there; below the end
    each partition had, only the latest desired state of each group is applied, so AD converges to
    the groups' latest states (never to an earlier one) and drift made by hand is repaired.
    """
    try:
        chosen = stage_named(stage)
        if until is not None:
            raise ReplayError(_no_to(chosen))
        start = parse_origin(origin, dt.datetime.now(dt.UTC))
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    settings = context.settings().kafka
    try:
        plan = run_once(settings, lambda: look_up(settings, chosen, start))
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    for line in describe_plan(plan):
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing changed")
        return
    try:
        run_once(settings, lambda: apply(settings, plan, wait_seconds=wait_timeout if wait else None))
    except StageRunning as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"replay planned: start the {chosen.name} ({'e2ad process' if chosen.name == 'processors' else 'e2ad write'})"
    )


def _no_to(stage: Stage) -> str:
    if stage.name == "processors":
        return (
            "--to: the processors' state folds every change; stopped at a time, the later changes would be"
            " missing from it and the desired states published from it stale"
        )
    return (
        "--to: not supported yet for the writers: a replay reads ad.desired to its end, and every group with"
        " a record since --from converges to its latest desired state"
    )


async def look_up(settings: KafkaSettings, stage: Stage, origin: Origin) -> ReplayPlan:
    """The plan, from the stage topic's offsets as they are now."""
    await kafka.ensure_topics(settings)
    reader = kafka.consumer(settings, group_id=None)
    try:
        await reader.start()
        partitions = [TopicPartition(stage.topic, p) for p in sorted(reader.partitions_for_topic(stage.topic) or ())]
        beginnings = {tp.partition: o for tp, o in (await reader.beginning_offsets(partitions)).items()}
        ends = {tp.partition: o for tp, o in (await reader.end_offsets(partitions)).items()}
        by_time = None
        if origin.at is not None:
            found = await reader.offsets_for_times(dict.fromkeys(partitions, int(origin.at.timestamp() * 1000)))
            by_time = {tp.partition: None if at is None else at.offset for tp, at in found.items()}
    finally:
        await stop_quietly(reader)
    committed = await kafka.committed_offsets(settings, stage.group, partitions)
    return plan_replay(stage, origin, beginnings=beginnings, ends=ends, committed=committed, by_time=by_time)


async def _members(settings: KafkaSettings, group: str) -> list[str]:
    return (await running_members(settings, [group])).get(group, [])


async def apply(settings: KafkaSettings, plan: ReplayPlan, *, wait_seconds: float | None) -> None:
    """Move the group's offsets (and for the processors their state) once the stage has no member."""
    stage = plan.stage
    running = await _members(settings, stage.group)
    deadline = asyncio.get_running_loop().time() + (wait_seconds or 0)
    while running and wait_seconds is not None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(WAIT_POLL_SECONDS)
        running = await _members(settings, stage.group)
    if running:
        waited = f"still after {wait_seconds:g} s" if wait_seconds is not None else "now"
        raise StageRunning(
            f"the {stage.name} are running ({stage.group} has {len(running)} members {waited}: {', '.join(running)})."
            f" Stop them first, or pass --wait. A member killed without a clean stop stays listed on the"
            f" embedded broker (noida-db never expires one): there, stop stages with SIGTERM, not SIGKILL."
        )
    # Offsets first: cut off after them, the processors skip what their state already holds.
    committer = kafka.consumer(settings, group_id=stage.group)
    try:
        await committer.start()
        offsets = {TopicPartition(stage.topic, p): start for p, start in plan.starts().items()}
        if offsets:
            committer.assign(list(offsets))
            await committer.commit(offsets)
    finally:
        await stop_quietly(committer)
    if stage.name == "processors":
        latest = await kafka.read_latest(settings, topics.PROCESSORS_STATE) if plan.fresh else {}
        writes = replay_writes(latest, stage.topic, plan.starts(), plan.ends(), fresh=plan.fresh)
        producer = kafka.producer(settings)
        await producer.start()
        try:
            sent = [await producer.send(topics.PROCESSORS_STATE, value, key=key) for key, value in writes]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
    log.info("replay of the %s applied: %d records from %s", stage.name, plan.records, stage.topic)
