"""Nested groups in any order: which parent groups wait for nested groups that are not in AD yet.

A writer converging a parent whose nested group is missing applies the rest, and the parent
waits here on the missing anchor. When that group is created (announced on ad.created), the
writer owning the parent's partition converges the parent again, in its own loop, so per-group
order holds. This module is the pure bookkeeping; pending_kafka.py keeps it in step with
ad.pending and ad.created.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from schemas.desired import DesiredGroup
from schemas.pending import PendingGroup


@dataclass(frozen=True)
class Waiting:
    """A parent group converged without some nested groups, because they were not in AD."""

    desired: DesiredGroup  # the latest desired state of the parent this writer has seen
    partition: int  # of ad.desired (and of ad.pending): who owns the parent
    missing: frozenset[str]  # anchors of the nested groups it waits for


@dataclass(frozen=True)
class PendingChange:
    """What ad.pending must say now about one parent: that it waits (a record), or no longer (None)."""

    group_id: str
    partition: int
    record: PendingGroup | None


class PendingReferences:
    """The parents waiting on nested groups, for the ad.desired partitions this writer owns."""

    def __init__(self) -> None:
        self._waiting: dict[str, Waiting] = {}  # parent group id → what it waits for
        self._parents: dict[str, set[str]] = {}  # case-folded missing anchor → waiting parent ids
        # Per owned partition: the parents that may have a record in ad.pending, so that one that
        # stops waiting gets a tombstone; None while that is unknown (then every parent does).
        self._recorded: dict[int, set[str] | None] = {}
        # Per partition being loaded: parents recorded since it was assigned (newer than the read).
        self._since_assigned: dict[int, set[str]] = {}
        self._unchecked: set[str] = set()  # parents loaded from ad.pending, not yet checked against AD
        self._due: set[str] = set()  # parents whose nested group now exists, until converged again

    def __len__(self) -> int:
        return len(self._waiting)

    def assign(self, partitions: Iterable[int]) -> None:
        """Own these partitions from now on; their recorded waits follow with load()."""
        for partition in partitions:
            if partition not in self._recorded:
                self._recorded[partition] = None
                self._since_assigned[partition] = set()

    def load(
        self, partition: int, records: Mapping[str, PendingGroup] | None, superseded: Set[str] = frozenset()
    ) -> None:
        """The ad.pending records of an assigned partition (None: they could not be read).

        The consumer may deliver the partition's records while these are read; a parent recorded
        since the assignment is newer than its record here, which is then left out. So are the
        parents in `superseded`, which have a desired state in ad.desired past the committed
        offset: the consumer delivers it again, and the older state here must not be converged
        first (it could bring back what the newer one removed). Their records still count, so
        they get a tombstone once the newer state converges without waiting.
        """
        if partition not in self._recorded or records is None:
            return  # revoked meanwhile, or unknown: every parent states its wait when converged
        newer = self._since_assigned.pop(partition, set())
        self._recorded[partition] = {g for g in records if g not in newer} | {g for g in newer if g in self._waiting}
        for group_id, record in records.items():
            if group_id not in newer and group_id not in superseded:
                self._wait(Waiting(record.desired, partition, frozenset(record.missing)))
                self._unchecked.add(group_id)

    def forget(self, partitions: Iterable[int]) -> None:
        """Give up partitions (revoked): their parents are now the business of another writer."""
        for partition in partitions:
            self._recorded.pop(partition, None)
            self._since_assigned.pop(partition, None)
            for group_id in [g for g, waiting in self._waiting.items() if waiting.partition == partition]:
                self._unwait(group_id)

    def record(self, desired: DesiredGroup, partition: int, missing: Iterable[str]) -> PendingChange | None:
        """After converging a parent: it now waits for `missing` (maybe nothing).

        Returns what ad.pending must say about it, or None when that is unchanged, and also for
        a partition this writer does not own (any more): its new owner decides.
        """
        if partition not in self._recorded:
            return None
        recorded = self._recorded[partition]
        group_id = desired.group_id
        self._since_assigned.get(partition, set()).add(group_id)
        before = self._waiting.get(group_id)
        self._unwait(group_id)
        waiting = Waiting(desired, partition, frozenset(missing))
        if not waiting.missing:
            if recorded is not None and group_id not in recorded:
                return None  # it never waited: nothing to take back
            if recorded is not None:
                recorded.discard(group_id)
            return PendingChange(group_id, partition, None)
        self._wait(waiting)
        if waiting == before and recorded is not None and group_id in recorded:
            return None  # ad.pending already says exactly this
        if recorded is not None:
            recorded.add(group_id)
        return PendingChange(group_id, partition, PendingGroup(desired=desired, missing=sorted(waiting.missing)))

    def unchecked(self) -> frozenset[str]:
        """The missing anchors of parents loaded from ad.pending and not checked against AD yet.

        A group created while no writer owned its parent's partition was announced to nobody who
        cared; looking these up once after a (re)assignment finds it.
        """
        return frozenset(anchor for group_id in self._unchecked for anchor in self._waiting[group_id].missing)

    def checked(self, anchors: Set[str]) -> None:
        """These anchors were looked up in AD: the parents waiting only on them are checked."""
        self._unchecked = {g for g in self._unchecked if not self._waiting[g].missing <= anchors}

    def resolved(self, anchors: Iterable[str]) -> None:
        """These anchors are in AD now: the parents waiting on any of them are due."""
        self._due.update(group_id for anchor in anchors for group_id in self._parents.get(anchor.casefold(), ()))

    def due(self) -> list[Waiting]:
        """The parents to converge again, each once; one stays due until record() is called for it.

        So a convergence that could not run (the DC went away) is not lost with the announcement.
        """
        return [self._waiting[group_id] for group_id in sorted(self._due)]

    def _wait(self, waiting: Waiting) -> None:
        self._waiting[waiting.desired.group_id] = waiting
        for anchor in waiting.missing:
            # AD matches anchors case-insensitively, so the announcement may spell it differently.
            self._parents.setdefault(anchor.casefold(), set()).add(waiting.desired.group_id)

    def _unwait(self, group_id: str) -> None:
        waiting = self._waiting.pop(group_id, None)
        self._unchecked.discard(group_id)
        self._due.discard(group_id)
        for anchor in waiting.missing if waiting else ():
            parents = self._parents[anchor.casefold()]
            parents.discard(group_id)
            if not parents:
                del self._parents[anchor.casefold()]
