"""`e2ad replay`'s plan without a broker: --from parsed, offsets chosen, and the refusals naming what is wrong."""

from __future__ import annotations

import datetime as dt

import pytest

from e2ad.replay import STAGES, Origin, ReplayError, describe_plan, parse_origin, plan_replay, stage_named
from harness.embedded import PROCESSORS_GROUP, WRITERS_GROUP
from processors.state import ProcessorStore, replay_writes

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
PROCESSORS, WRITERS = STAGES["processors"], STAGES["writers"]


def test_the_stages_consumer_groups_are_theirs() -> None:
    from processors.app import APP_ID
    from writers.service import CONSUMER_GROUP

    assert (PROCESSORS.group, WRITERS.group) == (APP_ID, CONSUMER_GROUP)
    assert (PROCESSORS_GROUP, WRITERS_GROUP) == (APP_ID, CONSUMER_GROUP)  # `e2ad up`'s progress lines


def test_from_accepts_beginning_times_times_ago_and_offsets() -> None:
    assert parse_origin("beginning", NOW).beginning
    assert parse_origin("2h", NOW).at == NOW - dt.timedelta(hours=2)
    assert parse_origin("2d", NOW).at == NOW - dt.timedelta(days=2)
    assert parse_origin("2026-12-01T08:30", NOW).at == dt.datetime(2026, 12, 1, 8, 30, tzinfo=dt.UTC)
    assert parse_origin("2026-12-01T08:30+01:00", NOW).at == dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.UTC)
    assert parse_origin("42", NOW).offsets == {None: 42}
    assert parse_origin("0:5,2:7", NOW).offsets == {0: 5, 2: 7}


def test_an_unreadable_from_names_the_option() -> None:
    with pytest.raises(ReplayError, match=r"--from: 'yesterday' is neither a duration .*, nor `beginning`, an offset"):
        parse_origin("yesterday", NOW)


def test_ingest_is_refused_with_the_command_that_does_it() -> None:
    with pytest.raises(ReplayError, match=r"e2ad restart"):
        stage_named("ingest")
    with pytest.raises(ReplayError, match=r"STAGE 'webhook' is not one of processors, writers"):
        stage_named("webhook")


def test_from_the_beginning_every_partition_is_read_again_to_its_end() -> None:
    plan = plan_replay(
        PROCESSORS, Origin(), beginnings={0: 0, 1: 0, 2: 0}, ends={0: 10, 1: 0, 2: 4}, committed={0: 10, 2: 4}
    )
    assert [(p.partition, p.start, p.end) for p in plan.partitions] == [(0, 0, 10), (2, 0, 4)]  # 1 is empty
    assert plan.records == 14 and plan.fresh
    assert "  graph.changes[0]  offsets 0 → 10  (10 records)" in describe_plan(plan)


def test_from_a_time_each_partition_starts_at_its_first_record_since() -> None:
    plan = plan_replay(
        WRITERS, Origin(at=NOW), beginnings={0: 0, 1: 3}, ends={0: 10, 1: 8}, committed={0: 10, 1: 8},
        by_time={0: 6, 1: None},
    )  # fmt: skip
    assert [(p.partition, p.start, p.end) for p in plan.partitions] == [(0, 6, 10)]  # none in 1 since then
    assert not plan.fresh


def test_an_offset_is_kept_within_what_the_partition_holds() -> None:
    plan = plan_replay(
        WRITERS, Origin(offsets={None: 2}), beginnings={0: 5, 1: 0}, ends={0: 9, 1: 9}, committed={0: 9, 1: 9}
    )
    assert plan.starts() == {0: 5, 1: 2}
    with pytest.raises(ReplayError, match=r"--from 4:1: ad.desired has no partition 4 \(it has 2\)"):
        plan_replay(WRITERS, Origin(offsets={4: 1}), beginnings={0: 0, 1: 0}, ends={0: 9, 1: 9}, committed={})


def test_a_start_past_the_committed_offset_is_refused_as_it_would_skip_records() -> None:
    with pytest.raises(
        ReplayError, match=r"ad.desired\[0\] would start at 7, past the offset 3 e2ad-writers committed"
    ):
        plan_replay(WRITERS, Origin(offsets={0: 7}), beginnings={0: 0}, ends={0: 9}, committed={0: 3})


def test_a_fresh_processor_state_needs_every_change_still_in_graph_changes() -> None:
    with pytest.raises(ReplayError, match=r"graph.changes no longer holds every change"):
        plan_replay(PROCESSORS, Origin(), beginnings={0: 0, 1: 2}, ends={0: 5, 1: 5}, committed={0: 5, 1: 5})


# -- what the plan writes to processors.state -------------------------------------------------
STATE = {
    b"users/u1": b"{}",
    b"groups/g1": b'{"attributes":{},"members":{"u1":"user"}}',
    b"applied/graph.changes/0": b"9",
    b"guard/guard": b"{}",
    b"config/evaluated": b'{"version":1}',
}


def test_a_fresh_replay_drops_users_groups_and_applied_offsets_and_keeps_the_guard() -> None:
    writes = replay_writes(STATE, "graph.changes", {0: 0}, {0: 10}, fresh=True)
    assert writes == [
        (b"replay/horizon", b'{"graph.changes/0":10}'),
        (b"applied/graph.changes/0", None),
        (b"groups/g1", None),
        (b"users/u1", None),
    ]


def test_the_processors_hold_their_output_until_every_partition_reaches_the_horizon() -> None:
    writes = replay_writes(STATE, "graph.changes", {0: 4, 1: 0}, {0: 10, 1: 3}, fresh=False)
    assert (b"applied/graph.changes/0", b"3") in writes and (b"applied/graph.changes/1", b"-1") in writes
    latest = dict(STATE)
    for key, value in writes:
        if value is None:
            latest.pop(key, None)
        else:
            latest[key] = value
    store = ProcessorStore()
    store.load(latest)
    assert store.replaying()
    store.applied("graph.changes", 0, 9)
    assert store.replaying()  # partition 1 is still below its horizon
    store.applied("graph.changes", 1, 2)
    assert not store.replaying()
    assert store.replay_finished() == (b"replay/horizon", None)
    assert store.horizon is None
