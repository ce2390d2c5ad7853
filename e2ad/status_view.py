"""`e2ad status` and `e2ad monitor`, decided: the job's state, each stage's lag and pace, from a Snapshot.

Pure: e2ad/status.py reads the Snapshot from the brokers and e2ad.status, so the view is the same
from any machine that reaches Kafka, whichever process runs the stages.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.status import IngestStatus, ProcessorStatus, ResourceRounds, SubscriptionStatus, WriterStatus

# The minute `records_per_second` is measured over.
PACE_SECONDS = 60.0


class StageTopics(BaseModel):
    name: str  # as the command line names the stage: ingest, processors, writers
    group: str  # its consumer group
    consumes: str  # the topic its lag is measured on
    produces: str  # the topic its pace is measured on


def stages(graph_worker: str, processors: str, writers: str) -> list[StageTopics]:
    """The three stages with their consumer groups (the stages' own constants, passed in by the reader)."""
    return [
        StageTopics(
            name="ingest", group=graph_worker, consumes=topics.GRAPH_NOTIFICATIONS, produces=topics.GRAPH_CHANGES
        ),
        StageTopics(name="processors", group=processors, consumes=topics.GRAPH_CHANGES, produces=topics.AD_DESIRED),
        StageTopics(name="writers", group=writers, consumes=topics.AD_DESIRED, produces=topics.AD_RESULTS),
    ]


class PartitionOffsets(BaseModel):
    beginning: int
    end: int
    minute_ago: int | None = None  # the first offset written since PACE_SECONDS ago; None: nothing since


class Snapshot(BaseModel):
    """What the brokers and the compacted topics held at `at`: everything the view is computed from."""

    at: dt.datetime
    offsets: dict[str, dict[int, PartitionOffsets]]  # topic -> partition ->
    committed: dict[str, dict[int, int]]  # consumer group -> partition of its consumed topic -> offset
    members: dict[str, list[str]]  # consumer group -> running members (client_id@host)
    writers: list[WriterStatus] = Field(default_factory=list)
    processors: ProcessorStatus | None = None
    ingest: IngestStatus | None = None
    unreadable: list[str] = Field(default_factory=list)  # e2ad.status records that did not decode, and why
    configuration: ActiveConfiguration | None = None
    staged_deletes: int = 0
    last_dead_letter_at: dt.datetime | None = None


JobState = Literal["healthy", "quarantined", "delete threshold exceeded", "disabled"]


class Job(BaseModel):
    state: JobState
    reason: str | None = None  # Graph's name for a quarantine, or what disabled the job
    detail: str | None = None


class PartitionLag(BaseModel):
    partition: int
    end: int
    committed: int | None  # None: the group never committed here, so every record held is unread
    lag: int


class StageView(BaseModel):
    name: str
    group: str
    members: list[str]
    consumes: str
    lag: list[PartitionLag]
    produces: str
    records_per_second: float  # records it published over the last minute, a second
    last_error: str | None = None

    @property
    def total_lag(self) -> int:
        return sum(partition.lag for partition in self.lag)


class StatusView(BaseModel):
    at: dt.datetime
    healthy: bool  # the job healthy and every stage running
    job: Job
    configuration_version: int | None = None
    stages: list[StageView]
    staged_deletes: int
    dead_letters: int
    last_dead_letter_at: dt.datetime | None = None
    delta_rounds: dict[str, ResourceRounds] = Field(default_factory=dict)  # users, groups
    subscriptions: list[SubscriptionStatus] = Field(default_factory=list)
    writers: list[WriterStatus] = Field(default_factory=list)
    unreadable: list[str] = Field(default_factory=list)


def job_state(
    configuration: ActiveConfiguration | None, writers: list[WriterStatus], processors: ProcessorStatus | None
) -> Job:
    """Cloud Sync's job states, the one that stops the most first: disabled, quarantined, threshold, healthy."""
    if configuration is not None and configuration.state != "enabled":
        return Job(
            state="disabled",
            reason=f"configuration {configuration.state}",
            detail=f"version {configuration.version} by {configuration.changed_by}"
            f" at {_time(configuration.changed_at)}",
        )
    stopped = [writer for writer in writers if not writer.healthy]
    if stopped:
        first = stopped[0]
        names = ", ".join(f"{writer.writer} ({writer.state})" for writer in stopped)
        return Job(state="quarantined", reason=first.reason, detail=f"{names}: {first.detail or '-'}")
    if processors is not None and not processors.healthy:
        return Job(
            state="delete threshold exceeded",  # Cloud Sync's words; the deletes show as StagedDelete in the log
            detail=f"{processors.burst_deletes} groups deleted within {processors.window_seconds:g} s "
            f"(threshold {processors.threshold}); {processors.staged} deletes staged",
        )
    return Job(state="healthy")


def partition_lag(offsets: dict[int, PartitionOffsets], committed: dict[int, int]) -> list[PartitionLag]:
    lags = []
    for partition, held in sorted(offsets.items()):
        at = committed.get(partition)
        lags.append(
            PartitionLag(
                partition=partition,
                end=held.end,
                committed=at,
                lag=max(held.end - (held.beginning if at is None else max(at, held.beginning)), 0),
            )
        )
    return lags


def records_per_second(offsets: dict[int, PartitionOffsets]) -> float:
    written = sum(held.end - held.minute_ago for held in offsets.values() if held.minute_ago is not None)
    return written / PACE_SECONDS


def _last_error(stage: str, snapshot: Snapshot) -> str | None:
    if stage == "ingest" and snapshot.ingest is not None:
        failures = [rounds.last_failure for rounds in snapshot.ingest.resources.values() if rounds.last_failure]
        if failures:
            last = max(failures, key=lambda failure: failure.at)
            return f"{_time(last.at)} delta round: {last.error}"
    if stage == "processors" and snapshot.processors is not None and not snapshot.processors.healthy:
        return f"{_time(snapshot.processors.since)} {snapshot.processors.reason}"
    if stage == "writers":
        stopped = [writer for writer in snapshot.writers if not writer.healthy]
        if stopped:
            return "; ".join(f"{_time(w.since)} {w.writer} {w.state}: {w.detail or w.reason}" for w in stopped)
    return None


def view(snapshot: Snapshot, stage_topics: list[StageTopics]) -> StatusView:
    job = job_state(snapshot.configuration, snapshot.writers, snapshot.processors)
    views = [
        StageView(
            name=stage.name,
            group=stage.group,
            members=snapshot.members.get(stage.group, []),
            consumes=stage.consumes,
            lag=partition_lag(snapshot.offsets.get(stage.consumes, {}), snapshot.committed.get(stage.group, {})),
            produces=stage.produces,
            records_per_second=records_per_second(snapshot.offsets.get(stage.produces, {})),
            last_error=_last_error(stage.name, snapshot),
        )
        for stage in stage_topics
    ]
    dead = snapshot.offsets.get(topics.AD_DEAD_LETTER, {})
    return StatusView(
        at=snapshot.at,
        healthy=job.state == "healthy" and all(stage.members for stage in views),
        job=job,
        configuration_version=snapshot.configuration.version if snapshot.configuration else None,
        stages=views,
        staged_deletes=snapshot.staged_deletes,
        dead_letters=sum(held.end - held.beginning for held in dead.values()),
        last_dead_letter_at=snapshot.last_dead_letter_at,
        delta_rounds=snapshot.ingest.resources if snapshot.ingest else {},
        subscriptions=snapshot.ingest.subscriptions if snapshot.ingest else [],
        writers=snapshot.writers,
        unreadable=snapshot.unreadable,
    )


def describe(status: StatusView) -> list[str]:
    """The lines `e2ad status` prints."""
    lines = [headline(status)]
    for stage in status.stages:
        lines.append(stage_line(stage))
        for partition in (p for p in stage.lag if p.lag):  # --json has every partition
            committed = "never committed" if partition.committed is None else f"committed {partition.committed}"
            lines.append(
                f"  {stage.consumes}[{partition.partition}]: end {partition.end}, {committed}, lag {partition.lag}"
            )
        if stage.last_error:
            lines.append(f"  last error: {stage.last_error}")
    return lines + footer(status)


def headline(status: StatusView) -> str:
    line = f"job: {status.job.state}" + (f" ({status.job.reason})" if status.job.reason else "")
    if status.job.detail:
        line += f": {status.job.detail}"
    if status.configuration_version is not None:
        line += f"; configuration version {status.configuration_version}"
    if stopped := [stage.name for stage in status.stages if not stage.members]:
        line += f"; not running: {', '.join(stopped)}"
    return line


def stage_line(stage: StageView) -> str:
    running = f"{len(stage.members)} running ({', '.join(stage.members)})" if stage.members else "not running"
    return (
        f"{stage.name}: {running}; lag {stage.total_lag} on {stage.consumes}; "
        f"{stage.records_per_second:.2f} records/s to {stage.produces} over the last minute"
    )


def footer(status: StatusView) -> list[str]:
    """Delta rounds, subscriptions, staged deletes, dead letters: what is the job's, not one stage's."""
    lines = []
    for resource, rounds in sorted(status.delta_rounds.items()):
        last = rounds.last_success
        done = "none yet"
        if last:
            changes = f"{last.changes} change{'' if last.changes == 1 else 's'}"
            done = f"{_time(last.at)} ({'full, ' if last.full_round else ''}{changes})"
        lines.append(f"delta round {resource}: last successful {done}")
    for subscription in status.subscriptions:
        left = subscription.expires_at - status.at
        when = f"in {_duration(left)}" if left.total_seconds() >= 0 else f"expired {_duration(-left)} ago"
        lines.append(
            f"subscription {subscription.resource}: {subscription.id} expires {_time(subscription.expires_at)} ({when})"
        )
    lines.append(
        f"staged deletes: {status.staged_deletes}" + (" (`e2ad deletes list`)" if status.staged_deletes else "")
    )
    dead = f"dead letters: {status.dead_letters}"
    if status.last_dead_letter_at:
        dead += f", newest {_time(status.last_dead_letter_at)} (each next to its failure: `e2ad logs --status failure`)"
    lines.append(dead)
    lines.extend(f"unreadable: {reason}" for reason in status.unreadable)
    return lines


def _duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    if days >= 2:
        return f"{days} d {rest // 3600} h"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def _time(value: dt.datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """One block per value, scaled to the largest; zero is the lowest block, so an idle stage shows a flat line."""
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[0] * len(values)
    return "".join(SPARK[min(int(value / top * (len(SPARK) - 1) + 0.5), len(SPARK) - 1)] for value in values)


def written(snapshot: Snapshot, topic: str) -> int:
    """Every record ever written to `topic` (the sum of its partitions' ends): two snapshots' difference is a pace."""
    return sum(held.end for held in snapshot.offsets.get(topic, {}).values())
