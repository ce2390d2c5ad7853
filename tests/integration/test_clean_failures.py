"""Kafka or the DC out of reach: one line naming the endpoint and the setting per backoff step, no
traceback, and SIGTERM ends a stage within 5 s; one-shot commands fail in one line with exit 1."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.pipeline import settings_environment
from harness.services import LocalServices, free_port
from schemas.config import (
    AdSettings,
    GraphSettings,
    KafkaSettings,
    ProcessorSettings,
    ProvisioningSettings,
    Settings,
    WebhookSettings,
)
from tests.integration.stages import command_environment
from tests.polling import until

pytestmark = pytest.mark.integration

SIGTERM_WITHIN_SECONDS = 5.0
BASE_DN = "DC=e2ad,DC=test"


def stage_settings(bootstrap: str, tmp_path: Path, ad: AdSettings | None = None) -> Settings:
    """Enough for every stage to start; nothing but Kafka (and AD for the writer) is ever reached."""
    closed = free_port()
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        graph=GraphSettings(
            tenant_id="00000000-0000-0000-0000-000000000001",
            client_id="00000000-0000-0000-0000-000000000002",
            client_secret="unused",
            authority_host=f"https://127.0.0.1:{closed}",
            base_url=f"http://127.0.0.1:{closed}/v1.0",
        ),
        webhook=WebhookSettings(listen_port=0),
        ad=ad or AdSettings(url=f"ldaps://127.0.0.1:{closed}", bind_dn="CN=x", bind_password="x", base_dn=BASE_DN),
        provisioning=ProvisioningSettings(target_container=f"OU=groups,{BASE_DN}"),
        processors=ProcessorSettings(),
        state_dir=tmp_path / "state",
    )


def start(command: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "e2ad", *command],
            env=command_environment(settings_environment(settings)),
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def terminate(process: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the process took to exit (killed after 20 s)."""
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9, 20.0
    return code, time.monotonic() - began


def assert_clean(text: str) -> None:
    assert "Traceback" not in text, text
    assert "Unclosed" not in text, text
    assert "ERROR" not in text, text  # aiokafka's own ERRORs are folded into our warnings


@pytest.mark.parametrize("stage", ["write", "ingest", "process"])
async def test_a_stage_waits_for_kafka_with_one_line_per_backoff_step_and_stops_on_sigterm(
    stage: str, tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    log = tmp_path / f"{stage}.log"
    process = start([stage], stage_settings(bootstrap, tmp_path), log)
    # Backoff 1, 2, 4 s: the third attempt's line, 3 s in (with aiokafka's own retries unfolded, dozens).
    await until(lambda: "retrying in 4 s" in log.read_text(), "the third attempt to fail", timeout=30)
    assert process.poll() is None, log.read_text()
    code, took = terminate(process)

    text = log.read_text()
    lines = text.splitlines()
    expected = f"Kafka at {bootstrap} unreachable (kafka.bootstrap_servers)"
    assert 2 <= len(lines) <= 5 and all(expected in line for line in lines), text
    assert "retrying in 1 s" in lines[0] and "retrying in 2 s" in lines[1], text
    assert_clean(text)
    assert code == 0 and took < SIGTERM_WITHIN_SECONDS, (code, took, text)


# What each stage logs once it runs (faust's worker, for the processors, logs "Ready").
RUNNING = {"write": "consumes ad.desired", "ingest": "delta cursors loaded", "process": "]: Ready"}


@pytest.mark.parametrize("stage", list(RUNNING))
async def test_a_stage_stops_within_5_s_when_kafka_goes_away_while_it_runs(stage: str, tmp_path: Path) -> None:
    services = LocalServices(tmp_path / "services")
    bootstrap = await services.start_kafka()
    log = tmp_path / f"{stage}.log"
    process = start([stage], stage_settings(bootstrap, tmp_path), log)
    try:
        await until(lambda: RUNNING[stage] in log.read_text(), f"{stage} to run; see {log}", timeout=60, interval=0.2)
    finally:
        services.stop_kafka()

    def reported() -> int:
        return log.read_text().count("unreachable (kafka.bootstrap_servers)")

    # aiokafka retries about every 200 ms meanwhile: by the third line, 6 s in, dozens if each were logged.
    await until(lambda: reported() >= 3, "the outage reported three times", timeout=30, interval=0.2)
    code, took = terminate(process)

    text = log.read_text()
    outage = [line for line in text.splitlines() if "unreachable (kafka.bootstrap_servers)" in line]
    # Reported at once, then after 2, 4 s: three or four lines, each naming the broker.
    assert 2 <= len(outage) <= 4 and all(f"Kafka at {bootstrap}" in line for line in outage), text
    assert "Traceback" not in text and "Unclosed" not in text, text
    assert code == 0 and took < SIGTERM_WITHIN_SECONDS, (code, took, text)


async def test_the_writer_names_the_unreachable_dc_and_its_setting(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    url = f"ldaps://127.0.0.1:{free_port()}"
    settings = stage_settings(kafka_settings.bootstrap_servers, tmp_path)
    settings = settings.model_copy(update={"ad": settings.ad.model_copy(update={"url": url})})
    log = tmp_path / "write.log"
    process = start(["write"], settings, log)
    try:
        await until(lambda: "consumes ad.desired" in log.read_text(), "the writer to run", timeout=30, interval=0.2)
    finally:
        code, took = terminate(process)

    text = log.read_text()
    assert f"starts without AD, the first record retries: cannot reach the DC at {url} (ad.url)" in text, text
    assert_clean(text)
    assert code == 0 and took < SIGTERM_WITHIN_SECONDS, (code, took, text)


@pytest.mark.parametrize("command", [["quarantine", "status"], ["quarantine", "clear"], ["reconcile"]], ids=" ".join)
def test_a_one_shot_command_fails_in_one_line_with_exit_1(command: list[str], tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "e2ad", *command],
        env=command_environment(settings_environment(stage_settings(bootstrap, tmp_path))),
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - began

    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: Kafka at {bootstrap} unreachable (kafka.bootstrap_servers): ")
    assert took < 15, took  # a bounded wait (about 5 s), not a retry forever
