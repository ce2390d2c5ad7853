"""`e2ad status` next to a running pipeline on the real broker and DC, against the Graph stand-in.

Its figures are checked against the broker's own offsets: the writers' lag after they stopped
while groups kept coming, the delta rounds the graph worker reported, and the job's state after
`e2ad config disable`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.pipeline import Pipeline, operator_environment
from harness.standin import running_standin
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, Settings
from tests.integration.helpers import committed, end_offsets, pipeline_settings, read_group
from tests.integration.stages import run_e2ad
from tests.polling import until
from writers.service import CONSUMER_GROUP as WRITERS

pytestmark = pytest.mark.integration


async def status(settings: Settings, *, expect: int) -> dict[str, Any]:
    return json.loads(await run_e2ad(operator_environment(settings), "status", "--json", expect=expect))


def stage(shown: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in shown["stages"] if s["name"] == name)


def total_lag(shown: dict[str, Any], name: str) -> int:
    return sum(partition["lag"] for partition in stage(shown, name)["lag"])


async def test_status_shows_members_lag_delta_rounds_and_the_job_state_from_kafka(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any, tmp_path: Path
) -> None:
    async with running_standin() as standin:
        tenant = standin.tenant
        first = tenant.add_group("ST first", description="first").object_id
        settings = pipeline_settings(standin, kafka_settings, ad_settings, test_ou, tmp_path / "state")
        logs = tmp_path / "logs"
        async with (
            Pipeline(settings, stages=("ingest", "process"), log_dir=logs),
            Pipeline(settings, stages=("write",), log_dir=logs) as writers,
        ):
            await until(lambda: read_group(ad_admin, test_ou, f"Group_{first}"), "the first group in AD", timeout=60)

            async def caught_up() -> dict[str, Any] | None:
                shown = await status(settings, expect=0)
                return shown if total_lag(shown, "writers") == 0 else None

            healthy = await until(caught_up, "a healthy job, the writers caught up", timeout=30)
            assert healthy["healthy"] is True and healthy["job"]["state"] == "healthy", healthy
            assert all(s["members"] for s in healthy["stages"]), healthy["stages"]
            rounds = healthy["delta_rounds"]
            assert set(rounds) == {"users", "groups"} and rounds["groups"]["last_success"] is not None, rounds
            # The first group's desired state went to ad.desired within the last minute.
            assert stage(healthy, "processors")["records_per_second"] > 0, healthy

            # Stopped writers: what the processors publish meanwhile is their lag, as the broker counts it.
            await writers.stop()
            for name in ("ST second", "ST third", "ST fourth"):
                tenant.add_group(name, description=name)

            async def behind() -> dict[str, Any] | None:
                shown = await status(settings, expect=1)
                return shown if total_lag(shown, "writers") >= 3 else None

            stopped = await until(behind, "three groups waiting for the writers", timeout=30)
            writers_stage = stage(stopped, "writers")
            assert writers_stage["members"] == [] and stopped["healthy"] is False, writers_stage
            end = await end_offsets(kafka_settings, topics.AD_DESIRED)
            assert total_lag(stopped, "writers") == end - await committed(kafka_settings, WRITERS), stopped
            text = await run_e2ad(operator_environment(settings), "status", expect=1)
            assert f"writers: not running; lag {total_lag(stopped, 'writers')} on ad.desired" in text, text
            assert "job: healthy; configuration version 1; not running: writers" in text, text

            output = await run_e2ad(operator_environment(settings), "config", "disable")
            assert "disabled" in output, output
            disabled = await status(settings, expect=1)
            assert disabled["job"]["state"] == "disabled", disabled["job"]
            assert disabled["job"]["reason"] == "configuration disabled", disabled["job"]
