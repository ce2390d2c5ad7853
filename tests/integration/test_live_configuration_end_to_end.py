"""Live configuration end to end (issue 13, "Tests"): Graph stand-in → ingest → processors → writer → Samba DC.

The three stages run as the `e2ad ingest|process|write` processes an operator starts, on the real
broker, and none is restarted; the operator's controls are the real `e2ad config
apply|disable|enable`, run as processes next to them. The deletion guard has its production
threshold; its window is scaled down to WINDOW seconds. Every outcome is read from AD itself (the
groups in the test's OU); the topics only show that a step was taken (a delete waited, ingest read
a change).

One tenant of ten security groups, in order:
1. the processors' file configuration (every security group): the ten groups in AD;
2. three groups selected by id: the seven others are deleted through the guard, after its window
   and without being staged, the three stay the same AD objects;
3. displayName REGEX MATCH "^(Sales|Ops)": the Sales and Ops groups are created again, the two
   selected others deleted;
4. description as a constant: every group in scope is updated in place;
5. a directory extension IS TRUE: ingest reads it in a full round with the new $select, and exactly
   the group that carries it is in AD;
6. disabled: a rename in Entra reaches the processors but not AD; enabled: it reaches AD.

Delta rounds run on the timer (graph.delta_interval_seconds), not on change notifications.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.pipeline import Pipeline
from harness.standin import running_standin
from runtime.active_config import read_active
from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.changes import CHANGE_RECORD, GroupChanged
from schemas.config import (
    AdSettings,
    DeleteSettings,
    KafkaSettings,
    Settings,
)
from schemas.desired import anchor_of
from schemas.results import ProvisioningResult
from tests.integration.helpers import end_offsets, full_rounds, groups_in_ad, pipeline_settings
from tests.integration.stages import TopicWatcher, e2ad
from tests.polling import until

pytestmark = pytest.mark.integration

WINDOW = 4.0  # deletes.window_seconds: long enough to see a delete that did not wait
TIMEOUT = 60.0
# How long a change that the processors hold while disabled is given to reach AD anyway: a change
# takes about a second through the stages (docs/benchmarks.md, issue 9).
QUIET_SECONDS = 5.0
EXTENSION = f"extension_{uuid.UUID(int=0x13).hex}_WritebackEnabled"
MANAGED = "managed by e2ad"
SALES_OPS = {
    "mode": "all",
    "filters": [[{"attribute": "displayName", "operator": "REGEX MATCH", "value": "^(Sales|Ops)"}]],
}
DESCRIPTION_CONSTANT = {"target": "description", "type": "constant", "value": MANAGED}
NAMES = ("Sales EMEA", "Sales US", "Ops Core", "Ops Edge", "Finance", "HR", "Legal", "IT", "Marketing", "Research")
SELECTED = ("Sales EMEA", "Finance", "HR")
WRITEBACK = "Research"  # the one group with the directory extension set


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Live:
    """AD, the pipeline's settings and the tenant's group ids, and the operator's `e2ad config` on them."""

    def __init__(self, settings: Settings, ad_admin: Any, ou: str, tmp_path: Path) -> None:
        self.settings = settings
        self.ad_admin = ad_admin
        self.ou = ou
        self.tmp_path = tmp_path
        self.log = tmp_path / "logs" / "process.log"
        self.ids: dict[str, str] = {}  # display name → Entra object id

    def anchors(self, *names: str) -> set[str]:
        return {anchor_of(self.ids[name]) for name in names}

    async def groups(self) -> dict[str, dict[str, Any]]:
        """The groups in the test's OU, by anchor, as AD has them now."""
        return await asyncio.to_thread(
            groups_in_ad, self.ad_admin, self.ou, ["description", "displayName", "objectGUID"]
        )

    async def in_ad(
        self, condition: Callable[[dict[str, dict[str, Any]]], bool], what: str, interval: float = 0.5
    ) -> dict[str, dict[str, Any]]:
        async def check() -> dict[str, dict[str, Any]] | None:
            found = await self.groups()
            return found if condition(found) else None

        return await until(check, what, timeout=TIMEOUT, interval=interval)

    async def exactly_in_ad(self, *names: str) -> dict[str, dict[str, Any]]:
        """Wait until the OU holds these groups and no other."""
        wanted = self.anchors(*names)
        return await self.in_ad(lambda found: set(found) == wanted, f"exactly {sorted(names)} in AD")

    async def apply(
        self, name: str, scope: dict[str, Any], mappings: list[dict[str, Any]] | None = None
    ) -> ActiveConfiguration:
        """`e2ad config apply` of a file with this scope and these mappings; the record it published."""
        path = self.tmp_path / f"{name}.yaml"
        job: dict[str, Any] = {
            "scope": scope,
            "provisioning": {"target_container": self.ou, "on_soft_delete_or_out_of_scope": "delete"},
        }
        if mappings:
            job["mappings"] = mappings
        path.write_text(yaml.safe_dump(job))
        output = await e2ad(self.settings, "config", "apply", str(path))
        assert output.startswith(f"applied {path} as version"), output
        active = await read_active(self.settings.kafka)
        assert active is not None and active.state == "enabled" and active.source == str(path), active
        return active

    async def in_effect(self, version: int, state: str) -> None:
        """The processors have taken this configuration version: they say so in their log.

        Disabling publishes nothing they could be watched by, and the writers pause on their own
        reading of e2ad.config, so the log is the one sign that the processors hold changes back.
        """
        line = f"configuration version {version} ({state}) in effect"
        await until(lambda: line in self.log.read_text(), f"the processors' log to say {line!r}", timeout=TIMEOUT)


