"""`e2ad replay`'s plan: which offsets a stage's consumer group is moved to, and how many records that re-reads.

Pure: the command (e2ad/cli_replay.py) looks the offsets up in Kafka and applies the plan. A
replay is safe because of what the stages are (docs/operations.md): the processors fold every
change into state and publish nothing while below the replay's horizon; the writers converge
each group to its latest desired state only (writers/backlog.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from e2ad.logs import parse_time
from schemas import topics


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str  # the records it replays
    group: str  # the consumer group whose offsets move


class ReplayError(ValueError):
    """A replay that cannot be planned: the message names the option or the stage."""


# The consumer groups are the stages' own (processors/app.py APP_ID, writers/service.py CONSUMER_GROUP).
STAGES = {
    "processors": Stage("processors", topics.GRAPH_CHANGES, "e2ad-processors"),
    "writers": Stage("writers", topics.AD_DESIRED, "e2ad-writers"),
}
BEGINNING = "beginning"
_PARTITION_OFFSET = re.compile(r"^(\d+):(\d+)$")


def stage_named(name: str) -> Stage:
    if name == "ingest":
        raise ReplayError(
            "ingest has nothing to replay: graph.notifications are only hints that a delta round is due,"
            " and the delta query is the truth. Run `e2ad restart` for a full delta round instead."
        )
    try:
        return STAGES[name]
    except KeyError:
        raise ReplayError(f"STAGE {name!r} is not one of {', '.join(STAGES)}") from None


@dataclass(frozen=True)
class Origin:
    """Where a replay starts: the beginning, a time, or offsets (None for a partition: every partition)."""

    at: dt.datetime | None = None
    offsets: Mapping[int | None, int] | None = None

    @property
    def beginning(self) -> bool:
        return self.at is None and self.offsets is None


def parse_origin(text: str, now: dt.datetime) -> Origin:
    """--from: `beginning`, a time (as `e2ad logs --since` takes one), an offset, or P:OFFSET[,P:OFFSET…]."""
    if text == BEGINNING:
        return Origin()
    if text.isdigit():
        return Origin(offsets={None: int(text)})
    if ":" in text and all(_PARTITION_OFFSET.match(part) for part in text.split(",")):
        pairs = [_PARTITION_OFFSET.match(part) for part in text.split(",")]
        return Origin(offsets={int(m[1]): int(m[2]) for m in pairs if m is not None})
    try:
        return Origin(at=parse_time(text, now))
    except ValueError as exc:
        raise ReplayError(f"--from: {exc}, nor `beginning`, an offset or P:OFFSET") from None


@dataclass(frozen=True)
class PartitionReplay:
    partition: int
    start: int  # the first offset read again
    end: int  # the partition's end when the replay is issued: the horizon

    @property
    def records(self) -> int:
        """Offsets read again; a compacted topic may hold fewer records in that range."""
        return self.end - self.start


@dataclass(frozen=True)
class ReplayPlan:
    stage: Stage
    origin: Origin
    partitions: tuple[PartitionReplay, ...]

    @property
    def fresh(self) -> bool:
        """From the beginning: the processors fold graph.changes into an empty state."""
        return self.origin.beginning

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    def starts(self) -> dict[int, int]:
        return {p.partition: p.start for p in self.partitions}

    def ends(self) -> dict[int, int]:
        return {p.partition: p.end for p in self.partitions}


def plan_replay(
    stage: Stage,
    origin: Origin,
    *,
    beginnings: Mapping[int, int],
    ends: Mapping[int, int],
    committed: Mapping[int, int],
    by_time: Mapping[int, int | None] | None = None,
) -> ReplayPlan:
    """The partitions of the stage's topic to read again, from where to their current end.

    `committed`: the group's committed offsets (a partition it never committed: absent).
    `by_time`: each partition's first offset at or after origin.at (None: no record since,
    nothing to replay there). An offset below what retention kept starts at the beginning;
    one past the group's committed offset would skip records it has not read yet: an error
    naming the partition.
    """
    starts: dict[int, int] = {}
    if origin.at is not None:
        if by_time is None:
            raise ValueError("a replay from a time needs the offsets for that time")
        starts = {p: offset for p, offset in by_time.items() if offset is not None}
    elif origin.offsets is not None:
        for partition, offset in origin.offsets.items():
            for p in sorted(ends) if partition is None else [partition]:
                if p not in ends:
                    raise ReplayError(f"--from {p}:{offset}: {stage.topic} has no partition {p} (it has {len(ends)})")
                starts[p] = min(max(offset, beginnings[p]), ends[p])
    else:
        starts = dict(beginnings)
    for p, start in sorted(starts.items()):
        if start > committed.get(p, beginnings[p]):
            raise ReplayError(
                f"--from: {stage.topic}[{p}] would start at {start}, past the offset {committed.get(p, beginnings[p])}"
                f" {stage.group} committed: the {stage.name} would skip records they have not read yet"
            )
    if stage.name == "processors" and origin.beginning and any(beginnings.values()):
        raise ReplayError(
            f"{stage.topic} no longer holds every change (retention removed its first records):"
            " folded from what is left, a fresh state would lose members. Replay from a time instead,"
            " onto the current state, or run `e2ad restart` for a full delta round."
        )
    replayed = (PartitionReplay(p, starts[p], ends[p]) for p in sorted(starts))
    return ReplayPlan(stage, origin, tuple(p for p in replayed if p.records))


def describe_plan(plan: ReplayPlan) -> list[str]:
    """What the replay re-reads, for the operator to see before it happens."""
    stage = plan.stage
    lines = [f"replay {stage.name}: consumer group {stage.group} re-reads {stage.topic}"]
    for p in plan.partitions:
        lines.append(f"  {stage.topic}[{p.partition}]  offsets {p.start} → {p.end}  ({p.records} records)")
    lines.append(f"  {plan.records} records in {len(plan.partitions)} partitions")
    if stage.name == "processors":
        if plan.fresh:
            lines.append("  processors.state: users, groups and applied offsets cleared; folded from offset 0")
        else:
            lines.append("  processors.state: folded again onto the current state")
        lines.append("  nothing is published until every partition reaches its end above; then every group once")
    else:
        lines.append("  below those ends only each group's latest desired state is applied")
    return lines
