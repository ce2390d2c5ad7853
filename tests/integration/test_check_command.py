"""`e2ad check` against the real local services: the shared DC, a broker of the test's own, the Graph stand-in."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from e2ad.cli_check import run_checks
from harness.pipeline import settings_environment
from harness.services import free_port
from harness.standin import GraphStandin, running_standin
from ingest.delta import GROUP_SELECT
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings, WebhookSettings
from tests.example_config import EXAMPLE, example_secrets
from tests.integration.stages import command_environment

pytestmark = pytest.mark.integration

EVERY_CHECK = ["configuration", "graph.token", "graph.read", "webhook.public_url", "kafka", "ldap"]


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin() as standin:
        standin.tenant.add_group("Checked")
        yield standin


async def e2ad_check(settings: Settings, *options: str) -> tuple[int, str, str]:
    """`python -m e2ad check` as a real process, while this test's loop keeps serving the stand-in."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "e2ad", "check", *options,
        env=command_environment(settings_environment(settings)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def groups_in(ad_admin: Any, ou: str) -> list[str]:
    ad_admin.search(ou, "(objectClass=group)", attributes=["cn"])
    return [entry.entry_dn for entry in ad_admin.entries]


async def test_every_dependency_reachable_passes_with_exit_0(
    standin: GraphStandin, kafka_settings: KafkaSettings, ad_settings: AdSettings, test_ou: str, ad_admin: Any
) -> None:
    settings = Settings(
        kafka=kafka_settings,
        graph=standin.graph_settings(),
        webhook=WebhookSettings(public_url="https://localhost:8443/e2ad", client_state=SecretStr("checked")),
        ad=ad_settings,
        provisioning=ProvisioningSettings(target_container=test_ou),
    )
    code, stdout, stderr = await e2ad_check(settings, "--json")

    report = json.loads(stdout)
    assert [c["name"] for c in report["checks"]] == [*EVERY_CHECK, f"ldap.container {test_ou}"]
    assert {c["name"]: c["status"] for c in report["checks"] if c["status"] != "pass"} == {}, report
    assert report["ok"] is True and code == 0, stderr
    # The Graph read is the delta reader's own: both resources, with e2ad's $select.
    deltas = standin.requests_to("/groups/delta")
    assert len(deltas) == 1 and deltas[0].query["$select"] == ",".join(GROUP_SELECT)
    assert len(standin.requests_to("/users/delta")) == 1
    assert groups_in(ad_admin, test_ou) == []  # the test group was deleted again


async def test_wrong_bind_password_and_closed_kafka_port_fail_their_lines_with_exit_1(
    ad_settings: AdSettings, test_ou: str
) -> None:
    closed = f"127.0.0.1:{free_port()}"
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=closed),
        ad=ad_settings.model_copy(update={"bind_password": SecretStr("not-the-password")}),
        provisioning=ProvisioningSettings(target_container=test_ou),
    )
    code, stdout, stderr = await e2ad_check(settings)

    lines = {line.split()[1]: line for line in stdout.splitlines()}
    assert code == 1, stdout + stderr
    assert lines["kafka"].startswith("FAIL")
    assert f"Kafka at {closed} unreachable (kafka.bootstrap_servers)" in lines["kafka"]
    assert lines["ldap"].startswith("FAIL")
    assert f"the DC at {ad_settings.url} rejected the credentials of {ad_settings.bind_dn}" in lines["ldap"]
    assert "(ad.bind_dn, ad.bind_password)" in lines["ldap"]
    assert lines["ldap.container"].startswith("SKIP")  # needs the bind
    assert lines["graph.token"].startswith("SKIP") and lines["configuration"].startswith("PASS")
    assert "Traceback" not in stdout + stderr and stderr == ""


async def test_topics_with_other_partition_counts_fail_the_kafka_line(kafka_settings: KafkaSettings) -> None:
    settings = Settings(kafka=kafka_settings.model_copy(update={"partitions": kafka_settings.partitions + 1}))
    checks = {c.name: c for c in await run_checks(settings, source="test")}
    kafka = checks["kafka"]
    assert kafka.status == "fail"
    expected = kafka_settings.partitions + 1
    assert f"ad.desired has {kafka_settings.partitions}, expected {expected}" in kafka.detail
    assert f"kafka.partitions is {expected}" in kafka.detail
    assert "graph.token" in checks and checks["graph.token"].status == "skip"


async def test_a_missing_container_fails_its_line(ad_settings: AdSettings, test_ou: str) -> None:
    missing = f"OU=not-there,{test_ou}"
    settings = Settings(ad=ad_settings, provisioning=ProvisioningSettings(containers=[test_ou, missing]))
    checks = {c.name: c for c in await run_checks(settings, source="test")}
    assert checks[f"ldap.container {test_ou}"].status == "pass"
    failed = checks[f"ldap.container {missing}"]
    assert failed.status == "fail" and f"cannot read {missing} (provisioning.containers)" in failed.detail


async def test_the_example_configuration_loads_and_each_unreachable_dependency_fails_its_own_line(
    tmp_path: Path,
) -> None:
    """e2ad.example.yaml as an operator starts from: every field valid (the configuration line passes).

    Its endpoints are placeholders, so each is pointed at a closed local port: every dependency
    line then fails quickly, naming its setting, instead of waiting on names that do not resolve.
    """
    closed = f"127.0.0.1:{free_port()}"
    environ = {
        **example_secrets(tmp_path),
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": closed,
        "E2AD_GRAPH__AUTHORITY_HOST": f"https://{closed}",
        "E2AD_GRAPH__BASE_URL": f"https://{closed}/v1.0",
        "E2AD_WEBHOOK__PUBLIC_URL": "https://localhost/e2ad",
        "E2AD_AD__URL": f"ldaps://{closed}",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "e2ad", "--config", str(EXAMPLE), "check", "--json",
        env=command_environment(environ), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)

    assert stdout, stderr.decode()
    report = json.loads(stdout)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status["configuration"] == "pass", report
    assert process.returncode == 1 and report["ok"] is False
    assert status["kafka"] == "fail" and status["graph.token"] == "fail" and status["ldap"] == "fail", report
    ldap = next(c for c in report["checks"] if c["name"] == "ldap")
    assert "ad.ca_file /etc/e2ad/ad-ca.pem" in ldap["detail"]  # the example's CA exists only on the host
    assert "Traceback" not in stdout.decode() + stderr.decode()
