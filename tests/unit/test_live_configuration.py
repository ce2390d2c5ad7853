"""The processors' side of a live configuration, pure: which evaluation a configuration needs, pausing,
re-evaluating from the state, forgetting it; and `e2ad config validate`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from e2ad.cli import main
from processors.configuration import compile_core, evaluation_marker, needs_evaluation
from processors.state import ProcessorStore
from schemas.active import ActiveConfiguration
from schemas.changes import GroupChanged
from schemas.config import ProvisioningJob, ProvisioningSettings, Settings

NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)
GROUP = "0f6a3b5c-1111-4000-8000-a1b2c3d4e5f6"
CONTAINER = "OU=Groups,DC=e2ad,DC=test"
SECURITY = {"securityEnabled": True, "mailEnabled": False, "displayName": "Sales"}


def active(version: int = 1, state: str = "enabled", **job: object) -> ActiveConfiguration:
    return ActiveConfiguration(
        version=version,
        state=state,  # type: ignore[arg-type]
        changed_at=NOW,
        changed_by="test",
        job=None if state == "deleted" else ProvisioningJob.model_validate(
            {"provisioning": ProvisioningSettings(target_container=CONTAINER), **job}
        ),
    )  # fmt: skip


def test_every_group_is_evaluated_again_when_the_scope_mappings_or_state_differ_from_the_last_evaluation() -> None:
    first = active()
    assert needs_evaluation(first, None)  # never evaluated (a state from before e2ad.config)
    assert not needs_evaluation(first, evaluation_marker(first))
    # The same configuration applied again as a later version: nothing to evaluate.
    assert not needs_evaluation(active(version=2), evaluation_marker(first))
    assert needs_evaluation(active(version=2, mappings={"description": '"x"'}), evaluation_marker(first))
    assert needs_evaluation(active(version=2, state="disabled"), evaluation_marker(first))


def test_the_evaluation_marker_is_written_and_read_back_with_the_state() -> None:
    store = ProcessorStore()
    key, value = store.evaluated_with(evaluation_marker(active(version=3)))
    rebuilt = ProcessorStore()
    rebuilt.load({key: value})
    assert rebuilt.evaluated == {"version": 3, "digest": active().digest, "state": "enabled"}


def test_forgetting_the_state_writes_a_tombstone_for_every_user_and_group() -> None:
    store = ProcessorStore()
    store.users["u1"] = {"displayName": "A"}
    store.groups["g1"] = {"members": {"u1": "user"}}
    store.changed_keys()
    store.parents["u1"] = ["g1"]

    store.forget()

    assert sorted(store.changed_keys()) == [(b"groups/g1", None), (b"users/u1", None)]
    assert not store.users and not store.groups and not store.parents


def test_a_disabled_configuration_publishes_nothing_and_enabling_publishes_what_changed_meanwhile() -> None:
    store = ProcessorStore()
    settings = Settings()
    tables = {"users": store.users, "groups": store.groups, "parents": store.parents}
    enabled = compile_core(settings, active(), **tables)
    [created] = enabled.apply(GroupChanged(id=GROUP, observed_at=NOW, attributes=SECURITY))
    assert created.state == "present"

    disabled = compile_core(settings, active(version=2, state="disabled"), **tables)
    renamed = GroupChanged(id=GROUP, observed_at=NOW, attributes={**SECURITY, "displayName": "Ops"})
    assert disabled.apply(renamed) == []
    assert store.groups[GROUP]["attributes"]["displayName"] == "Ops"  # the state still follows Graph

    again = compile_core(settings, active(version=3), **tables)
    [update] = again.reevaluate(NOW)
    assert update.attributes["displayName"] == "Ops"
    assert again.reevaluate(NOW) == []  # published once


def test_a_deleted_configuration_compiles_to_no_core() -> None:
    with pytest.raises(ValueError, match="version 4 is deleted"):
        compile_core(Settings(), active(version=4, state="deleted"), users={}, groups={}, parents={})


def test_config_validate_exits_1_naming_the_field_and_0_for_a_valid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"scope": {"mode": "selected"}}))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"provisioning": {"target_container": CONTAINER}}))
    runner = CliRunner()

    refused = runner.invoke(main, ["config", "validate", str(bad)], env={})
    accepted = runner.invoke(main, ["config", "validate", str(good)], env={})

    assert refused.exit_code == 1
    assert "scope.groups is empty with scope.mode selected" in refused.output
    assert accepted.exit_code == 0, accepted.output
    assert f"{good}: valid" in accepted.output


def test_config_commands_take_the_files_provisioning_sections_as_written_and_name_the_variables_left_out(
    tmp_path: Path,
) -> None:
    selected = tmp_path / "selected.yaml"
    selected.write_text(
        yaml.safe_dump(
            {"scope": {"mode": "selected", "groups": [GROUP]}, "provisioning": {"target_container": CONTAINER}}
        )
    )
    shell = {"E2AD_SCOPE__MODE": "all", "E2AD_SCOPE__GROUPS": "[]"}

    result = CliRunner().invoke(main, ["config", "validate", str(selected)], env=shell)

    assert result.exit_code == 0, result.output
    assert "scope selected with 0 filter(s)" in result.output  # not the shell's mode all
    assert "ignored E2AD_SCOPE__GROUPS, E2AD_SCOPE__MODE:" in result.output
