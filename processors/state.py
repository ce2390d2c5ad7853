"""The processors' state: users, groups and parents in this process's memory, written through to Kafka.

Why not faust tables. The processors used faust GlobalTables with recovery_buffer_size=1, so that
a worker sees every partition at once. faust then keeps reading each table's own changelog after
recovery and applies every record it reads to the in-memory table — including the echo of the
worker's own writes. Two writes v1, v2 of one key, then v1's echo arriving (late, under load)
set the table back to v1 until v2's echo followed; a record folded in between read v1. That is
how a member removed in Entra came back into an AD group (issue 8). A partitioned faust Table
would not echo, but it writes a key's changelog to the partition of the record being processed,
so a key written from two partitions recovers in no defined order.

So the state lives here: users and groups are dicts whose every write is remembered, written
through to one compacted topic (processors.state, one partition, so its order is the order of the
writes) and rebuilt from it at start; parents, their inverse index, is rebuilt from the groups.
Reads always see the last write (read-your-writes) because nothing but the fold writes the dicts.
The edge (processors/app.py) makes one record at a time durable in this order: its outputs
acknowledged, then the keys it changed, then its offset ("applied" marker); only then it
acknowledges the record to faust. A record that fails part way is tried again on the state
reloaded from the topic. After a crash or a rebalance Kafka delivers again what was not committed;
a record at or below its partition's applied offset is already in the state and is skipped, so
no record is folded in twice. A record whose writes were cut off (any of them) is folded in again
over them, which gives the same state: each key it writes is a function of the record and of the
same key before it (the group's own state, the user's own, a parent's published fingerprint).

The deletion guard's records (processors/deletion_guard.py: "guard" and "deletes/<group id>") are
kept under the prefix "guard/", as the guard hands them over (take_writes) and as it rebuilds
from them (from_state): the store writes them through in the same order, after the outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

TABLES = ("users", "groups")  # parents is derived from groups (see ProcessorStore.load)
_APPLIED = "applied"
_GUARD = "guard"  # the deletion guard's records: guard/guard, guard/deletes/<group id>
_CONFIG = "config/evaluated"  # the active configuration the groups' published states were evaluated with
# `e2ad replay processors`: the end offsets of graph.changes when the replay was issued ("topic/partition" ->
# offset). Until every partition is folded up to it nothing is published (see replay_horizon).
_REPLAY = "replay/horizon"
_SEPARATOR = "/"

Write = tuple[bytes, bytes | None]  # a processors.state record: key, value (None: deleted)


class TrackedTable(MutableMapping[str, Any]):
    """A dict that reports every key written or deleted to its store."""

    def __init__(self, name: str, pending: dict[bytes, bytes | None]) -> None:
        self._name = name
        self._data: dict[str, Any] = {}
        self._pending = pending

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self._pending[_state_key(self._name, key)] = _encode(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._pending[_state_key(self._name, key)] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def _restore(self, key: str, value: Any) -> None:
        self._data[key] = value  # as read from processors.state: nothing to write back


class ProcessorStore:
    """users, groups and parents for processors.provisioning, and which records are folded in."""

    def __init__(self) -> None:
        self._pending: dict[bytes, bytes | None] = {}
        self.tables = {name: TrackedTable(name, self._pending) for name in TABLES}
        # member id -> the groups it is in: the inverse of the groups' members, kept by the fold in
        # memory and rebuilt from groups at load instead of written. Written, a record cut off
        # between its group and its parents writes would fold in again differently (the member
        # would look linked already).
        self.parents: dict[str, list[str]] = {}
        self._applied: dict[str, int] = {}  # "topic/partition" -> offset of the last record folded in
        self.guard: dict[str, Any] = {}  # the deletion guard's records as last loaded (DeletionGuard.from_state)
        self.evaluated: dict[str, Any] | None = None  # see evaluated_with
        self.horizon: dict[str, int] | None = None  # see replaying

    @property
    def users(self) -> TrackedTable:
        return self.tables["users"]

    @property
    def groups(self) -> TrackedTable:
        return self.tables["groups"]

    def load(self, latest: Mapping[bytes, bytes]) -> None:
        """Rebuild from processors.state read to its end (the latest value of every key).

        Whatever the store held is dropped first: after an agent restarted by faust's supervisor,
        memory may hold writes of a record that never reached the topic.
        """
        self._pending.clear()
        self._applied.clear()
        self.guard.clear()
        self.evaluated = None
        self.horizon = None
        self.parents.clear()
        for table in self.tables.values():
            table._data.clear()
        for raw_key, raw_value in latest.items():
            name, _, key = raw_key.decode().partition(_SEPARATOR)
            value = json.loads(raw_value)
            if raw_key.decode() == _CONFIG:
                self.evaluated = value
            elif raw_key.decode() == _REPLAY:
                self.horizon = {where: int(offset) for where, offset in value.items()}
            elif name == _APPLIED:
                self._applied[key] = int(value)
            elif name == _GUARD:
                self.guard[key] = value
            elif name in self.tables:
                self.tables[name]._restore(key, value)
            else:
                raise ValueError(f"processors.state holds an unknown key {raw_key!r}")
        nesting: dict[str, set[str]] = {}
        for group_id, group in self.groups.items():
            for member_id in group.get("members", {}):
                nesting.setdefault(member_id, set()).add(group_id)
        self.parents.update((member_id, sorted(groups)) for member_id, groups in nesting.items())

    def already_applied(self, topic: str, partition: int, offset: int) -> bool:
        """True for a record Kafka delivers again although its effect is in the state already."""
        return offset <= self._applied.get(f"{topic}{_SEPARATOR}{partition}", -1)

    def replaying(self) -> bool:
        """Whether a replay's records are still being folded: some partition is below its horizon.

        Below it the fold re-reads history, whose desired states are superseded by later records:
        published, they would put back for a while a member removed since. Nothing is published
        until the state has caught up with the horizon; then every group is evaluated once.
        """
        if self.horizon is None:
            return False
        return any(self._applied.get(where, -1) < end - 1 for where, end in self.horizon.items())

    def replay_caught_up(self) -> bool:
        """Whether a replay's horizon is set and every partition is folded up to it: time to publish."""
        return self.horizon is not None and not self.replaying()

    def replay_finished(self) -> Write:
        """The horizon's tombstone, written once the groups' states caught up with it are published."""
        self.horizon = None
        return _REPLAY.encode(), None

    def changed_keys(self) -> list[Write]:
        """The writes of the record being folded in, the latest per key; taking them clears them."""
        writes = list(self._pending.items())
        self._pending.clear()
        return writes

    @staticmethod
    def guard_writes(records: Mapping[str, Any]) -> list[Write]:
        """processors.state records of the guard's take_writes() (a None record: a tombstone)."""
        return [(_state_key(_GUARD, key), None if value is None else _encode(value)) for key, value in records.items()]

    def evaluated_with(self, marker: dict[str, Any]) -> Write:
        """Record which active configuration (its digest and state) the groups were last evaluated with.

        Written after the states that evaluation published: a crash in between evaluates every
        group again at start, which publishes only what differs.
        """
        self.evaluated = marker
        return _CONFIG.encode(), _encode(marker)

    def forget(self) -> None:
        """Drop every user and group (`e2ad config delete`); the writes are the tombstones."""
        for table in self.tables.values():
            for key in list(table):
                del table[key]
        self.parents.clear()

    def applied(self, topic: str, partition: int, offset: int) -> Write:
        """Record that the record at offset is folded in; the marker to write after its changes."""
        where = f"{topic}{_SEPARATOR}{partition}"
        self._applied[where] = offset
        return _state_key(_APPLIED, where), _encode(offset)


