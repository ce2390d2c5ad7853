"""What `e2ad status` and `e2ad monitor` make of a Snapshot: the job's state, lag, pace, and the lines shown."""

from __future__ import annotations

import datetime as dt
import io

from rich.console import Console

from e2ad.cli_status import frame
from e2ad.status_view import (
    PartitionOffsets,
    Snapshot,
    describe,
    job_state,
    partition_lag,
    records_per_second,
    sparkline,
    stages,
    view,
)
from schemas import topics
from schemas.status import (
    DeltaRoundFailure,
    DeltaRoundReport,
    IngestStatus,
    ProcessorStatus,
    ResourceRounds,
    SubscriptionStatus,
    WriterStatus,
)
from tests.active import active_configuration

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
STAGES = stages("e2ad-graph-worker", "e2ad-processors", "e2ad-writers")
RUNNING = {stage.group: [f"{stage.name}@10.0.0.1"] for stage in STAGES}
QUARANTINED = WriterStatus(
    writer="dc1",
    state="quarantined",
    reason="EncounteredQuarantineException",
    detail="invalid credentials for CN=svc",
    since=NOW,
)
THRESHOLD = ProcessorStatus(
    state="quarantined",
    reason="delete threshold exceeded",
    since=NOW,
    staged=500,
    burst_deletes=500,
    threshold=500,
    window_seconds=60,
)


def snapshot(**fields: object) -> Snapshot:
    values: dict[str, object] = {"at": NOW, "offsets": {}, "committed": {}, "members": RUNNING}
    return Snapshot.model_validate(values | fields)


def test_the_job_state_that_stops_the_most_wins() -> None:
    disabled = active_configuration(3, "disabled")
    assert job_state(disabled, [QUARANTINED], THRESHOLD).state == "disabled"
    assert job_state(disabled, [], None).reason == "configuration disabled"
    assert job_state(active_configuration(4, "deleted"), [], None).reason == "configuration deleted"
    quarantined = job_state(
        active_configuration(), [WriterStatus(writer="dc0", state="running"), QUARANTINED], THRESHOLD
    )
    assert (quarantined.state, quarantined.reason) == ("quarantined", "EncounteredQuarantineException")
    assert quarantined.detail == "dc1 (quarantined): invalid credentials for CN=svc"
    threshold = job_state(None, [WriterStatus(writer="dc0", state="running")], THRESHOLD)
    assert threshold.state == "delete threshold exceeded"
    assert threshold.detail == "500 groups deleted within 60 s (threshold 500); 500 deletes staged"
    assert job_state(
        active_configuration(), [], ProcessorStatus(state="running", threshold=500, window_seconds=60)
    ).state == ("healthy")


def test_lag_counts_from_the_committed_offset_or_from_what_the_partition_still_holds() -> None:
    offsets = {
        0: PartitionOffsets(beginning=0, end=10),
        1: PartitionOffsets(beginning=40, end=50),  # compacted: the first 40 records are gone
        2: PartitionOffsets(beginning=40, end=50),
    }
    lags = partition_lag(offsets, {0: 7, 2: 12})  # 1 never committed; 2 committed before what compaction kept
    assert [(lag.partition, lag.committed, lag.lag) for lag in lags] == [(0, 7, 3), (1, None, 10), (2, 12, 10)]


def test_records_per_second_count_what_was_written_in_the_last_minute() -> None:
    offsets = {
        0: PartitionOffsets(beginning=0, end=100, minute_ago=40),
        1: PartitionOffsets(beginning=0, end=500, minute_ago=None),  # nothing written in the last minute
    }
    assert records_per_second(offsets) == 1.0


def test_a_stage_without_members_makes_the_status_unhealthy_even_with_a_healthy_job() -> None:
    members = {group: names for group, names in RUNNING.items() if group != "e2ad-writers"}
    shown = view(snapshot(members=members), STAGES)
    assert shown.job.state == "healthy" and shown.healthy is False
    assert view(snapshot(), STAGES).healthy is True
    assert view(snapshot(writers=[QUARANTINED]), STAGES).healthy is False


