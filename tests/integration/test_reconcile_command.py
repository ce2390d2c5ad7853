"""`e2ad reconcile`: one pass over the latest desired state of every group repairs AD."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from harness.pipeline import settings_environment
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, anchor_of
from tests.integration.stages import command_environment, publish


def desired(group_id: str, description: str) -> DesiredGroup:
    anchor = anchor_of(group_id)
    return DesiredGroup(
        group_id=group_id,
        anchor=anchor,
        state="present",
        attributes={
            "cn": f"Reconciled_{group_id[24:]}",
            "description": description,
            "displayName": "Reconciled",
            "msDS-ExternalDirectoryObjectId": anchor,
            "adminDescription": anchor,
            "groupType": UNIVERSAL_SECURITY_GROUP,
        },
        create_only={"sAMAccountName": f"Rec_{group_id[24:]}"},
    )


def reconcile(settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "e2ad", "reconcile"],
        env=command_environment(settings_environment(settings)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def description_in_ad(ad_admin: Any, ou: str, anchor: str) -> list[str]:
    ad_admin.search(ou, f"(msDS-ExternalDirectoryObjectId={anchor})", attributes=["description"])
    return [e.description.value for e in ad_admin.entries]


async def test_reconcile_converges_to_the_latest_states_and_repairs_drift(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any, tmp_path: Path
) -> None:
    group_id = str(uuid.uuid4())
    anchor = anchor_of(group_id)
    await publish(
        kafka_settings,
        topics.AD_DESIRED,
        [(group_id, desired(group_id, "first")), (group_id, desired(group_id, "latest"))],
    )
    settings = Settings(
        kafka=kafka_settings,
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=test_ou),
        state_dir=tmp_path,
    )
    first = reconcile(settings)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "1 success"
    assert description_in_ad(ad_admin, test_ou, anchor) == ["latest"]

    ad_admin.modify(f"CN=Reconciled_{group_id[24:]},{test_ou}", {"description": [("MODIFY_REPLACE", ["by hand"])]})
    assert reconcile(settings).stdout.strip() == "1 success"
    assert description_in_ad(ad_admin, test_ou, anchor) == ["latest"]
    assert reconcile(settings).stdout.strip() == "1 skipped"
