"""`e2ad quarantine status|clear`: each writer's state from e2ad.status; clearing through e2ad.control."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import click

from e2ad.control import issued_by, run_once, send
from runtime import kafka
from schemas import topics
from schemas.config import KafkaSettings
from schemas.control import ALL_WRITERS, ControlCommand
from schemas.status import INGEST_KEY, PROCESSORS_KEY, WriterStatus

if TYPE_CHECKING:
    from e2ad.cli import Context


@click.group()
def quarantine() -> None:
    """The writers' quarantine: consistent failures stop writing until a retry succeeds or it is cleared."""


@quarantine.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per writer.")
@click.pass_obj
def status(context: Context, as_json: bool) -> None:
    """Each writer's state as it last reported it: running, quarantined (why, since, next retry) or disabled."""
    settings = context.settings().kafka
    statuses = run_once(settings, lambda: read_statuses(settings))
    if not statuses:
        click.echo("no writer is reporting on " + topics.STATUS)
    for writer in statuses:
        click.echo(json.dumps(topics.jsonable(writer)) if as_json else describe(writer))


@quarantine.command("clear")
@click.option("--writer", default=ALL_WRITERS, show_default=True, help="The writer's name, or * for every writer.")
@click.pass_obj
def clear(context: Context, writer: str) -> None:
    """Make quarantined (or disabled) writers write again now, with fresh failure counts."""
    command = ControlCommand(command="clear-quarantine", writer=writer, issued_by=issued_by())
    settings = context.settings().kafka
    run_once(settings, lambda: send(settings, command))
    click.echo(f"asked {'every writer' if writer == ALL_WRITERS else writer} to leave quarantine")


async def read_statuses(settings: KafkaSettings) -> list[WriterStatus]:
    latest = await kafka.read_latest(settings, topics.STATUS)
    for stage in (PROCESSORS_KEY, INGEST_KEY):  # the stages' own records (ProcessorStatus, IngestStatus), not writers
        latest.pop(topics.key(stage), None)
    return sorted((topics.decode(WriterStatus, value) for value in latest.values()), key=lambda s: s.writer)


def describe(status: WriterStatus) -> str:
    """A few lines an operator reads at a glance."""
    line = f"{status.writer}: {status.state}"
    if status.state != "running":
        line += f" since {_time(status.since)} ({status.reason})"
        if status.next_retry:
            line += f", next retry {_time(status.next_retry)}"
        line += f", {status.retries} retries made"
    lines = [line]
    if status.detail:
        lines.append(f"  {status.detail}")
    if status.ad_unavailable_since:
        lines.append(f"  AD unavailable since {_time(status.ad_unavailable_since)}; partitions paused")
    lines.append(
        f"  groups decided {status.decided}, failing {status.failing}, with unresolved members "
        f"{status.reference_failing}; reported {_time(status.updated_at)}"
    )
    return "\n".join(lines)


def _time(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"
