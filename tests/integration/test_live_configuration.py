"""The processors follow e2ad.config while they run: `e2ad config apply|disable|enable|delete` on a real broker.

Every configuration re-evaluates the groups the processors know, from their state, without a
Graph read: groups leaving the scope are deleted through the deletion guard (its window shortened
here), a changed mapping reaches every group, a disabled configuration publishes nothing until
it is enabled, and a deleted one forgets the state and asks ingest for a full round when a
configuration is applied again.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from runtime import kafka
from runtime.active_config import read_active
from schemas import topics
from schemas.changes import GroupChanged
from schemas.config import KafkaSettings
from schemas.control import ControlCommand
from schemas.desired import DesiredGroup
from tests.integration.stages import TopicWatcher, publish, run_e2ad, running_stage

NOW = dt.datetime.now(dt.UTC)
GROUPS = [f"5a0c7a52-6c3e-4d1d-9d5b-0000000000{i:02d}" for i in range(1, 6)]
SELECTED = GROUPS[:2]
CONTAINER = "OU=Groups,DC=e2ad,DC=test"
MANAGED = "managed by e2ad"


def group(group_id: str, name: str) -> GroupChanged:
    attributes = {"securityEnabled": True, "mailEnabled": False, "displayName": name, "description": "cloud"}
    return GroupChanged(id=group_id, observed_at=NOW, attributes=attributes)


def env(kafka_settings: KafkaSettings, tmp_path: Path) -> dict[str, str]:
    return {
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "E2AD_PROVISIONING__TARGET_CONTAINER": CONTAINER,
        "E2AD_DELETES__WINDOW_SECONDS": "1",
        "E2AD_STATE_DIR": str(tmp_path / "state"),
    }


def config_file(tmp_path: Path, name: str, **job: object) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"provisioning": {"target_container": CONTAINER}, **job}))
    return path


def latest(records: list[DesiredGroup]) -> dict[str, DesiredGroup]:
    return {record.group_id: record for record in records}


async def test_configurations_apply_to_the_known_groups_while_the_processors_run(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    variables = env(kafka_settings, tmp_path)
    async with (
        TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired,
        TopicWatcher(kafka_settings, topics.CONTROL, ControlCommand.model_validate_json) as control,
    ):
        with running_stage("process", variables, tmp_path / "process.log"):
            teams = [(g, group(g, f"Team {i}")) for i, g in enumerate(GROUPS)]
            await publish(kafka_settings, topics.GRAPH_CHANGES, teams)
            for g in GROUPS:
                await desired.wait_for(lambda d, g=g: d.group_id == g and d.state == "present", timeout=60)
            first = await read_active(kafka_settings)
            assert first is not None and first.version == 1 and first.state == "enabled"  # the file's, published

            # Selected by id: the three others leave the scope and are deleted once the guard's window passed.
            selected = config_file(tmp_path, "selected", scope={"mode": "selected", "groups": SELECTED})
            output = await run_e2ad(variables, "config", "apply", str(selected))
            assert "as version 2" in output
            for g in GROUPS[2:]:
                gone = await desired.wait_for(lambda d, g=g: d.group_id == g and d.state == "absent", timeout=30)
                assert gone.reason is not None and "out of scope" in gone.reason
            assert all(d.state == "present" for d in desired.seen if d.group_id in SELECTED)

            # A changed mapping reaches every group in scope, and only those.
            mapped = config_file(
                tmp_path, "mapped", scope={"mode": "selected", "groups": SELECTED},
                mappings={"description": f'"{MANAGED}"'},
            )  # fmt: skip
            await run_e2ad(variables, "config", "apply", str(mapped))
            for g in SELECTED:
                await desired.wait_for(lambda d, g=g: d.group_id == g and d.attributes["description"] == MANAGED)
            again = await run_e2ad(variables, "config", "apply", str(mapped))
            assert "unchanged: version 3" in again

            # Disabled: the state follows Graph, nothing is published; enabled: the change comes out.
            await run_e2ad(variables, "config", "disable")
            seen = len(desired.seen)
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(SELECTED[0], group(SELECTED[0], "Renamed"))])
            await desired.collect(4)
            assert [d.group_id for d in desired.seen[seen:]] == []
            await run_e2ad(variables, "config", "enable")
            renamed = await desired.wait_for(lambda d: d.attributes.get("displayName") == "Renamed", timeout=30)
            assert renamed.group_id == SELECTED[0] and renamed.attributes["description"] == MANAGED

        # Restarted with its file (all groups, default mappings): the active configuration stays in effect.
        with running_stage("process", variables, tmp_path / "process-2.log"):
            seen = len(desired.seen)
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(GROUPS[4], group(GROUPS[4], "Still out"))])
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(SELECTED[1], group(SELECTED[1], "Still in"))])
            kept = await desired.wait_for(lambda d: d.attributes.get("displayName") == "Still in", timeout=60)
            assert kept.attributes["description"] == MANAGED
            assert GROUPS[4] not in {d.group_id for d in desired.seen[seen:]}
            log = (tmp_path / "process-2.log").read_text()
            assert "differ from the active configuration, version 5" in log

            # Deleted: the state is forgotten; applying again asks ingest for the full round that rebuilds it.
            await run_e2ad(variables, "config", "delete", "--yes")
            show = await run_e2ad(variables, "config", "show")
            assert "version 6: deleted" in show
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(SELECTED[1], group(SELECTED[1], "While deleted"))])
            await run_e2ad(variables, "config", "apply", str(selected))
            restart = await control.wait_for(lambda c: c.command == "restart", timeout=30)
            assert restart.command_id == "config-7"
            assert "While deleted" not in {d.attributes.get("displayName") for d in desired.seen}
            state = await kafka.read_latest(kafka_settings, topics.PROCESSORS_STATE)
            assert not [key for key in state if key.startswith((b"groups/", b"users/"))]
