"""`e2ad logs`: the provisioning log (ad.results), selected and rendered like Entra's provisioning logs.

--since starts each partition at the broker's offset for that time (offsets_for_times), so asking
for the last hour of a 30-day log reads the last hour. Group names come from the latest ad.desired
records and from the log itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, get_args

import click
import pydantic
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rich.console import Console

from e2ad.control import run_once
from e2ad.logs import Entry, Selection, group_names, groups_named, is_group_id, newest, parse_time, render, start_offset
from runtime import kafka
from runtime.errors import error_lines
from schemas import topics
from schemas.config import KafkaSettings
from schemas.desired import DesiredGroup
from schemas.results import Action, ProvisioningResult, Status

if TYPE_CHECKING:
    from e2ad.cli import Context

DEFAULT_LIMIT = 50
FOLLOW_POLL_MS = 1000


class TimeParameter(click.ParamType):
    """A duration before now (30s, 15m, 1h, 2d) or an ISO 8601 time; click names the option when it fails."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            return parse_time(str(value), dt.datetime.now(dt.UTC))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command()
@click.option("--group", "group", metavar="ID|NAME", help="A group's Entra object id, or its display name (any case).")
@click.option(
    "--action", "actions", multiple=True, type=click.Choice(get_args(Action)), help="Only these actions (repeatable)."
)
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice(get_args(Status)), help="Only these statuses (repeatable)."
)
@click.option("--since", type=TimeParameter(), help="Records from this time on: 30s, 15m, 1h, 2d ago, or ISO 8601.")
@click.option("--until", type=TimeParameter(), help="Records before this time: as --since.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="The newest N records that match.",
)
@click.option("--follow", is_flag=True, help="Then print new records as they arrive, until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line: the record as it is on ad.results.")
@click.pass_obj
def logs(
    context: Context,
    group: str | None,
    actions: tuple[Action, ...],
    statuses: tuple[Status, ...],
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    follow: bool,
    as_json: bool,
) -> None:
    """The provisioning log: what the writers and processors decided for each group, newest last."""
    if since is not None and until is not None and until <= since:
        raise click.BadParameter(
            f"{until:%Y-%m-%d %H:%M:%S%z} is not after --since {since:%Y-%m-%d %H:%M:%S%z}", param_hint="'--until'"
        )
    if follow and until is not None:
        raise click.BadParameter("--follow prints records as they arrive: it takes no end", param_hint="'--until'")
    if group is not None and not group.strip():
        raise click.BadParameter("names no group: give its object id or display name", param_hint="'--group'")
    settings = context.settings().kafka
    by_id = group.strip().lower() if group and is_group_id(group.strip()) else None
    selection = Selection(
        group_ids=frozenset({by_id}) if by_id else None,
        actions=frozenset(actions),
        statuses=frozenset(statuses),
        since=since,
        until=until,
    )
    output = Output(as_json, Console(highlight=False, markup=False, soft_wrap=False))

    async def command() -> None:
        reader = kafka.consumer(settings, group_id=None)
        await reader.start()
        try:
            await _show_log(reader, settings, selection, group if group and not by_id else None, limit, output, follow)
        finally:
            await kafka.stop_quietly(reader)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow: what was printed is the answer
        run_once(settings, command)


@dataclass(frozen=True)
class Output:
    """Records rendered for a person, or as JSON lines; a note goes where it leaves JSON parseable."""

    as_json: bool
    console: Console

    def records(self, entries: list[Entry], names: dict[str, str]) -> None:
        if self.as_json:
            for entry in entries:
                click.echo(entry.value.decode())
        else:
            render(entries, names, self.console)

    def note(self, text: str) -> None:
        click.echo(text, err=self.as_json)


