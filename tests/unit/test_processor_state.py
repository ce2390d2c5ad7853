"""The processors' store: every key written is remembered, and the state is rebuilt exactly from what was written."""

from __future__ import annotations

import pytest

from processors.app import StateLost, lost_state_remedy
from processors.state import ProcessorStore


def written(store: ProcessorStore, log: dict[bytes, bytes]) -> None:
    """Apply the store's writes to a compacted log, as processors.state keeps them."""
    for key, value in store.changed_keys():
        if value is None:
            log.pop(key, None)
        else:
            log[key] = value


def test_reads_see_the_last_write_and_a_new_store_rebuilds_the_same_state() -> None:
    store = ProcessorStore()
    store.groups["g1"] = {"members": {"u1": "user"}}
    store.groups["g1"] = {"members": {}}
    store.users["u1"] = {"displayName": "A"}
    store.groups["g2"] = {"members": {"u1": "user", "g1": "group"}}
    store.groups["g3"] = {"members": {"u1": "user"}}
    assert store.groups["g1"] == {"members": {}}
    log: dict[bytes, bytes] = {}
    written(store, log)
    log_key, marker = store.applied("graph.changes", 2, 41)
    log[log_key] = marker  # type: ignore[assignment]

    rebuilt = ProcessorStore()
    rebuilt.load(log)

    assert dict(rebuilt.groups) == {
        "g1": {"members": {}},
        "g2": {"members": {"u1": "user", "g1": "group"}},
        "g3": {"members": {"u1": "user"}},
    }
    assert dict(rebuilt.users) == {"u1": {"displayName": "A"}}
    # parents is never written: it is rebuilt as the inverse of the groups' members
    assert not any(key.startswith(b"parents/") for key in log)
    assert rebuilt.parents == {"u1": ["g2", "g3"], "g1": ["g2"]}
    assert rebuilt.already_applied("graph.changes", 2, 41)
    assert not rebuilt.already_applied("graph.changes", 2, 42)
    assert not rebuilt.already_applied("graph.changes", 1, 0)


def test_each_key_written_is_reported_once_with_its_latest_value_and_deletes_as_tombstones() -> None:
    store = ProcessorStore()
    store.users["u2"] = {"a": 1}
    store.groups["g1"] = {"b": 2}
    store.users.pop("u2")

    assert store.changed_keys() == [(b"users/u2", None), (b"groups/g1", b'{"b":2}')]
    assert store.changed_keys() == []


def test_an_unknown_key_in_the_topic_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown key b'tables/x'"):
        ProcessorStore().load({b"tables/x": b"{}"})


def test_loading_drops_what_memory_held_that_never_reached_the_topic() -> None:
    store = ProcessorStore()
    store.groups["written"] = {"v": 1}
    log: dict[bytes, bytes] = {}
    written(store, log)
    store.groups["lost"] = {"v": 2}  # the agent died before this record's writes were sent

    store.load(log)

    assert dict(store.groups) == {"written": {"v": 1}}
    assert store.changed_keys() == []


@pytest.mark.parametrize(
    ("written", "committed", "beginnings", "remedy"),
    [
        (True, {0: 5, 1: 7}, {0: 3, 1: 0}, None),  # the state is there: carry on
        (False, {0: 0, 1: 0}, {0: 0, 1: 0}, None),  # a first start
        (False, {0: 5, 1: 0}, {0: 0, 1: 0}, "rebuild"),  # state gone, every change still there
    ],
)
def test_a_lost_state_is_rebuilt_from_graph_changes_when_it_still_holds_everything(
    written: bool, committed: dict[int, int], beginnings: dict[int, int], remedy: str | None
) -> None:
    assert lost_state_remedy(written, committed, beginnings) == remedy


def test_a_lost_state_that_cannot_be_rebuilt_stops_the_processors_saying_what_to_do() -> None:
    with pytest.raises(StateLost, match="Run a full delta round"):
        lost_state_remedy(False, {0: 5}, {0: 2})