def test_the_lines_name_lag_errors_rounds_subscriptions_and_dead_letters() -> None:
    ingest = IngestStatus(
        resources={
            "users": ResourceRounds(
                last_success=DeltaRoundReport(at=NOW - dt.timedelta(minutes=2), full_round=False, changes=3),
                last_failure=DeltaRoundFailure(at=NOW - dt.timedelta(minutes=1), error="HTTP 503 from Graph"),
            ),
            "groups": ResourceRounds(),
        },
        subscriptions=[
            SubscriptionStatus(resource="/groups", id="sub-g", expires_at=NOW + dt.timedelta(hours=2, minutes=5)),
            SubscriptionStatus(resource="/users", id="sub-u", expires_at=NOW - dt.timedelta(minutes=3)),
            SubscriptionStatus(resource="/me", id="sub-m", expires_at=NOW + dt.timedelta(days=29, hours=5)),
        ],
    )
    offsets = {
        topics.AD_DESIRED: {0: PartitionOffsets(beginning=0, end=5), 1: PartitionOffsets(beginning=0, end=2)},
        topics.AD_DEAD_LETTER: {0: PartitionOffsets(beginning=2, end=6)},
    }
    shown = view(
        snapshot(
            offsets=offsets,
            committed={"e2ad-writers": {0: 5}},
            ingest=ingest,
            writers=[QUARANTINED],
            staged_deletes=2,
            last_dead_letter_at=NOW,
        ),
        STAGES,
    )
    lines = describe(shown)
    assert (
        lines[0]
        == "job: quarantined (EncounteredQuarantineException): dc1 (quarantined): invalid credentials for CN=svc"
    )
    assert (
        "writers: 1 running (writers@10.0.0.1); lag 2 on ad.desired; 0.00 records/s to ad.results over the last minute"
        in lines
    )
    assert "  ad.desired[1]: end 2, never committed, lag 2" in lines
    assert not any(line.startswith("  ad.desired[0]") for line in lines), "a partition without lag is left out"
    assert "  last error: 2026-12-03T11:59:00+00:00 delta round: HTTP 503 from Graph" in lines
    assert "  last error: 2026-12-03T12:00:00+00:00 dc1 quarantined: invalid credentials for CN=svc" in lines
    assert "delta round users: last successful 2026-12-03T11:58:00+00:00 (3 changes)" in lines
    assert "delta round groups: last successful none yet" in lines
    assert "subscription /groups: sub-g expires 2026-12-03T14:05:00+00:00 (in 2 h 5 min)" in lines
    assert "subscription /users: sub-u expires 2026-12-03T11:57:00+00:00 (expired 3 min 0 s ago)" in lines
    assert "subscription /me: sub-m expires 2027-01-01T17:00:00+00:00 (in 29 d 5 h)" in lines
    assert "staged deletes: 2 (`e2ad deletes list`)" in lines
    assert lines[-1].startswith("dead letters: 4, newest 2026-12-03T12:00:00+00:00")


def test_a_sparkline_scales_to_the_busiest_frame_and_an_idle_stage_is_flat() -> None:
    assert sparkline([0.0, 0.0, 0.0]) == "▁▁▁"
    assert sparkline([0.0, 5.0, 10.0]) == "▁▅█"
    assert sparkline([]) == ""


def test_a_monitor_frame_shows_every_stage_its_pace_and_what_is_not_running() -> None:
    members = {group: names for group, names in RUNNING.items() if group != "e2ad-processors"}
    shown = view(snapshot(members=members, processors=THRESHOLD), STAGES)
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(frame(shown, {"ingest": [0.0, 2.0, 4.0], "writers": [1.0]}))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "job: delete threshold exceeded: 500 groups deleted within 60 s" in text
    assert "not running: processors" in text
    rows = {
        line.split()[0]: line
        for line in text.splitlines()
        if line.split() and line.split()[0] in {"ingest", "processors", "writers"}
    }
    assert "▁▅█ 4.0" in rows["ingest"] and "not running" in rows["processors"] and "█ 1.0" in rows["writers"]
    assert "delete threshold exceeded" in rows["processors"]