async def test_configuration_changes_converge_ad_while_the_stages_run(
    kafka_settings: KafkaSettings,
    ad_settings: AdSettings,
    test_ou: str,
    ad_admin: Any,
    tmp_path: Path,
    measured: Callable[[str], None],
) -> None:
    started = time.monotonic()

    def took(what: str) -> None:
        measured(f"live configuration end to end: {what} at {time.monotonic() - started:.1f} s")

    async with running_standin() as standin:
        deletes = DeleteSettings(window_seconds=WINDOW)
        settings = pipeline_settings(standin, kafka_settings, ad_settings, test_ou, tmp_path / "state", deletes=deletes)
        live = Live(settings, ad_admin, test_ou, tmp_path)
        for name in NAMES:
            extension = {EXTENSION: True} if name == WRITEBACK else {}
            live.ids[name] = standin.tenant.add_group(name, description=f"{name} team", **extension).object_id
        ids = live.ids

        async with (
            Pipeline(settings, log_dir=tmp_path / "logs") as pipeline,
            TopicWatcher(kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json) as results,
            TopicWatcher(kafka_settings, topics.GRAPH_CHANGES, CHANGE_RECORD.validate_json) as changes,
        ):
            # -- 1. the file's configuration: every security group ----------------------------------
            first = await live.exactly_in_ad(*NAMES)
            assert {g["description"] for g in first.values()} == {f"{name} team" for name in NAMES}
            took("10 groups in AD")

            # -- 2. three selected by id: the seven others deleted through the guard ----------------
            others = live.anchors(*(name for name in NAMES if name not in SELECTED))
            selected = live.anchors(*SELECTED)
            active = await live.apply("selected", {"mode": "selected", "groups": [ids[name] for name in SELECTED]})
            deleted_from = active.changed_at + dt.timedelta(seconds=WINDOW)
            first_gone: dt.datetime | None = None

            def seven_deleted(found: dict[str, dict[str, Any]]) -> bool:
                nonlocal first_gone
                assert selected <= set(found), "a selected group left AD"
                if first_gone is None and not others <= set(found):
                    first_gone = now()
                return not others & set(found)

            # Polled often: a delete that did not wait is seen gone within a second of the apply.
            after = await live.in_ad(seven_deleted, "the 7 groups out of scope deleted in AD", interval=0.2)
            assert first_gone is not None and first_gone >= deleted_from, (
                f"a group left AD at {first_gone}, before the guard's window ended at {deleted_from}"
            )
            assert {after[a]["objectGUID"] for a in selected} == {first[a]["objectGUID"] for a in selected}
            await results.read_to_end()
            deletes = [r for r in results.seen if r.action == "delete" and r.anchor in others]
            assert len(deletes) == len(others) and {r.status for r in deletes} == {"success"}, deletes
            assert min(r.at for r in deletes) >= deleted_from, "a delete reached the writer before the window"
            # 7 deletes are far below the threshold: none is staged for an operator.
            assert await end_offsets(kafka_settings, topics.AD_STAGED_DELETES) == 0
            assert [r for r in results.seen if r.action == "StagedDelete"] == []
            took("3 selected, 7 deleted after the window")

            # -- 3. a filter: the Sales and Ops groups created again, the others deleted ------------
            sales_ops = [name for name in NAMES if name.startswith(("Sales", "Ops"))]
            await live.apply("sales-ops", SALES_OPS)
            filtered = await live.exactly_in_ad(*sales_ops)
            kept = anchor_of(ids["Sales EMEA"])  # in both scopes: the same AD object throughout
            assert filtered[kept]["objectGUID"] == first[kept]["objectGUID"]
            took("filter: Sales and Ops in AD")

            # -- 4. a mapping: every group in scope updated, in place -------------------------------
            await live.apply("description", SALES_OPS, [DESCRIPTION_CONSTANT])
            mapped = await live.in_ad(
                lambda found: (
                    set(found) == live.anchors(*sales_ops) and all(g["description"] == MANAGED for g in found.values())
                ),
                f"the description {MANAGED!r} on every group in scope",
            )
            assert {a: g["objectGUID"] for a, g in mapped.items()} == {a: g["objectGUID"] for a, g in filtered.items()}
            took("mapping: every group in scope updated")

            # -- 5. a directory extension: read in a full round with the new $select ----------------
            writeback = ids[WRITEBACK]
            await changes.read_to_end()
            unselected = [c for c in changes.seen if isinstance(c, GroupChanged) and c.id == writeback]
            assert unselected and all(EXTENSION not in c.attributes for c in unselected), (
                "the extension came with ingest's own $select"
            )
            rounds = full_rounds(standin)
            extension_scope = {"mode": "all", "filters": [[{"attribute": EXTENSION, "operator": "IS TRUE"}]]}
            active = await live.apply("writeback", extension_scope, [DESCRIPTION_CONSTANT])
            assert EXTENSION in active.graph_group_attributes
            only = await live.exactly_in_ad(WRITEBACK)
            assert only[anchor_of(writeback)]["description"] == MANAGED
            assert full_rounds(standin) > rounds, "no full groups round after the $select changed"
            await changes.wait_for(
                lambda c: (
                    isinstance(c, GroupChanged)
                    and c.id == writeback
                    and c.full_round
                    and c.attributes.get(EXTENSION) is True
                    and c.observed_at > active.changed_at
                )
            )
            took("directory extension: exactly its group in AD")

            # -- 6. disabled: a rename stays out of AD; enabled: it arrives -------------------------
            output = await e2ad(settings, "config", "disable")
            assert "disabled" in output, output
            disabled = await read_active(kafka_settings)
            assert disabled is not None and disabled.state == "disabled"
            await live.in_effect(disabled.version, "disabled")
            standin.tenant.update_group(writeback, displayName="Research Renamed")
            await changes.wait_for(
                lambda c: (
                    isinstance(c, GroupChanged)
                    and c.id == writeback
                    and c.attributes.get("displayName") == "Research Renamed"
                )
            )
            await asyncio.sleep(QUIET_SECONDS)
            held = await live.groups()
            assert held[anchor_of(writeback)]["displayName"] == WRITEBACK, "a change reached AD while disabled"
            assert set(held) == live.anchors(WRITEBACK)

            output = await e2ad(settings, "config", "enable")
            assert "enabled" in output, output
            renamed = await live.in_ad(
                lambda found: found.get(anchor_of(writeback), {}).get("displayName") == "Research Renamed",
                "the rename in AD after `e2ad config enable`",
            )
            assert set(renamed) == live.anchors(WRITEBACK)
            assert renamed[anchor_of(writeback)]["description"] == MANAGED
            took("disabled: rename held; enabled: rename in AD")
            # Every scope change deleted a handful of groups: none reached the threshold.
            assert await end_offsets(kafka_settings, topics.AD_STAGED_DELETES) == 0
            assert pipeline.exited() == {}, "a stage died; see its log"
