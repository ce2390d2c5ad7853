"""Each topic's cleanup (retention or compaction) follows its role; the provisioning log's is a setting."""

from __future__ import annotations

import pydantic
import pytest

from e2ad.settings import load_settings
from runtime.kafka import DAY_MS, HOUR_MS, topic_configs, topic_specs
from schemas import topics
from schemas.config import KafkaSettings

COMPACTED = {
    topics.GRAPH_CURSORS,
    topics.AD_DESIRED,
    topics.AD_PENDING,
    topics.AD_STAGED_DELETES,
    topics.STATUS,
    topics.PROCESSORS_STATE,
    topics.CONFIG,
}


def test_every_topic_has_an_explicit_cleanup() -> None:
    configs = topic_configs(KafkaSettings())
    assert set(configs) == set(topics.ALL_TOPICS)
    assert {name for name, config in configs.items() if config["cleanup.policy"] == "compact"} == COMPACTED
    for name, config in configs.items():
        # Records are removed a closed segment at a time: a segment no longer than the retention.
        assert int(config["segment.ms"]) <= int(config.get("retention.ms", DAY_MS)), name
        if name not in COMPACTED:
            assert config["cleanup.policy"] == "delete", name


def test_retention_follows_each_topic_role() -> None:
    configs = topic_configs(KafkaSettings())

    def retention(name: str) -> int:
        return int(configs[name]["retention.ms"])

    assert HOUR_MS <= retention(topics.GRAPH_NOTIFICATIONS) < DAY_MS  # hints: hours
    assert retention(topics.GRAPH_CHANGES) >= 2 * DAY_MS  # replayable: days
    # The provisioning log, like Cloud Sync's, and what belongs to it.
    for name in (topics.AD_RESULTS, topics.AD_DEAD_LETTER):
        assert retention(name) == 30 * DAY_MS, name
    assert retention(topics.AD_CREATED) <= DAY_MS and retention(topics.CONTROL) <= DAY_MS


def test_results_retention_is_a_setting_that_reaches_the_specs() -> None:
    settings = load_settings(environ={"E2AD_KAFKA__RESULTS_RETENTION_DAYS": "90"}).kafka
    specs = {spec.name: spec.topic_configs for spec in topic_specs(settings)}
    assert specs[topics.AD_RESULTS]["retention.ms"] == str(90 * DAY_MS)
    assert specs[topics.AD_DEAD_LETTER]["retention.ms"] == str(90 * DAY_MS)
    assert specs == topic_configs(settings)


@pytest.mark.parametrize("days", [0, -1, 3651, 1.5])
def test_results_retention_outside_its_range_is_refused(days: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="results_retention_days"):
        KafkaSettings(results_retention_days=days)  # type: ignore[arg-type]