def replay_writes(
    latest: Mapping[bytes, bytes], topic: str, starts: Mapping[int, int], ends: Mapping[int, int], *, fresh: bool
) -> list[Write]:
    """The processors.state records that make stopped processors fold `topic` again from `starts`.

    fresh: every user, group and applied marker is dropped (tombstones), so the partitions are
    folded from offset 0 into an empty state; the deletion guard's records and the evaluated
    configuration stay (staged deletes are still staged). Otherwise each replayed partition's
    applied marker moves back before its start, and its records are folded again onto the
    current state: each key a record writes is set to what that record and the later ones make
    it, so the state that results is the current one. The horizon (`ends`) is written first: a
    command cut off after it leaves the processors holding their output until they pass it.
    """
    where = {partition: f"{topic}{_SEPARATOR}{partition}" for partition in ends}
    writes: list[Write] = [(_REPLAY.encode(), _encode({where[p]: end for p, end in sorted(ends.items())}))]
    if fresh:
        dropped = (*TABLES, _APPLIED)
        writes += [(raw, None) for raw in sorted(latest) if raw.decode().partition(_SEPARATOR)[0] in dropped]
    else:
        writes += [(_state_key(_APPLIED, where[p]), _encode(start - 1)) for p, start in sorted(starts.items())]
    return writes


def _state_key(table: str, key: str) -> bytes:
    return f"{table}{_SEPARATOR}{key}".encode()


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
