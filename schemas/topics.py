"""Topic names and the JSON codec every stage uses to put pydantic records on Kafka.

Records are keyed by the Entra object id they concern, so each stage keeps per-object order
and can run several copies in one consumer group (design principle 4).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

# accepted webhook deliveries as Graph sent them, without the clientState; a large one in several records
GRAPH_NOTIFICATIONS = "graph.notifications"
GRAPH_CHANGES = "graph.changes"  # normalised user / group changes from delta rounds
GRAPH_CURSORS = "graph.cursors"  # compacted: the deltaLink of each resource
AD_DESIRED = "ad.desired"  # compacted: the whole desired state of each group
# compacted: the deletes the deletion guard holds for an operator, the latest per group (a
# tombstone once approved, rejected or superseded)
AD_STAGED_DELETES = "ad.staged-deletes"
AD_RESULTS = "ad.results"  # the provisioning log: one record per writer decision
AD_DEAD_LETTER = "ad.dead-letter"  # records the writer could not apply, with the reason
AD_PENDING = "ad.pending"  # compacted: parent groups waiting for nested groups not in AD yet
AD_CREATED = "ad.created"  # groups a writer just created; every writer reads it (one partition)
CONTROL = "e2ad.control"  # operator commands to running stages: quarantine, staged deletes, restart
# compacted: each writer's state (running, quarantined and why), keyed by its name, and the
# processors' (the deletion guard), keyed "processors", and the graph worker's, keyed "ingest"
STATUS = "e2ad.status"
# compacted, one partition: the processors' users, groups and parents, and the offsets folded in
PROCESSORS_STATE = "processors.state"
# compacted, one partition: the active provisioning configuration (schemas/active.py)
CONFIG = "e2ad.config"
# How long each topic keeps its records (retention or compaction): runtime/kafka.py topic_configs.

# Topics keyed by object id share one partition count so that stages stay co-partitioned.
KEYED_BY_OBJECT = frozenset({GRAPH_CHANGES, AD_DESIRED, AD_RESULTS, AD_DEAD_LETTER, AD_PENDING, AD_STAGED_DELETES})
ALL_TOPICS = (
    GRAPH_NOTIFICATIONS,
    GRAPH_CHANGES,
    GRAPH_CURSORS,
    AD_DESIRED,
    AD_RESULTS,
    AD_DEAD_LETTER,
    AD_PENDING,
    AD_CREATED,
    AD_STAGED_DELETES,
    CONTROL,
    STATUS,
    PROCESSORS_STATE,
    CONFIG,
)

M = TypeVar("M")


def encode(record: BaseModel, *, exclude_none: bool = False) -> bytes:
    """Serialise a record for Kafka: compact JSON with the field aliases Graph and operators know.

    exclude_none leaves out unset optional fields, for records whose size matters (graph.notifications).
    """
    return record.model_dump_json(by_alias=True, exclude_none=exclude_none).encode()


def decode(adapter: TypeAdapter[M] | type[M], payload: bytes) -> M:
    """Parse a Kafka value into its model; raises pydantic.ValidationError naming the bad field."""
    if isinstance(adapter, type) and issubclass(adapter, BaseModel):
        return adapter.model_validate_json(payload)  # type: ignore[return-value]
    assert isinstance(adapter, TypeAdapter)
    return adapter.validate_json(payload)


def key(object_id: str) -> bytes:
    return object_id.encode()


def jsonable(value: Any) -> Any:
    """Plain JSON value of a model or a collection of them (for logs and the command line)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value
