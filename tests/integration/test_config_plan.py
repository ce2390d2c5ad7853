"""`e2ad config plan` against the running processors and writer, on the real broker and the Samba DC.

The plan of a configuration that drops a third of the groups and changes a mapping lists exactly
those deletes and updates and changes nothing (every topic's end offsets and every group's
uSNChanged are the same after it); `--max-deletes` below the count is an error; after `config
apply` AD is what the plan said, and the plan of the configuration now active is empty.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.pipeline import settings_environment
from schemas import topics
from schemas.changes import GroupChanged
from schemas.config import JOB_SECTIONS, AdSettings, DeleteSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.desired import anchor_of
from tests.integration.helpers import end_offsets, read_group
from tests.integration.stages import publish, run_e2ad, running_stage
from tests.polling import until

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC)
GROUPS = [f"7b1d8c63-7d4f-4e2e-8e6c-0000000000{i:02d}" for i in range(1, 7)]
KEPT, DROPPED = GROUPS[:4], GROUPS[4:]
# Every topic but e2ad.status, which the running stages write on their own timers.
TOPICS = [name for name in topics.ALL_TOPICS if name != topics.STATUS]
AD_TIMEOUT = 90.0


def pipeline_env(kafka_settings: KafkaSettings, ad_settings: AdSettings, ou: str, tmp_path: Path) -> dict[str, str]:
    settings = Settings(
        kafka=kafka_settings,
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=ou),
        # Below the guard's threshold the two deletes pass after a short window.
        deletes=DeleteSettings(threshold=3, window_seconds=1),
        state_dir=tmp_path / "state",
    )
    return settings_environment(settings)


def command_env(stage_env: dict[str, str]) -> dict[str, str]:
    """The operator's: how to reach Kafka and AD, no provisioning sections (the variables would override FILE's)."""
    job = tuple(f"E2AD_{name.upper()}" for name in JOB_SECTIONS)
    return {name: value for name, value in stage_env.items() if not name.startswith(job)}


def plan_file(tmp_path: Path, ou: str) -> Path:
    path = tmp_path / "plan.yaml"
    job = {
        "scope": {"mode": "selected", "groups": KEPT},
        "mappings": [{"target": "description", "type": "constant", "value": "planned"}],
        "provisioning": {"target_container": ou},
    }
    path.write_text(yaml.safe_dump(job))
    return path


def ad_groups(ad_admin: Any, ou: str) -> dict[str, dict[str, Any] | None]:
    return {g: read_group(ad_admin, ou, anchor_of(g)) for g in GROUPS}


async def offsets(kafka_settings: KafkaSettings) -> dict[str, int]:
    return {topic: await end_offsets(kafka_settings, topic) for topic in TOPICS}


async def test_a_plan_lists_the_deletes_and_updates_changes_nothing_and_apply_does_what_it_said(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any, tmp_path: Path
) -> None:
    stages = pipeline_env(kafka_settings, ad_settings, test_ou, tmp_path)
    env = command_env(stages)
    with (
        running_stage("process", stages, tmp_path / "process.log"),
        running_stage("write", stages, tmp_path / "write.log"),
    ):
        changes = [
            (g, GroupChanged(id=g, observed_at=NOW, attributes=_cloud_group(f"Team {i}"))) for i, g in enumerate(GROUPS)
        ]
        await publish(kafka_settings, topics.GRAPH_CHANGES, changes)
        await until(lambda: all(ad_groups(ad_admin, test_ou).values()), "every group in AD", timeout=AD_TIMEOUT)

        file = plan_file(tmp_path, test_ou)
        before_ad, before_topics = ad_groups(ad_admin, test_ou), await offsets(kafka_settings)
        planned = json.loads(await run_e2ad(env, "config", "plan", str(file), "--json", expect=2))
        human = await run_e2ad(env, "config", "plan", str(file), expect=2)
        assert ad_groups(ad_admin, test_ou) == before_ad
        assert await offsets(kafka_settings) == before_topics

        by_action = {a: {g["group_id"] for g in planned["groups"] if g["action"] == a} for a in ("delete", "update")}
        assert by_action == {"delete": set(DROPPED), "update": set(KEPT)}
        deletes = [g for g in planned["groups"] if g["action"] == "delete"]
        assert all(not g["held"] and g["reason"].startswith("out of scope") for g in deletes)
        updates = [g for g in planned["groups"] if g["action"] == "update"]
        assert all(g["attributes"] == [{"name": "description", "old": ["cloud"], "new": ["planned"]}] for g in updates)
        assert planned["summary"] == {
            "created": 0, "updated": 4, "renamed": 0, "moved": 0, "deleted": 2, "held": 0, "failed": 0, "unchanged": 0
        }  # fmt: skip
        assert "0 to create, 4 to update (0 renamed, 0 moved), 2 to delete" in human

        refused = await run_e2ad(env, "config", "plan", str(file), "--max-deletes", "1", expect=1)
        assert "2 deletes, more than --max-deletes 1" in refused

        await run_e2ad(env, "config", "apply", str(file))

        def as_planned() -> bool:
            now = ad_groups(ad_admin, test_ou)
            return all(now[g] is None for g in DROPPED) and all(
                now[g] is not None and now[g]["description"] == ["planned"] for g in KEPT
            )

        await until(as_planned, "AD as the plan said", timeout=AD_TIMEOUT)
        unchanged = await run_e2ad(env, "config", "plan", str(file))
        assert "0 to create, 0 to update (0 renamed, 0 moved), 0 to delete" in unchanged


def _cloud_group(name: str) -> dict[str, Any]:
    return {"securityEnabled": True, "mailEnabled": False, "displayName": name, "description": "cloud"}
