"""`e2ad explain` on the real broker, with the processors running as a process: out of scope by a clause,
a delete held by the deletion guard, a mapping failure, and a group as expected."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from schemas import topics
from schemas.changes import GroupChanged, GroupRemoved
from schemas.config import KafkaSettings
from schemas.deletes import StagedDelete
from schemas.results import ProvisioningResult
from tests.integration.stages import TopicWatcher, publish, run_e2ad, running_stage

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC)
IN_SCOPE, OTHER, BAD_NAME, DOOMED_A, DOOMED_B = (f"3c9e1f0a-5b2d-4c7e-9a1f-0000000000{i:02d}" for i in range(1, 6))
CLAUSE = {"attribute": "displayName", "operator": "REGEX MATCH", "value": "^Team"}


def env(kafka_settings: KafkaSettings, tmp_path: Path) -> dict[str, str]:
    return {
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "E2AD_PROVISIONING__TARGET_CONTAINER": "OU=Groups,DC=e2ad,DC=test",
        "E2AD_SCOPE__FILTERS": json.dumps([[CLAUSE]]),
        "E2AD_MAPPINGS": json.dumps([{"target": "sAMAccountName", "type": "direct", "source": "mailNickname"}]),
        # Two deletes in a window are a burst: the two DOOMED groups are staged.
        "E2AD_DELETES__THRESHOLD": "2",
        "E2AD_DELETES__WINDOW_SECONDS": "30",
        "E2AD_STATE_DIR": str(tmp_path / "state"),
    }


def changed(group_id: str, name: str, nickname: str = "team") -> tuple[str, GroupChanged]:
    attributes = {"securityEnabled": True, "mailEnabled": False, "displayName": name, "mailNickname": nickname}
    return group_id, GroupChanged(id=group_id, observed_at=NOW, attributes=attributes)


async def test_explain_names_the_clause_the_guard_and_the_mapping_error_with_the_fix(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    variables = env(kafka_settings, tmp_path)
    async with (
        TopicWatcher(kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json) as results,
        TopicWatcher(kafka_settings, topics.AD_STAGED_DELETES, StagedDelete.model_validate_json) as staged,
    ):
        with running_stage("process", variables, tmp_path / "process.log"):
            groups = [
                changed(IN_SCOPE, "Team Blue"),
                changed(OTHER, "Finance"),
                changed(BAD_NAME, "Team Red", nickname="Sales/EMEA"),
                changed(DOOMED_A, "Team A"),
                changed(DOOMED_B, "Team B"),
            ]
            await publish(kafka_settings, topics.GRAPH_CHANGES, groups)
            await results.wait_for(lambda r: r.group_id == BAD_NAME and r.status == "failure", timeout=60)
            removed = [(g, GroupRemoved(id=g, observed_at=NOW, reason="deleted")) for g in (DOOMED_A, DOOMED_B)]
            await publish(kafka_settings, topics.GRAPH_CHANGES, removed)
            await staged.wait_for(lambda s: s.group_id == DOOMED_B, timeout=60)
            await staged.wait_for(lambda s: s.group_id == DOOMED_A, timeout=60)

            out_of_scope = await run_e2ad(variables, "explain", OTHER)
            assert (
                'why: it is out of scope: scoping filter: no filter matched (filter 1: displayName REGEX MATCH "^Team"'
                in out_of_scope
            )
            assert "`e2ad config plan FILE`" in out_of_scope

            held = await run_e2ad(variables, "explain", DOOMED_A)
            assert "why: its delete is held by the deletion guard" in held, held
            assert f"`e2ad deletes approve {DOOMED_A}`" in held and "deleted in Entra" in held

            failing = await run_e2ad(variables, "explain", BAD_NAME)
            assert "why: its attribute mapping fails: sAMAccountName:" in failing, failing
            assert "Sales/EMEA" in failing and "processing" not in failing

            expected = await run_e2ad(variables, "explain", IN_SCOPE)
            assert "why: no writer has decided on it yet" in expected, expected

            unknown = await run_e2ad(variables, "explain", "00000000-0000-0000-0000-000000000000")
            assert "`e2ad restart` runs a full delta round" in unknown
