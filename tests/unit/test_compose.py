"""compose.yaml and the Dockerfile are for users (no Docker engine here): check that compose.yaml
follows the compose specification's JSON schema, that each service's settings are a valid e2ad
configuration, and the deployment properties a real cluster depends on."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

from e2ad.settings import load_settings
from schemas.config import Settings

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
SECRETS_DIR = PurePosixPath("/run/secrets")
STAGES = ("ingest", "processor", "writer")
MONITORING = ("prometheus", "grafana")  # on deploy/'s files, not the e2ad image
# The secrets each stage reads, and no others: the graph worker the app's credential and the
# webhook the clientState (one process, `e2ad ingest`); the processors only Kafka; the writers AD.
STAGE_SECRETS = {
    "ingest": {"graph_client_secret", "webhook_client_state"},
    "processor": set(),
    "writer": {"ad_bind_password", "ad_ca"},
}


def web_endpoint(stage: str, settings: Settings) -> tuple[str, int | None]:
    """Where the stage serves /healthz and /metrics, by the stage's own setting."""
    if stage == "ingest":
        return settings.webhook.listen_host, settings.webhook.listen_port
    if stage == "processor":
        return settings.processors.web_host, settings.processors.web_port
    return settings.writer.web_host, settings.writer.web_port


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    # check-jsonschema (a test dependency) vendors the compose specification's schema.
    schema = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(schema.read_text())


def stage_settings(service: dict, tmp_path: Path) -> Settings:
    """The service's environment loaded by e2ad's own loader, its /run/secrets files stood in by
    this test's own (they exist only in a deployment)."""
    environment = {name: str(value) for name, value in service["environment"].items()}
    for name, value in environment.items():
        if PurePosixPath(value).parent == SECRETS_DIR:
            secret = tmp_path / PurePosixPath(value).name
            secret.write_text("a-secret-value")
            environment[name] = str(secret)
    return load_settings(environ=environment)


def secrets_read(service: dict) -> set[str]:
    return {
        PurePosixPath(str(value)).name
        for value in service["environment"].values()
        if PurePosixPath(str(value)).parent == SECRETS_DIR
    }


