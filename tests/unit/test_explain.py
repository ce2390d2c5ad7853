"""`e2ad explain`'s diagnosis: the first fact that explains the group's state, and the command that fixes it."""

from __future__ import annotations

import dataclasses

from e2ad.explain import Facts, diagnose
from processors.configuration import compile_core
from schemas.config import Settings
from schemas.deletes import HeldDelete
from schemas.desired import DesiredGroup, anchor_of
from schemas.pending import PendingGroup
from schemas.results import ProvisioningResult
from schemas.status import WriterStatus
from tests.active import active_configuration
from tests.unit.test_provisioning import GROUP, NESTED, NOW, group_changed

ACTIVE = active_configuration(3, "enabled", target_container="OU=Groups,DC=e2ad,DC=test")


def facts(**changes: object) -> Facts:
    """The group known and in scope under ACTIVE, nothing held, waiting or logged."""
    core = compile_core(Settings(), ACTIVE, users={}, groups={}, parents={})
    core.apply(group_changed())
    known = Facts(GROUP, ACTIVE, core.groups[GROUP], core, None, None, None, None)
    return dataclasses.replace(known, **changes)  # type: ignore[arg-type]


def failure(**fields: object) -> ProvisioningResult:
    return ProvisioningResult(group_id=GROUP, anchor=anchor_of(GROUP), action="create", status="failure", **fields)  # type: ignore[arg-type]


def test_without_a_configuration_or_a_known_group_it_says_what_is_missing() -> None:
    assert "config apply FILE" in (diagnose(facts(active=None)).fix or "")
    unknown = diagnose(facts(group=None, core=None))
    assert "not seen this group" in unknown.reason and "`e2ad restart`" in (unknown.fix or "")


def test_a_staged_delete_names_both_decisions_by_group_id() -> None:
    desired = DesiredGroup(group_id=GROUP, anchor=anchor_of(GROUP), state="absent", reason="deleted in Entra")
    held = HeldDelete(group_id=GROUP, status="staged", arrived_at=NOW, staged=None, desired=desired)
    explained = diagnose(facts(held=held))
    assert explained.reason == "its delete is held by the deletion guard"
    assert f"`e2ad deletes approve {GROUP}`" in (explained.fix or "") and f"reject {GROUP}" in (explained.fix or "")
    counted = diagnose(facts(held=held.model_copy(update={"status": "counted"})))
    assert "deletion guard" not in counted.reason  # released already: the guard holds nothing


def test_a_failed_write_names_the_ldap_error_and_the_retry_and_a_quarantine_its_clear() -> None:
    result = failure(error_code=19, error_message="constraint violation on sAMAccountName")
    explained = diagnose(facts(result=result))
    assert explained.reason == "the last create failed: LDAP error 19: constraint violation on sAMAccountName"
    assert explained.fix == f"fix the cause, then `e2ad provision {GROUP} --apply` retries it"
    quarantined = WriterStatus(writer="w1", state="quarantined")
    assert "`e2ad quarantine clear`" in (diagnose(facts(result=result, writers=[quarantined])).fix or "")


def test_a_wait_for_a_nested_group_points_at_that_group() -> None:
    desired = DesiredGroup(group_id=GROUP, anchor=anchor_of(GROUP), state="present")
    explained = diagnose(facts(pending=PendingGroup(desired=desired, missing=[anchor_of(NESTED)])))
    assert explained.reason == f"its writer waits for nested group(s) not in AD yet: {NESTED}"
    assert explained.fix is not None and f"`e2ad explain {NESTED}`" in explained.fix


def test_a_disabled_configuration_is_the_reason_before_the_log() -> None:
    disabled = active_configuration(4, "disabled", target_container="OU=Groups,DC=e2ad,DC=test")
    assert diagnose(facts(active=disabled, result=failure())).fix == "`e2ad config enable`"
