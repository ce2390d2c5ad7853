"""The deletion guard's pure core: hold, detect a burst over a sliding window, stage, approve (§4.1)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from processors.deletion_guard import ALL, DeletionGuard, GuardOutcome, GuardSettings, GuardStatus
from schemas.deletes import THRESHOLD_EXCEEDED
from schemas.desired import DesiredGroup, anchor_of
from tests.clock import FakeClock

START = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
WINDOW = 300.0


def deleted(group_id: str, reason: str = "deleted", name: str | None = None) -> DesiredGroup:
    attributes = {"displayName": name} if name else {}
    return DesiredGroup(
        group_id=group_id, anchor=anchor_of(group_id), state="absent", reason=reason, attributes=attributes
    )


def present(group_id: str, name: str = "Restored") -> DesiredGroup:
    return DesiredGroup(
        group_id=group_id, anchor=anchor_of(group_id), state="present", attributes={"displayName": name}
    )


def ids(count: int, prefix: str = "g") -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def delete_all(guard: DeletionGuard, group_ids: Iterable[str]) -> list[GuardOutcome]:
    return [guard.decide(deleted(g)) for g in group_ids]


def published(outcomes: Iterable[GuardOutcome]) -> list[str]:
    return [d.group_id for o in outcomes for d in o.publish]


def staged(outcomes: Iterable[GuardOutcome]) -> list[str]:
    return [s.group_id for o in outcomes for s in o.staged]


def trips(outcomes: Iterable[GuardOutcome]) -> int:
    return sum(o.tripped is not None for o in outcomes)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def guard(clock: FakeClock) -> DeletionGuard:
    return DeletionGuard(GuardSettings(threshold=500, window_seconds=WINDOW), clock)


# -- holding and releasing ------------------------------------------------------------------------


def test_499_deletes_in_one_window_are_held_for_the_window_then_all_pass(
    guard: DeletionGuard, clock: FakeClock
) -> None:
    outcomes = delete_all(guard, ids(499))
    assert published(outcomes) == [] and staged(outcomes) == []
    assert guard.next_release_at() == START + dt.timedelta(seconds=WINDOW)

    clock.advance(WINDOW - 1)
    assert guard.release_due().publish == ()

    clock.advance(1)
    released = guard.release_due()
    assert sorted(d.group_id for d in released.publish) == sorted(ids(499))
    assert all(d.state == "absent" for d in released.publish)
    assert guard.trip is None and guard.pending == {} and guard.next_release_at() is None


def test_500_deletes_in_one_window_trip_once_and_stage_every_one(guard: DeletionGuard, clock: FakeClock) -> None:
    outcomes = delete_all(guard, ids(500))
    assert published(outcomes) == []
    assert trips(outcomes) == 1 and outcomes[-1].tripped is not None  # one notification, by the 500th
    assert sorted(staged(outcomes)) == sorted(ids(500))
    trip = guard.trip
    assert trip is not None and trip.reason == THRESHOLD_EXCEEDED and trip.burst_deletes == 500
    assert trip.since == START and trip.burst_first_arrival == START == trip.burst_last_arrival
    assert trip.staged == 500

    clock.advance(10 * WINDOW)
    assert guard.release_due().publish == ()  # staged deletes wait for the operator, not for time
    more = delete_all(guard, ids(3, "late"))
    assert staged(more) == ids(3, "late") and trips(more) == 0  # staged at once while tripped
    assert guard.status() == GuardStatus(trip=trip, staged=503, pending=0, forcing_since=None)


def test_600_deletes_in_many_small_rounds_within_the_window_are_all_staged(
    guard: DeletionGuard, clock: FakeClock
) -> None:
    outcomes: list[GuardOutcome] = []
    for round_ in range(12):  # 50 deletes every 20 s: 500 of them within 200 s
        outcomes += delete_all(guard, ids(50, f"r{round_}-"))
        outcomes.append(guard.release_due())
        clock.advance(20)
    assert published(outcomes) == []
    assert trips(outcomes) == 1
    assert len(set(staged(outcomes))) == 600 == len(guard.staged)
    trip = guard.trip
    assert trip is not None and trip.burst_first_arrival == START
    assert trip.since == START + dt.timedelta(seconds=9 * 20)  # the round that brought the 500th


def test_600_deletes_spread_over_three_windows_all_pass(guard: DeletionGuard, clock: FakeClock) -> None:
    outcomes: list[GuardOutcome] = []
    for window in range(3):
        outcomes += delete_all(guard, ids(200, f"w{window}-"))
        clock.advance(WINDOW + 1)
        outcomes.append(guard.release_due())
    assert trips(outcomes) == 0 and staged(outcomes) == []
    assert len(published(outcomes)) == 600 == len(set(published(outcomes)))


def test_a_delete_exactly_one_window_old_still_counts_since_arrivals_come_before_releases(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    guard.decide(deleted("a"))
    clock.advance(10)
    # "b" and "c", fed before the timer asks for releases at this instant, complete the burst with "a".
    outcomes = delete_all(guard, ["b", "c"])
    assert trips(outcomes) == 1 and sorted(guard.staged) == ["a", "b", "c"]
    assert guard.release_due().publish == ()


def test_a_delete_released_at_this_instant_still_counts_toward_the_burst_it_ends(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    guard.decide(deleted("a"))
    clock.advance(10)
    assert published([guard.release_due()]) == ["a"]  # the caller broke the tie rule: too late for "a"
    outcomes = delete_all(guard, ["b", "c"])
    assert trips(outcomes) == 1 and sorted(guard.staged) == ["b", "c"]  # but the burst is still stopped


def test_a_delete_one_window_old_is_forgotten_and_counts_no_more(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    delete_all(guard, ["a", "b"])
    clock.advance(10)
    assert published([guard.release_due()]) == ["a", "b"]
    clock.advance(0.5)
    guard.release_due()
    assert list(guard.to_state()) == ["guard"]  # the released arrivals are kept one window only
    assert trips(delete_all(guard, ["c", "d"])) == 0


def test_a_trip_stages_pending_deletes_outside_its_window_too(guard: DeletionGuard, clock: FakeClock) -> None:
    delete_all(guard, ids(10, "early"))
    clock.advance(WINDOW * 2)  # the caller's timer is late: the early ones were not released yet
    outcomes = delete_all(guard, ids(500))
    assert len(staged(outcomes)) == 510 and published(outcomes) == []


def test_the_staged_record_says_what_is_held_why_and_which_burst(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=2, window_seconds=WINDOW), clock)
    guard.decide(deleted("a", reason="out of scope", name="Sales"))
    clock.advance(5)
    outcome = guard.decide(deleted("b", reason="soft-deleted"))
    records = {s.group_id: s for s in outcome.staged}
    a, b = records["a"], records["b"]
    assert (a.display_name, a.reason, a.held_because) == ("Sales", "out of scope", THRESHOLD_EXCEEDED)
    assert (b.display_name, b.reason) == (None, "soft-deleted")
    assert a.arrived_at == START and a.staged_at == b.staged_at == b.arrived_at == START + dt.timedelta(seconds=5)
    assert a.burst_first_arrival == START and a.burst_last_arrival == a.tripped_at == b.arrived_at
    assert a.desired == deleted("a", reason="out of scope", name="Sales")


# -- repeated deletes and the newest state ---------------------------------------------------------


def test_a_repeated_delete_counts_once_and_replaces_the_held_one(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    guard.decide(deleted("a", reason="soft-deleted"))
    clock.advance(4)
    outcomes = [guard.decide(deleted("a", reason="deleted")), guard.decide(deleted("b"))]
    assert trips(outcomes) == 0  # two groups, not three deletes
    clock.advance(6)
    assert published([guard.release_due()]) == []  # "a" waits a window from its latest arrival
    clock.advance(4)
    released = guard.release_due().publish
    assert [(d.group_id, d.reason) for d in released] == [("a", "deleted"), ("b", "deleted")]


def test_a_restore_supersedes_a_pending_delete_and_passes_at_once(guard: DeletionGuard, clock: FakeClock) -> None:
    guard.decide(deleted("a"))
    outcome = guard.decide(present("a"))
    assert outcome.publish == (present("a"),) and outcome.superseded == ("a",)
    assert outcome.unstaged == ()  # a pending delete was never on ad.staged-deletes
    clock.advance(WINDOW)
    assert guard.release_due().publish == ()


def test_a_superseded_delete_still_counts_toward_a_burst(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    guard.decide(deleted("a"))
    guard.decide(present("a"))
    clock.advance(10)  # up to a whole window later
    outcomes = delete_all(guard, ["b", "c"])
    assert trips(outcomes) == 1 and sorted(guard.staged) == ["b", "c"]


def test_decisions_other_than_deletes_never_wait_even_when_tripped(guard: DeletionGuard) -> None:
    delete_all(guard, ids(500))
    outcome = guard.decide(present("other"))
    assert outcome.publish == (present("other"),) and outcome.superseded == ()


def test_a_restore_supersedes_a_staged_delete_and_the_last_one_clears_the_trip(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=2, window_seconds=10), clock)
    delete_all(guard, ["a", "b"])
    first = guard.decide(present("a"))
    assert first.superseded == ("a",) and first.unstaged == ("a",) and not first.cleared
    last = guard.decide(present("b"))
    assert last.unstaged == ("b",) and last.cleared and guard.trip is None
    assert trips(delete_all(guard, ["c"])) == 0  # healthy again: "c" is held, not staged
    assert list(guard.pending) == ["c"]


# -- operator commands -----------------------------------------------------------------------------


def test_approve_releases_only_the_staged_deletes_still_valid(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    delete_all(guard, ["a", "b", "c"])
    guard.decide(present("b"))
    approved = guard.approve(ALL)
    assert published([approved]) == ["a", "c"] and approved.unstaged == ("a", "c")
    assert approved.cleared and guard.trip is None and guard.staged == {}


def test_a_trip_consumes_its_window_so_the_guard_counts_afresh_after_an_approval(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    guard.decide(deleted("a"))
    guard.decide(present("a"))  # "a" still counts ...
    delete_all(guard, ["b", "c"])  # ... toward this burst
    assert published([guard.approve(ALL)]) == ["b", "c"]
    clock.advance(1)
    outcomes = delete_all(guard, ["d", "e"])  # within the window of all three, but the operator saw them
    assert trips(outcomes) == 0 and sorted(guard.pending) == ["d", "e"]


def test_approving_some_staged_deletes_leaves_the_rest_in_quarantine(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    delete_all(guard, ["a", "b", "c"])
    assert guard.reject("a b") == GuardOutcome()  # a lone string is one group id
    outcome = guard.approve(["a", "unknown"])
    assert published([outcome]) == ["a"] and not outcome.cleared
    assert guard.trip is not None and sorted(guard.staged) == ["b", "c"]


def test_approving_twice_changes_nothing_the_second_time(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=2, window_seconds=10), clock)
    delete_all(guard, ["a", "b"])
    assert published([guard.approve(["a"])]) == ["a"]
    assert guard.approve(["a"]) == GuardOutcome()
    assert published([guard.approve(ALL, command_id="cmd-1")]) == ["b"]
    delete_all(guard, ["c", "d"])  # a new burst, a new trip
    assert guard.approve(ALL, command_id="cmd-1") == GuardOutcome()  # the replayed command
    assert sorted(guard.staged) == ["c", "d"]


def test_reject_drops_the_staged_deletes_and_the_ad_groups_stay(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=2, window_seconds=10), clock)
    delete_all(guard, ["a", "b"])
    outcome = guard.reject(ALL, command_id="r-1")
    assert outcome.publish == () and sorted(outcome.unstaged) == ["a", "b"]
    assert sorted(s.group_id for s in outcome.dropped) == ["a", "b"] and outcome.cleared
    clock.advance(100)
    assert guard.release_due().publish == () and guard.approve(ALL).publish == ()
    assert guard.reject(ALL, command_id="r-1") == GuardOutcome()


def test_threshold_0_passes_every_delete_at_once(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=0), clock)
    outcomes = delete_all(guard, ids(1000))
    assert len(published(outcomes)) == 1000 and trips(outcomes) == 0
    assert list(guard.to_state()) == ["guard"]


def test_restart_ends_the_quarantine_and_drops_the_staged_deletes(guard: DeletionGuard, clock: FakeClock) -> None:
    delete_all(guard, ids(500))
    outcome = guard.restart()
    assert outcome.publish == () and outcome.cleared
    assert len(outcome.dropped) == 500 and sorted(outcome.unstaged) == sorted(ids(500))
    assert guard.trip is None and guard.staged == {}
    # The guard is not weakened: the full round deleting them again trips it again.
    assert trips(delete_all(guard, ids(500))) == 1


def test_restart_keeps_pending_deletes_pending(guard: DeletionGuard, clock: FakeClock) -> None:
    delete_all(guard, ids(3))
    assert guard.restart() == GuardOutcome()
    clock.advance(WINDOW)
    assert published([guard.release_due()]) == ids(3)


def test_restart_forcing_deletes_releases_the_held_ones_and_lets_deletes_pass_until_the_round_ends(
    guard: DeletionGuard, clock: FakeClock
) -> None:
    delete_all(guard, ids(500))
    clock.advance(1)
    guard.decide(present("g0"))  # restored meanwhile: not forced
    outcome = guard.restart(force_deletes=True, command_id="restart-1")
    assert sorted(published([outcome])) == sorted(ids(500)[1:]) and outcome.cleared
    assert len(outcome.unstaged) == 499 and outcome.dropped == ()
    assert guard.forcing_since == START + dt.timedelta(seconds=1)

    clock.advance(WINDOW * 3)  # longer than a window: the round decides when forcing ends
    assert published(delete_all(guard, ids(700, "round-"))) == ids(700, "round-")
    assert guard.restart(force_deletes=True, command_id="restart-1") == GuardOutcome()

    guard.round_finished()
    assert guard.forcing_since is None
    assert published(delete_all(guard, ["after"])) == [] and list(guard.pending) == ["after"]


def test_a_restart_without_force_deletes_guards_a_forced_round_from_then_on(guard: DeletionGuard) -> None:
    guard.restart(force_deletes=True)
    guard.restart()
    assert guard.forcing_since is None
    assert published(delete_all(guard, ["a"])) == [] and list(guard.pending) == ["a"]


def test_a_delete_held_when_the_guard_was_turned_off_is_replaced_by_the_next_one(clock: FakeClock) -> None:
    held = DeletionGuard(GuardSettings(threshold=2, window_seconds=10), clock)
    delete_all(held, ["a", "b"])  # tripped, both staged
    guard = DeletionGuard.from_state(held.to_state(), GuardSettings(threshold=0), clock)
    outcome = guard.decide(deleted("a"))
    assert published([outcome]) == ["a"] and outcome.superseded == ("a",) and outcome.unstaged == ("a",)
    assert list(guard.staged) == ["b"] and guard.trip is not None  # the rest waits for the operator


def test_settings_reject_a_negative_threshold_and_an_empty_window() -> None:
    with pytest.raises(ValueError, match="threshold"):
        GuardSettings(threshold=-1)
    with pytest.raises(ValueError, match="window"):
        GuardSettings(window_seconds=0)


# -- durability ------------------------------------------------------------------------------------


def round_trip(guard: DeletionGuard, clock: FakeClock) -> DeletionGuard:
    state = json.loads(json.dumps(guard.to_state()))
    return DeletionGuard.from_state(state, guard.settings, clock)


def test_state_round_tripped_mid_window_gives_the_same_outcomes(clock: FakeClock) -> None:
    settings_ = GuardSettings(threshold=4, window_seconds=10)

    def script(guard: DeletionGuard, reload_at: int | None) -> list[GuardOutcome]:
        clock.now = START
        steps = [
            lambda g: delete_all(g, ["a", "b", "c"]),
            lambda g: [g.decide(present("b"))],
            lambda g: [g.release_due()],
            lambda g: delete_all(g, ["d", "e"]),
            lambda g: [g.release_due()],
            lambda g: delete_all(g, ["f", "g", "h"]),
            lambda g: [g.approve(["a", "d"])],
            lambda g: [g.release_due()],
        ]
        outcomes: list[GuardOutcome] = []
        for i, step in enumerate(steps):
            if i == reload_at:
                guard = round_trip(guard, clock)
            outcomes += step(guard)
            clock.advance(4)
        return outcomes

    expected = script(DeletionGuard(settings_, clock), None)
    # The script passes through releases, a supersede, a trip and an approval.
    assert published(expected) == ["b", "a", "c", "d"] and trips(expected) == 1
    for reload_at in range(1, 8):
        assert script(DeletionGuard(settings_, clock), reload_at) == expected


def test_the_writes_rebuild_the_state_record_by_record(clock: FakeClock) -> None:
    guard = DeletionGuard(GuardSettings(threshold=3, window_seconds=10), clock)
    store: dict[str, object] = {}

    def write_through() -> None:
        for key, record in guard.take_writes().items():
            if record is None:
                store.pop(key, None)
            else:
                store[key] = record

    delete_all(guard, ["a", "b"])
    write_through()
    assert sorted(store) == ["deletes/a", "deletes/b"]
    clock.advance(11)
    guard.release_due()
    delete_all(guard, ["c", "d", "e"])
    guard.approve(["c"], command_id="x")
    write_through()
    assert store == guard.to_state()
    assert guard.take_writes() == {}


# -- properties ------------------------------------------------------------------------------------

PROPERTY_WINDOW = 10  # whole seconds, so that arrivals exactly one window apart (ties) are common
GROUPS = [f"p{i}" for i in range(8)]

decision = st.tuples(st.sampled_from(["delete", "delete", "delete", "restore"]), st.sampled_from(GROUPS))
# One batch of decisions per instant: at a tie the guard's contract is arrivals before releases.
ticks = st.lists(
    st.tuples(st.integers(1, 2 * PROPERTY_WINDOW), st.lists(decision, max_size=4)), min_size=1, max_size=30
)


def feed(guard: DeletionGuard, op: str, group_id: str) -> GuardOutcome:
    return guard.decide(deleted(group_id) if op == "delete" else present(group_id))


@settings(max_examples=300, deadline=None)
@given(threshold=st.integers(1, 6), script=ticks)
def test_property_no_delete_of_a_burst_is_released_and_every_other_one_is_released_in_time(
    threshold: int, script: list[tuple[int, list[tuple[str, str]]]]
) -> None:
    """Arrivals then due releases at each tick, until the guard first leaves quarantine.

    A delete of group g arriving at a is held until released, replaced by a later delete of g,
    superseded by a restore of g, or staged. Its due tick is the first tick at or after a + W.
    """
    clock = FakeClock(START)
    window = dt.timedelta(seconds=PROPERTY_WINDOW)
    guard = DeletionGuard(GuardSettings(threshold=threshold, window_seconds=PROPERTY_WINDOW), clock)
    arrivals: list[tuple[dt.datetime, str]] = []
    held: dict[str, dt.datetime] = {}  # group -> the arrival of its held delete
    ended: list[tuple[str, dt.datetime, dt.datetime]] = []  # (how, arrival, when): released / staged
    tick_times: list[dt.datetime] = []
    trip_at: dt.datetime | None = None
    for advance, decisions in script:
        clock.advance(advance)
        now = clock.now
        tick_times.append(now)
        cleared = False
        for op, group_id in decisions:
            outcome = feed(guard, op, group_id)
            if outcome.cleared:  # every staged delete was restored: the rest is a new story
                cleared = True
                break
            if op == "delete":
                arrivals.append((now, group_id))
                held[group_id] = now
            else:
                assert [d.group_id for d in outcome.publish] == [group_id]
                held.pop(group_id, None)
            for record in outcome.staged:
                ended.append(("staged", held.pop(record.group_id), now))
            if outcome.tripped:
                assert trip_at is None
                trip_at = now
        if cleared:
            break
        released = guard.release_due()
        for desired in released.publish:
            assert desired.state == "absent"
            ended.append(("released", held.pop(desired.group_id), now))

    def count(end: dt.datetime) -> int:
        return len({g for t, g in arrivals if end - window <= t <= end})

    burst_ends = [t for t, _ in arrivals if count(t) >= threshold]

    def in_burst(arrival: dt.datetime) -> bool:
        return any(end - window <= arrival <= end for end in burst_ends)

    def due_tick(arrival: dt.datetime) -> dt.datetime | None:
        return next((t for t in tick_times if t >= arrival + window), None)

    event("tripped" if trip_at else "not tripped")
    event("released some" if any(how == "released" for how, _, _ in ended) else "released none")
    # Every burst is detected, at the arrival that completes the first one.
    assert trip_at == (min(burst_ends) if burst_ends else None)
    for how, arrival, when in ended:
        if how == "released":
            assert not in_burst(arrival)
            assert when == due_tick(arrival)  # held a whole window, released when first asked after it
        else:
            assert trip_at is not None and when >= trip_at
    for arrival in held.values():  # still held at the end: its due tick has not come
        due = due_tick(arrival)
        assert due is None or (trip_at is not None and trip_at <= due)


command = st.one_of(
    st.tuples(st.just("approve"), st.lists(st.sampled_from(GROUPS), max_size=3)),
    st.tuples(st.just("approve-all"), st.just([])),
    st.tuples(st.just("reject"), st.lists(st.sampled_from(GROUPS), max_size=2)),
    st.tuples(st.just("restart"), st.just([])),
    st.tuples(st.just("restart-force"), st.just([])),
    st.tuples(st.just("round-finished"), st.just([])),
)
step = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 2 * PROPERTY_WINDOW)),
    st.tuples(st.just("decide"), decision),
    st.tuples(st.just("command"), command),
    st.tuples(st.just("reload"), st.none()),
)


def run(guard: DeletionGuard, clock: FakeClock, op: str, arg: object) -> list[GuardOutcome]:
    if op == "advance":
        assert isinstance(arg, int)
        clock.advance(arg)
        return [guard.release_due()]
    if op == "decide":
        assert isinstance(arg, tuple)
        return [feed(guard, *arg)]
    assert isinstance(arg, tuple)
    name, groups = arg
    if name == "approve":
        return [guard.approve(groups)]
    if name == "approve-all":
        return [guard.approve(ALL)]
    if name == "reject":
        return [guard.reject(groups)]
    if name == "restart-force":
        return [guard.restart(force_deletes=True)]
    if name == "round-finished":
        return [guard.round_finished()]
    return [guard.restart()]


@settings(max_examples=300, deadline=None)
@given(threshold=st.integers(1, 5), steps=st.lists(step, max_size=40))
def test_property_the_newest_state_wins_and_a_reload_changes_nothing(
    threshold: int, steps: list[tuple[str, object]]
) -> None:
    """Whatever the decisions, commands and reloads: no stale delete is ever published, and once
    the window has passed and every staged delete is approved each group's last decision is out.
    """
    settings_ = GuardSettings(threshold=threshold, window_seconds=PROPERTY_WINDOW)
    clock, twin_clock = FakeClock(START), FakeClock(START)
    guard = DeletionGuard(settings_, clock)
    twin = DeletionGuard(settings_, twin_clock)  # the same steps, never reloaded
    latest: dict[str, DesiredGroup] = {}  # each group's last decision
    out: dict[str, DesiredGroup] = {}  # each group's last published state
    rejected: set[str] = set()
    for op, arg in steps:
        if op == "reload":
            guard = round_trip(guard, clock)
            continue
        if op == "decide":
            assert isinstance(arg, tuple)
            latest[arg[1]] = deleted(arg[1]) if arg[0] == "delete" else present(arg[1])
            rejected.discard(arg[1])
        outcomes = run(guard, clock, op, arg)
        assert outcomes == run(twin, twin_clock, op, arg)
        for outcome in outcomes:
            for desired in outcome.publish:
                assert desired == latest[desired.group_id]  # a superseded delete never comes out
                out[desired.group_id] = desired
            rejected |= {s.group_id for s in outcome.dropped}
    clock.advance(PROPERTY_WINDOW)
    for outcome in (guard.release_due(), guard.approve(ALL)):
        for desired in outcome.publish:
            out[desired.group_id] = desired
    guard.round_finished()
    assert guard.status() == GuardStatus(trip=None, staged=0, pending=0, forcing_since=None)
    assert {g: d for g, d in out.items() if g not in rejected} == {g: d for g, d in latest.items() if g not in rejected}


# -- a deleted configuration ------------------------------------------------------------------------


def test_discard_drops_every_held_delete_unapplied_and_ends_the_trip(guard: DeletionGuard, clock: FakeClock) -> None:
    delete_all(guard, ids(3, "pending"))
    assert guard.status().pending == 3
    dropped_pending = guard.discard()
    assert dropped_pending.publish == () and dropped_pending.dropped == () and guard.status().pending == 0
    clock.advance(2 * WINDOW)
    assert guard.release_due().publish == ()  # the deleted configuration's deletes never come out

    delete_all(guard, ids(500))  # the threshold is reached: staged
    assert guard.status().staged == 500 and guard.trip is not None

    outcome = guard.discard()

    assert sorted(outcome.unstaged) == sorted(ids(500))
    assert sorted(s.group_id for s in outcome.dropped) == sorted(ids(500))
    assert outcome.publish == () and outcome.cleared
    assert guard.trip is None and guard.status().staged == 0 and guard.status().pending == 0
