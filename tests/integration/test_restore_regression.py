"""Issue 8 end to end: soft deletes and restores of a user and of a group, through the real stages.

The stream that left a removed member in AD: U soft-deleted while G gains members, U restored and
back in G, U removed from G, G soft-deleted (deleted from AD) and restored. After every step AD
must hold exactly the members Entra has; after the restore G is created again without U.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.pipeline import Pipeline
from harness.services import free_port
from harness.standin import running_standin
from schemas.config import AdSettings, DeleteSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from tests.integration.helpers import create_ad_user, read_group
from tests.polling import until


@pytest.mark.integration
async def test_a_member_removed_before_a_soft_delete_is_not_in_ad_after_the_restore(
    kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any, tmp_path: Path
) -> None:
    users = [create_ad_user(ad_admin, test_ou, f"r-u{i}-{uuid.uuid4().hex[:6]}") for i in range(3)]
    async with running_standin() as standin:
        tenant = standin.tenant
        u, a, b = (
            tenant.add_user(dn, onPremisesObjectIdentifier=guid, onPremisesSyncEnabled=True).object_id
            for dn, guid in users
        )
        user_dn = dict(zip((u, a, b), (dn for dn, _ in users), strict=True))
        group, nested_1, nested_2 = (tenant.add_group(name).object_id for name in ("G", "N1", "N2"))
        tenant.add_member(group, u)
        webhook_port = free_port()
        settings = Settings(
            kafka=kafka_settings,
            graph=standin.graph_settings(delta_interval_seconds=600, hint_debounce_seconds=0.1),
            webhook=WebhookSettings(
                listen_port=webhook_port, public_url=f"http://127.0.0.1:{webhook_port}", client_state="restore-test"
            ),
            ad=ad_settings,
            provisioning=ProvisioningSettings(target_container=test_ou),
            deletes=DeleteSettings(window_seconds=1),  # a delete waits the guard's window: scaled down
            state_dir=tmp_path / "state",
        )

        def members_in_ad() -> set[str] | None:
            found = read_group(ad_admin, test_ou, f"Group_{group}")
            return None if found is None else {dn.lower() for dn in found["member"]}

        def expected_members() -> set[str]:
            dns = set()
            for member_id, kind in tenant.members[group].items():
                if kind == "users":
                    dns.add(user_dn[member_id].lower())
                else:
                    nested = read_group(ad_admin, test_ou, f"Group_{member_id}")
                    dns.add(nested["dn"].lower() if nested else f"(nested group {member_id}, not in AD yet)")
            return dns

        async def converged(what: str) -> None:
            await until(lambda: members_in_ad() == expected_members(), what, timeout=60)

        steps: list[tuple[str, Callable[[], object]]] = [
            ("U soft-deleted, G gains A, B and N1", lambda: [
                tenant.soft_delete_user(u), tenant.add_member(group, a), tenant.add_member(group, b),
                tenant.add_member(group, nested_1),
            ]),
            ("U restored, G gains N2 and loses A, B", lambda: [
                tenant.restore_user(u), tenant.add_member(group, nested_2), tenant.remove_member(group, a),
                tenant.remove_member(group, b),
            ]),
            ("G gains A, B and loses U, N1", lambda: [
                tenant.add_member(group, a), tenant.add_member(group, b), tenant.remove_member(group, u),
                tenant.remove_member(group, nested_1),
            ]),
        ]  # fmt: skip
        async with Pipeline(settings, log_dir=tmp_path / "logs") as pipeline:
            await until(lambda: read_group(ad_admin, test_ou, f"Group_{nested_2}"), "the groups in AD", timeout=60)
            await converged("G with U")
            assert user_dn[u].lower() in (members_in_ad() or set())
            for what, step in steps:
                step()
                await converged(what)

            tenant.soft_delete_group(group)
            await until(lambda: members_in_ad() is None, "G deleted from AD after its soft delete", timeout=60)
            tenant.restore_group(group)
            await converged("G restored")

            nested_2_in_ad = read_group(ad_admin, test_ou, f"Group_{nested_2}")
            assert nested_2_in_ad is not None
            assert members_in_ad() == {user_dn[a].lower(), user_dn[b].lower(), nested_2_in_ad["dn"].lower()}
            assert user_dn[u].lower() not in (members_in_ad() or set())

            # The same within one delta round: A removed, G soft-deleted and restored at once.
            tenant.remove_member(group, a)
            tenant.soft_delete_group(group)
            tenant.restore_group(group)
            await converged("A removed, G soft-deleted and restored in one round")
            assert user_dn[a].lower() not in (members_in_ad() or set())

            # Nothing comes back later: once a later change has reached AD, G is still as in Entra.
            tenant.update_group(nested_1, displayName="N1 renamed")
            await until(
                lambda: (
                    (g := read_group(ad_admin, test_ou, f"Group_{nested_1}")) and g["displayName"] == ["N1 renamed"]
                ),
                "a later change in AD",
                timeout=60,
            )
            assert members_in_ad() == expected_members()
            assert pipeline.exited() == {}, "a stage died; see its log"