async def _show_log(
    reader: AIOKafkaConsumer,
    settings: KafkaSettings,
    selection: Selection,
    name: str | None,
    limit: int,
    output: Output,
    follow: bool,
) -> None:
    """Print the newest `limit` matching records; with `follow`, then every new one until cancelled."""
    found = sorted(reader.partitions_for_topic(topics.AD_RESULTS) or ())
    if not found:
        raise click.ClickException(f"{topics.AD_RESULTS} does not exist: no stage has run against this Kafka yet")
    partitions = [TopicPartition(topics.AD_RESULTS, p) for p in found]
    # Only when age alone leaves records out are the newest N among each partition's last N.
    tail = None if name is not None or selection.by_content else limit
    entries = await _read_to_end(reader, partitions, selection, tail)
    # JSON lines carry no names: ad.desired is read only to render, or to resolve --group NAME.
    named = name is not None or not output.as_json
    names = group_names(await _desired_names(settings) if named else {}, entries)
    if name is not None:
        selection = replace(selection, group_ids=frozenset(_named(name, names, output)))
        entries = [entry for entry in entries if selection(entry.result)]
    shown = newest(entries, limit)
    if not shown and not follow:
        output.note(f"no record on {topics.AD_RESULTS} matches")
    output.records(shown, names)
    if follow:
        output.note(f"following {topics.AD_RESULTS} (Ctrl-C ends it)")
    while follow:
        arrived = _matching(await reader.getmany(timeout_ms=FOLLOW_POLL_MS), selection)
        if arrived:
            # A group new since the start has its name on ad.desired by now (published before its result).
            unnamed = not output.as_json and any(entry.result.group_id.lower() not in names for entry in arrived)
            names.update(group_names(await _desired_names(settings) if unnamed else {}, arrived))
            output.records(newest(arrived, len(arrived)), names)


def _named(name: str, names: dict[str, str], output: Output) -> list[str]:
    """The ids of the groups of that display name; several are all shown, and the operator is told."""
    ids = groups_named(name, names)
    if not ids:
        raise click.ClickException(
            f"--group {name!r}: no group of that display name on {topics.AD_DESIRED} or in the log"
        )
    if len(ids) > 1:
        output.note(f"--group {name!r} names {len(ids)} groups, all shown: {', '.join(ids)}")
    return ids


async def _read_to_end(
    reader: AIOKafkaConsumer, partitions: list[TopicPartition], selection: Selection, tail: int | None
) -> list[Entry]:
    """The matching records up to each partition's end as it is now (and any that arrive meanwhile);
    the reader stays there, for --follow. `tail`: read at most that many records of each partition."""
    reader.assign(partitions)
    end = await reader.end_offsets(partitions)
    beginning = await reader.beginning_offsets(partitions)
    at_since: dict[TopicPartition, int | None] = dict.fromkeys(partitions)
    if selection.since is not None:
        # The first record produced at or after --since: a record decided after it was produced after it.
        since_ms = int(selection.since.timestamp() * 1000)
        offsets = await reader.offsets_for_times(dict.fromkeys(partitions, since_ms))
        at_since = {tp: found.offset if (found := offsets.get(tp)) else end[tp] for tp in partitions}
    for tp in partitions:
        reader.seek(tp, start_offset(beginning[tp], end[tp], at_since[tp], tail))
    entries: list[Entry] = []
    while any([await reader.position(tp) < end[tp] for tp in partitions]):
        entries.extend(_matching(await reader.getmany(*partitions, timeout_ms=500), selection))
    return entries


def _matching(batch: Mapping[TopicPartition, list[ConsumerRecord[bytes, bytes]]], selection: Selection) -> list[Entry]:
    entries = []
    for tp, records in batch.items():
        for record in records:
            if record.value is None:
                continue
            try:
                entry = Entry(topics.decode(ProvisioningResult, record.value), record.value)
            except pydantic.ValidationError as exc:
                where = f"{tp.topic} partition {tp.partition} offset {record.offset}"
                raise click.ClickException(
                    f"{where} is not a provisioning-log record: {'; '.join(error_lines(exc))}"
                ) from None
            if selection(entry.result):
                entries.append(entry)
    return entries


async def _desired_names(settings: KafkaSettings) -> dict[str, str | None]:
    desired = (
        topics.decode(DesiredGroup, value) for value in (await kafka.read_latest(settings, topics.AD_DESIRED)).values()
    )
    return {state.group_id: _name(state.attributes.get("displayName")) for state in desired}


def _name(value: object) -> str | None:
    return value if isinstance(value, str) else None
