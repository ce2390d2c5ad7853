"""topics ensure's plan: what it creates, raises together, aligns, refuses, and which records it moves."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from e2ad.topic_plan import Move, TopicState, home_partition, misplaced, moving_topics, plan_topics
from runtime.kafka import topic_configs, topic_specs
from schemas import topics
from schemas.config import KafkaSettings

SETTINGS = KafkaSettings(partitions=6)
SPECS = topic_specs(SETTINGS)


def cluster(keyed: int = 6, single: int = 1, replication: int = 1, **overrides: TopicState) -> dict[str, TopicState]:
    """Every topic as e2ad needs it with `keyed` partitions on the keyed topics, `single` on the others."""
    configs = topic_configs(SETTINGS)
    states = {
        name: TopicState(
            name, keyed if name in topics.KEYED_BY_OBJECT else single, replication, dict(configs[name]), records=0
        )
        for name in topics.ALL_TOPICS
    }
    return {**states, **overrides}


def test_an_empty_cluster_gets_every_topic_created() -> None:
    plan = plan_topics(SPECS, {})
    assert [spec.name for spec in plan.create] == list(topics.ALL_TOPICS)
    assert plan.refusals == [] and plan.raise_to == {} and plan.kept == []


def test_a_cluster_as_needed_is_left_as_it_is() -> None:
    plan = plan_topics(SPECS, cluster())
    assert plan.findings == [] and plan.create == []
    assert plan.kept == list(topics.ALL_TOPICS)


def test_fewer_partitions_raise_every_keyed_topic_together_and_no_other() -> None:
    plan = plan_topics(SPECS, cluster(keyed=4))
    assert plan.raise_to == dict.fromkeys(topics.KEYED_BY_OBJECT, 6)
    assert plan.refusals == []
    assert set(plan.kept) == set(topics.ALL_TOPICS) - topics.KEYED_BY_OBJECT


def test_a_missing_keyed_topic_is_created_with_the_new_count_while_the_others_are_raised() -> None:
    states = cluster(keyed=4)
    del states[topics.AD_PENDING]
    plan = plan_topics(SPECS, states)
    assert [(spec.name, spec.num_partitions) for spec in plan.create] == [(topics.AD_PENDING, 6)]
    assert plan.raise_to == dict.fromkeys(topics.KEYED_BY_OBJECT - {topics.AD_PENDING}, 6)


def test_more_partitions_than_kafka_partitions_are_refused_naming_the_setting() -> None:
    plan = plan_topics(SPECS, cluster(keyed=8))
    assert plan.raise_to == {}
    desired = next(f for f in plan.refusals if f.topic == topics.AD_DESIRED)
    assert desired.line() == (
        "ad.desired: partitions 8, e2ad needs 6 (kafka.partitions): partitions cannot be lowered: "
        "set kafka.partitions to 8"
    )
    assert {f.topic for f in plan.refusals} == topics.KEYED_BY_OBJECT


def test_keyed_topics_of_different_counts_are_refused_and_none_is_raised() -> None:
    lagging = TopicState(topics.AD_PENDING, 4, 1, dict(topic_configs(SETTINGS)[topics.AD_PENDING]), 0)
    plan = plan_topics(SPECS, cluster(keyed=5, **{topics.AD_PENDING: lagging}))
    assert plan.raise_to == {}
    (refusal,) = [f for f in plan.refusals if f.item == "partitions"]
    assert refusal.topic == topics.AD_PENDING and refusal.has == "4"
    assert "ad.desired 5" in refusal.needs and "kafka-topics.sh --alter --partitions 5" in refusal.why


def test_a_single_partition_topic_with_several_is_refused() -> None:
    control = TopicState(topics.CONTROL, 3, 1, dict(topic_configs(SETTINGS)[topics.CONTROL]), 0)
    plan = plan_topics(SPECS, cluster(**{topics.CONTROL: control}))
    assert [(f.topic, f.item, f.has, f.needs) for f in plan.refusals] == [(topics.CONTROL, "partitions", "3", "1")]


def test_a_replication_below_the_setting_is_refused_and_above_it_accepted() -> None:
    three = KafkaSettings(partitions=6, replication_factor=3)
    plan = plan_topics(topic_specs(three), cluster(replication=2))
    assert {f.topic for f in plan.refusals if f.item == "replication"} == set(topics.ALL_TOPICS)
    assert "kafka.replication_factor" in plan.refusals[0].why
    assert plan_topics(topic_specs(three), cluster(replication=4)).refusals == []


def test_a_compacted_topic_set_to_delete_is_aligned() -> None:
    deleting = TopicState(topics.AD_DESIRED, 6, 1, {"cleanup.policy": "delete", "segment.ms": "3600000"}, 0)
    plan = plan_topics(SPECS, cluster(**{topics.AD_DESIRED: deleting}))
    assert plan.align == [topics.AD_DESIRED] and plan.refusals == []
    (finding,) = plan.findings
    assert (finding.item, finding.has, finding.needs, finding.remedy) == (
        "cleanup.policy",
        "delete",
        "compact",
        "align",
    )


def test_unknown_configs_are_not_findings() -> None:
    unreadable = {name: TopicState(name, s.partitions, 1, None, 0) for name, s in cluster().items()}
    assert plan_topics(SPECS, unreadable).findings == []


def test_only_the_keyed_compacted_topics_move_their_records() -> None:
    assert set(moving_topics(SPECS)) == {topics.AD_DESIRED, topics.AD_PENDING, topics.AD_STAGED_DELETES}


async def test_home_partition_is_the_default_producers() -> None:
    producer = AIOKafkaProducer()  # never started: the constructor chooses its partitioner
    assert type(producer._partitioner) is DefaultPartitioner
    every = list(range(6))
    for n in range(50):
        key = f"group-{n}".encode()
        assert home_partition(key, 6) == producer._partitioner(key, every, every)
    # A known murmur2 value (the Java client's Utils.murmur2 test vector for "21").
    assert home_partition(b"21", 1000) == (-973932308 & 0x7FFFFFFF) % 1000


def test_misplaced_records_move_to_their_home_and_a_newer_value_there_wins() -> None:
    moving = next(k for k in (f"g{n}".encode() for n in range(100)) if home_partition(k, 4) != home_partition(k, 6))
    staying = next(k for k in (f"g{n}".encode() for n in range(100)) if home_partition(k, 4) == home_partition(k, 6))
    old, new = home_partition(moving, 4), home_partition(moving, 6)
    latest = {old: {moving: b"stale"}, home_partition(staying, 4): {staying: b"kept"}}
    assert misplaced(topics.AD_DESIRED, latest, 6) == [Move(topics.AD_DESIRED, moving, old, new, b"stale")]
    # Written to its new partition since the raise: only the old record's tombstone is left to write.
    latest[new] = {moving: b"newer"}
    assert misplaced(topics.AD_DESIRED, latest, 6) == [Move(topics.AD_DESIRED, moving, old, new, None)]
