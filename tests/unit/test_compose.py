"""compose.yaml is for users (no Docker engine here): check it parses and its settings are real."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from e2ad.config import load_settings

COMPOSE = Path(__file__).parents[2] / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_stage_runs_from_the_e2ad_image_on_kafka(compose: dict) -> None:
    services = compose["services"]
    assert {name: s.get("command") for name, s in services.items() if name != "kafka"} == {
        "ingest": ["ingest"],
        "processor": ["process"],
        "writer": ["write"],
    }
    assert services["writer"]["deploy"]["replicas"] > 1
    for name in ("ingest", "processor", "writer"):
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_environment_is_a_valid_e2ad_configuration(compose: dict, tmp_path: Path) -> None:
    environment = dict(compose["services"]["processor"]["environment"])
    # The secret files exist only in a deployment: stand them in with files of this test's own.
    for name in list(environment):
        if name.endswith("_FILE"):
            secret = tmp_path / name
            secret.write_text("a-secret-value")
            environment[name] = str(secret)
    settings = load_settings(environ={k: str(v) for k, v in environment.items()})
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.ad.url.startswith("ldaps://")
    assert settings.webhook.client_state is not None
    assert settings.graph.configured
