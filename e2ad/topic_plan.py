"""What `e2ad topics ensure` does to the cluster's topics and what `describe` marks: pure, from what the cluster has.

The wanted topics are runtime/kafka.py's topic_specs (the one table); the cluster's are read by
e2ad/topics.py. Partitions of the topics keyed by object id are raised together, never lowered,
and a compacted keyed topic's records whose key now hashes to another partition are moved there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aiokafka.admin import NewTopic
from aiokafka.partitioner import DefaultPartitioner

from schemas import topics

# The partitioner of aiokafka's producer when none is given, which the processors' faust producer
# and every e2ad producer use: murmur2 of the key, as the Java client's. A moved record must land
# where the stages will write the key from now on.
_PARTITIONER = DefaultPartitioner()
# The configs describe shows besides the partitions and the replication.
SHOWN_CONFIGS = ("cleanup.policy", "retention.ms")

Remedy = Literal["create", "raise", "align", "refuse"]


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it."""

    name: str
    partitions: int
    replication: int
    configs: Mapping[str, str] | None  # None: the broker cannot describe configs (tansu)
    records: int  # held now: end minus beginning offsets, summed over the partitions


@dataclass(frozen=True)
class Finding:
    """One way a topic disagrees with what e2ad needs, and what ensure does about it."""

    topic: str
    item: str  # "topic", "partitions", "replication" or a config name
    has: str
    needs: str
    remedy: Remedy
    why: str  # what it means and what to do

    def line(self) -> str:
        return f"{self.topic}: {self.item} {self.has}, e2ad needs {self.needs}: {self.why}"


@dataclass(frozen=True)
class TopicPlan:
    findings: list[Finding]
    create: list[NewTopic]
    raise_to: dict[str, int]  # topic -> its new partition count
    align: list[str]  # topics whose configs differ from the table's
    kept: list[str]  # topics that already are as e2ad needs them

    @property
    def refusals(self) -> list[Finding]:
        return [f for f in self.findings if f.remedy == "refuse"]


@dataclass(frozen=True)
class Move:
    """A compacted record whose key hashes to another partition now: its value goes there, a tombstone here."""

    topic: str
    key: bytes
    old_partition: int
    new_partition: int
    value: bytes | None  # None when the new partition holds the key already (written since the raise)


@dataclass(frozen=True)
class _Topic:
    spec: NewTopic
    state: TopicState | None
    findings: list[Finding] = field(default_factory=list)


def compacted(spec: NewTopic) -> bool:
    return bool(spec.topic_configs.get("cleanup.policy") == "compact")


def moving_topics(specs: Sequence[NewTopic]) -> list[str]:
    """The topics whose records must follow their keys when partitions are raised: keyed and compacted.

    A compacted topic keeps a key's latest record for ever, in the partition it was written to; a
    writer that takes over that partition, or a replay, would apply it although it is stale.
    """
    return [spec.name for spec in specs if spec.name in topics.KEYED_BY_OBJECT and compacted(spec)]


def plan_topics(specs: Sequence[NewTopic], cluster: Mapping[str, TopicState]) -> TopicPlan:
    """What ensure creates, raises, aligns and refuses, given the wanted specs and the cluster's topics."""
    entries = [_Topic(spec, cluster.get(spec.name)) for spec in specs]
    keyed_counts = {
        e.spec.name: e.state.partitions for e in entries if e.state and e.spec.name in topics.KEYED_BY_OBJECT
    }
    raise_to: dict[str, int] = {}
    for entry in entries:
        _compare(entry, keyed_counts, raise_to)
    findings = [finding for entry in entries for finding in entry.findings]
    return TopicPlan(
        findings=findings,
        create=[e.spec for e in entries if e.state is None],
        raise_to=raise_to,
        align=sorted({f.topic for f in findings if f.remedy == "align"}),
        kept=[e.spec.name for e in entries if e.state is not None and not e.findings],
    )


def _compare(entry: _Topic, keyed_counts: Mapping[str, int], raise_to: dict[str, int]) -> None:
    spec, state, found = entry.spec, entry.state, entry.findings
    name = spec.name
    if state is None:
        found.append(Finding(name, "topic", "missing", "it", "create", "ensure creates it"))
        return
    if state.replication < spec.replication_factor:
        found.append(
            Finding(
                name,
                "replication",
                str(state.replication),
                str(spec.replication_factor),
                "refuse",
                "a replication factor below kafka.replication_factor is not raised by e2ad: reassign the "
                "partitions' replicas with your Kafka tools (kafka-reassign-partitions.sh), or lower "
                "kafka.replication_factor",
            )
        )
    if name in topics.KEYED_BY_OBJECT:
        _compare_keyed(spec, state, keyed_counts, found, raise_to)
    elif state.partitions != spec.num_partitions:
        found.append(
            Finding(
                name,
                "partitions",
                str(state.partitions),
                str(spec.num_partitions),
                "refuse",
                "its readers need one order of all its records, and partitions cannot be lowered: with the "
                "stages stopped, recreate it with 1 partition (a compacted topic's latest records copied "
                "over)",
            )
        )
    if state.configs is not None:
        for key, value in spec.topic_configs.items():
            if state.configs.get(key) != value:
                found.append(Finding(name, key, state.configs.get(key, "unset"), value, "align", "ensure aligns it"))


def _compare_keyed(
    spec: NewTopic,
    state: TopicState,
    keyed_counts: Mapping[str, int],
    found: list[Finding],
    raise_to: dict[str, int],
) -> None:
    """The keyed topics stay co-partitioned: they are raised together from one count, or not at all."""
    wanted, has = spec.num_partitions, state.partitions
    largest, together = max(keyed_counts.values()), len(set(keyed_counts.values())) == 1
    needs, remedy = f"{wanted} (kafka.partitions)", "refuse"
    if not together and has < largest:
        others = ", ".join(f"{n} {c}" for n, c in sorted(keyed_counts.items()) if c != has)
        needs = f"as many as the other keyed topics ({others})"
        why = (
            "the topics keyed by object id must share one partition count, and e2ad raises them only "
            f"together: raise it to {largest} with your Kafka tools (kafka-topics.sh --alter "
            f"--partitions {largest}), then run `e2ad topics ensure` again, which moves the compacted "
            "records to their keys' partitions"
        )
    elif has > wanted:
        why = f"partitions cannot be lowered: set kafka.partitions to {has}"
    elif has < wanted:
        remedy = "raise"
        why = "ensure raises it, with the other keyed topics, while no stage runs"
        if together:
            raise_to[spec.name] = wanted
        else:
            why += ", once they share one count"
    else:
        return
    found.append(Finding(spec.name, "partitions", str(has), needs, remedy, why))


def home_partition(key: bytes, partitions: int) -> int:
    """The partition the producers send `key` to on a topic of `partitions` partitions."""
    every = list(range(partitions))
    return int(_PARTITIONER(key, every, every))


def misplaced(topic: str, latest: Mapping[int, Mapping[bytes, bytes]], partitions: int) -> list[Move]:
    """The moves that put every key of a compacted topic back into its home partition.

    `latest` is each partition's latest value per key (tombstoned keys left out), `partitions` the
    topic's count now. A key its home partition holds already was written there since the raise,
    so that value is the newer one and the old record only gets its tombstone.
    """
    moves = []
    for partition, values in sorted(latest.items()):
        for key, value in values.items():
            home = home_partition(key, partitions)
            if home != partition:
                newer_at_home = key in latest.get(home, {})
                moves.append(Move(topic, key, partition, home, None if newer_at_home else value))
    return moves
