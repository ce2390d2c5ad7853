"""`e2ad reconcile`: one pass over the latest desired state of every group repairs AD."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from harness.pipeline import settings_environment
from schemas import topics
from schemas.active import ACTIVE_KEY
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, anchor_of
from tests.active import active_configuration
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


async def test_reconcile_follows_the_active_configuration_and_writes_nothing_while_it_is_disabled(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any, tmp_path: Path
) -> None:
    group_id = str(uuid.uuid4())
    anchor = anchor_of(group_id)
    await publish(kafka_settings, topics.AD_DESIRED, [(group_id, desired(group_id, "latest"))])
    # The file allows another OU only: the active configuration's containers are the ones that count.
    settings = Settings(
        kafka=kafka_settings,
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=f"OU=Elsewhere,{test_ou}"),
        state_dir=tmp_path,
    )
    disabled = active_configuration(2, "disabled", target_container=test_ou)
    await publish(kafka_settings, topics.CONFIG, [(ACTIVE_KEY.decode(), disabled)])

    refused = reconcile(settings)
    assert refused.returncode == 1
    assert "the active configuration (version 2) is disabled: nothing is written to AD" in refused.stderr
    assert description_in_ad(ad_admin, test_ou, anchor) == []

    enabled = active_configuration(3, target_container=test_ou)
    await publish(kafka_settings, topics.CONFIG, [(ACTIVE_KEY.decode(), enabled)])
    done = reconcile(settings)
    assert done.returncode == 0, done.stderr
    assert description_in_ad(ad_admin, test_ou, anchor) == ["latest"]