def volume_mounts(service: dict) -> dict[PurePosixPath, str]:
    """Container path → named volume, for the service's short-syntax volume mounts."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = str(entry).split(":")[:2]
        mounts[PurePosixPath(target)] = source
    return mounts


def on_named_volume(path: PurePosixPath, service: dict, compose: dict) -> bool:
    return any(
        path.is_relative_to(target) and source in (compose.get("volumes") or {})
        for target, source in volume_mounts(service).items()
    )


def test_compose_yaml_follows_the_compose_specification(compose: dict, compose_schema: dict) -> None:
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(compose_schema).iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_check_catches_a_misspelt_healthcheck(compose: dict, compose_schema: dict) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["writer"]["healthcheck"]["intervall"] = "5s"
    assert not jsonschema.Draft7Validator(compose_schema).is_valid(broken)


def test_every_stage_runs_from_the_e2ad_image_on_kafka(compose: dict) -> None:
    services = compose["services"]
    assert {name: s.get("command") for name, s in services.items() if name not in ("kafka", *MONITORING)} == {
        "ingest": ["ingest"],
        "processor": ["process"],
        "writer": ["write"],
    }
    assert services["writer"]["deploy"]["replicas"] > 1
    for name in STAGES:
        assert services[name]["image"] == "e2ad:latest"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"


@pytest.mark.parametrize("stage", STAGES)
def test_each_service_has_a_valid_configuration_for_its_stage(compose: dict, stage: str, tmp_path: Path) -> None:
    settings = stage_settings(compose["services"][stage], tmp_path)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    if stage == "ingest":
        assert settings.graph.configured
        assert settings.webhook.public_url is not None and settings.webhook.client_state is not None
    if stage == "writer":
        assert settings.ad.url.startswith("ldaps://")
        assert settings.ad.bind_password is not None and settings.ad.base_dn
    # The processors map the container and the writers enforce it: one value for both.
    assert settings.provisioning.target_container == "OU=Cloud Groups,DC=corp,DC=example,DC=com"


@pytest.mark.parametrize("stage", STAGES)
def test_each_service_mounts_only_the_secrets_its_stage_reads(compose: dict, stage: str) -> None:
    service = compose["services"][stage]
    mounted = set(service.get("secrets", []))
    assert secrets_read(service) == mounted, "a secret file is read without being mounted, or mounted unread"
    assert mounted == STAGE_SECRETS[stage]
    assert mounted <= set(compose["secrets"])


def test_every_declared_secret_is_a_file_some_stage_reads(compose: dict) -> None:
    used = set().union(*(compose["services"][stage].get("secrets", []) for stage in STAGES))
    assert set(compose["secrets"]) == used
    assert all(set(secret) == {"file"} for secret in compose["secrets"].values())


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_is_healthchecked_on_its_own_web_port(compose: dict, stage: str, tmp_path: Path) -> None:
    service = compose["services"][stage]
    host, port = web_endpoint(stage, stage_settings(service, tmp_path))
    assert port is not None, f"{stage} serves no /healthz"
    assert host == "0.0.0.0", f"{stage}'s /metrics must be reachable from the compose network"
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"], "the image has Python, not curl or a shell tool"
    assert re.search(rf"http://127\.0\.0\.1:{port}/healthz\b", " ".join(test))
    # Scraped on the compose network: the metrics port is exposed or published.
    published = {str(p).split(":")[-1] for p in service.get("ports", [])}
    assert str(port) in {*map(str, service.get("expose", [])), *published}


class _Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.parametrize("stage", STAGES)
def test_the_healthcheck_command_passes_on_200_and_fails_on_503(compose: dict, stage: str) -> None:
    """Run the service's own check command against a local /healthz (on a free port, since the
    configured one may be taken here): healthy answers pass, a quarantined writer's 503 fails."""
    command = compose["services"][stage]["healthcheck"]["test"][1:]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = [re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{server.server_port}", arg) for arg in command]
        local[0] = sys.executable
        outcomes = []
        for status in (200, 503):
            _Healthz.status = status
            outcomes.append(subprocess.run(local, capture_output=True, timeout=30).returncode)
    finally:
        server.shutdown()
        server.server_close()
    assert outcomes[0] == 0
    assert outcomes[1] != 0


def test_writers_publish_no_host_port_since_they_run_as_replicas(compose: dict) -> None:
    assert "ports" not in compose["services"]["writer"]


def test_kafka_keeps_its_data_on_its_volume(compose: dict) -> None:
    kafka = compose["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"].split(",")
    assert all(on_named_volume(PurePosixPath(d), kafka, compose) for d in log_dirs)
    # The volume's data is formatted for one cluster id; a random one per start would refuse it.
    assert kafka["environment"]["CLUSTER_ID"]


def final_stage(dockerfile: str) -> list[tuple[str, str]]:
    """The Dockerfile's last build stage as (instruction, arguments), continuation lines joined."""
    logical = re.sub(r"\\\n", " ", dockerfile)
    instructions = [
        tuple(line.strip().split(None, 1)) for line in logical.splitlines() if line.strip() and line[0] != "#"
    ]
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return [(name.upper(), args) for name, args in instructions[last_from:]]


def directories_created(run: str, owner: str) -> set[PurePosixPath]:
    """Directories a RUN makes with `install -d -o OWNER …`."""
    made: set[PurePosixPath] = set()
    for command in run.split("&&"):
        words = shlex.split(command)
        if words[:1] != ["install"] or "-d" not in words:
            continue
        options, directories, rest = {}, [], iter(words[1:])
        for word in rest:
            if word in ("-o", "-g", "-m"):
                options[word] = next(rest)
            elif not word.startswith("-"):
                directories.append(PurePosixPath(word))
        if options.get("-o") == owner:
            made.update(directories)
    return made


def test_the_processors_data_is_on_a_volume_the_image_gives_its_user(compose: dict, tmp_path: Path) -> None:
    processor = compose["services"]["processor"]
    state_dir = PurePosixPath(stage_settings(processor, tmp_path).state_dir or "")
    assert on_named_volume(state_dir, processor, compose)
    stage = final_stage(DOCKERFILE.read_text())
    user_at = next(i for i, (name, _) in enumerate(stage) if name == "USER")
    assert stage[user_at][1] == "e2ad"
    # Created by e2ad's RUN before USER, so the empty named volume copies e2ad as its owner.
    made = set().union(*(directories_created(args, "e2ad") for name, args in stage[:user_at] if name == "RUN"))
    assert any(state_dir.is_relative_to(d) for d in made)
    assert stage[0][1].startswith("python:"), "the healthchecks run the image's python"


def test_prometheus_scrapes_every_stage_on_its_web_port_and_loads_the_alert_rules(
    compose: dict, tmp_path: Path
) -> None:
    mounts = {PurePosixPath(target): source for source, target in _bind_mounts(compose["services"]["prometheus"])}
    config = yaml.safe_load((ROOT / mounts[PurePosixPath("/etc/prometheus/prometheus.yml")]).read_text())
    rules = {PurePosixPath(path) for path in config["rule_files"]}
    assert rules and all(rule in mounts and (ROOT / mounts[rule]).is_file() for rule in rules)
    scraped = set()
    for job in config["scrape_configs"]:
        scraped |= {
            tuple(target.split(":")) for static in job.get("static_configs", []) for target in static["targets"]
        }
        scraped |= {(name, str(sd["port"])) for sd in job.get("dns_sd_configs", []) for name in sd["names"]}
    for stage in STAGES:
        _, port = web_endpoint(stage, stage_settings(compose["services"][stage], tmp_path))
        assert (stage, str(port)) in scraped, f"{stage} is not scraped on its web port {port}"


def test_grafana_loads_the_dashboard_from_the_folder_its_provider_reads(compose: dict) -> None:
    mounts = dict(_bind_mounts(compose["services"]["grafana"]))
    provisioning = ROOT / next(source for source, target in mounts.items() if target == "/etc/grafana/provisioning")
    [provider] = yaml.safe_load((provisioning / "dashboards" / "e2ad.yaml").read_text())["providers"]
    dashboards = [
        source
        for source, target in mounts.items()
        if PurePosixPath(target).parent == PurePosixPath(provider["options"]["path"])
    ]
    assert dashboards and all((ROOT / source).is_file() for source in dashboards)


def _bind_mounts(service: dict) -> list[tuple[str, str]]:
    """(repository path, container path) of the service's bind mounts of repository files."""
    return [
        (source, target)
        for source, target, *_ in (str(entry).split(":") for entry in service.get("volumes", []))
        if source.startswith("./")
    ]
