"""Configuration loading: YAML, E2AD_… variables, secret files, and errors that name the field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from e2ad.cli import main
from e2ad.settings import load_settings
from runtime.config import ConfigError
from schemas.config import AdSettings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "e2ad.yaml"
    path.write_text(text)
    return path


def test_yaml_then_environment_then_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "bind"
    secret.write_text("hunter2\n")
    config = write(tmp_path, "kafka:\n  bootstrap_servers: k1:9092\n  partitions: 8\nad:\n  url: ldaps://dc1:636\n")
    settings = load_settings(
        config,
        environ={"E2AD_KAFKA__PARTITIONS": "12", "E2AD_AD__BIND_PASSWORD_FILE": str(secret), "OTHER": "x"},
    )
    assert settings.kafka.bootstrap_servers == "k1:9092"
    assert settings.kafka.partitions == 12
    assert settings.ad.bind_password is not None
    assert settings.ad.bind_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)  # secrets never reach logs


KERBEROS = "ad:\n  auth: kerberos\n  url: ldaps://dc1.corp.example:636\n"


@pytest.mark.parametrize(
    ("yaml_text", "environ", "message"),
    [
        ("kafka:\n  partitions: zero\n", {}, "kafka.partitions: Input should be a valid integer"),
        ("kafka:\n  bootstrap: x\n", {}, "kafka.bootstrap: Extra inputs are not permitted"),
        ("", {"E2AD_AD__URL": "ldap://dc1"}, "ad: Value error, ad.url is plain ldap://"),
        ("graph:\n  tenant_id: t\n", {}, "graph.client_id is required"),
        ("webhook:\n  public_url: https://e2ad.example.com\n", {}, "webhook.client_state is required"),
        ("", {"E2AD_WEBHOOK__CLIENT_STATE": "x" * 129}, "webhook.client_state: Value error, must be 1 to 128"),
        ("ad:\n  auth: ntlm\n", {}, "ad.auth: Input should be 'simple' or 'kerberos'"),
        ("ad:\n  keytab: /etc/e2ad.keytab\n", {}, "ad.keytab is only used with ad.auth kerberos"),
        ("", {"E2AD_AD__KERBEROS_PRINCIPAL": "svc@X"}, "ad.kerberos_principal is only used with ad.auth kerberos"),
        (KERBEROS + "  bind_dn: CN=svc\n", {}, "ad.bind_dn is only used with ad.auth simple"),
        (KERBEROS, {"E2AD_AD__BIND_PASSWORD": "x"}, "ad.bind_password is only used with ad.auth simple"),
        (
            "ad:\n  auth: kerberos\n  url: ldaps://10.0.0.5\n",
            {},
            "needs the DC's host name: ad.url names it by address",
        ),
        (
            "ad:\n  base_dn: DC=corp,DC=example\nprovisioning:\n  containers:\n    - OU=Groups,DC=other,DC=example\n",
            {},
            "provisioning.containers[0]: OU=Groups,DC=other,DC=example is not below ad.base_dn",
        ),
        (
            "provisioning:\n  target_container: OU=Default,DC=corp\n",
            {"E2AD_PROVISIONING__CONTAINERS": '["OU=Sales,DC=corp", "OU=Marketing,DC=corp"]'},
            "provisioning.target_container: OU=Default,DC=corp is in none of provisioning.containers",
        ),
        ("- a list\n", {}, "must hold a mapping of sections"),
        ("kafka: [\n", {}, "is not valid YAML"),
    ],
)
def test_bad_configuration_names_the_field(tmp_path: Path, yaml_text: str, environ: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, yaml_text), environ=environ)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("ad", "host"),
    [
        ({"url": "ldaps://dc1.corp.example:636"}, "dc1.corp.example"),
        ({"url": "ldaps://dc1.corp.example", "tls_server_name": "ldap.corp.example"}, "dc1.corp.example"),
        ({"url": "ldaps://127.0.0.1:636", "tls_server_name": "DC1.e2ad.test"}, "DC1.e2ad.test"),
        ({"url": "ldap://[::1]:389", "start_tls": True, "tls_server_name": "DC1.e2ad.test"}, "DC1.e2ad.test"),
    ],
)
def test_kerberos_asks_for_the_dc_by_its_name(ad: dict, host: str) -> None:
    settings = AdSettings(auth="kerberos", **ad)  # no keytab: the process's credential cache
    assert settings.kerberos_host == host


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read configuration file .*missing\.yaml"):
        load_settings(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match=r"ad\.bind_password_file: cannot read .*nope"):
        load_settings(environ={"E2AD_AD__BIND_PASSWORD_FILE": str(tmp_path / "nope")})


def test_mapping_expressions_are_checked_when_the_configuration_loads(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "mappings:\n  description: Left([description]\n  info: Nope([displayName])\n  adminDescription: '\"x\"'\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert "mappings[2] (adminDescription): cannot be mapped: fixed" in message
    assert "mappings[0] (description):" in message
    assert "mappings[1] (info):" in message and "Nope" in message


def test_e2ad_config_names_the_file_and_is_no_setting(tmp_path: Path) -> None:
    config = write(tmp_path, "kafka:\n  partitions: 8\n")
    settings = load_settings(config, environ={"E2AD_CONFIG": str(config), "E2AD_TEST_KAFKA_BOOTSTRAP": "k:1"})
    assert settings.kafka.partitions == 8


def test_the_command_line_loads_the_file_e2ad_config_names(tmp_path: Path) -> None:
    config = write(tmp_path, f"state_dir: {tmp_path / 'state'}\n")
    # only this variable of the E2AD_ family: not the session's own (a developer's settings)
    environ = {name: None for name in os.environ if name.startswith("E2AD_")} | {"E2AD_CONFIG": str(config)}
    result = CliRunner().invoke(main, ["services", "status"], env=environ)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["state_dir"] == str(tmp_path / "state")


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("E2AD_AD__BIND_PASWORD", "E2AD_AD__BIND_PASWORD names no setting; did you mean E2AD_AD__BIND_PASSWORD"),
        ("E2AD_AD_BIND_DN", "E2AD_AD_BIND_DN names no setting; did you mean E2AD_AD__BIND_DN (ad.bind_dn)?"),
        ("E2AD_KAFKA__BOOTSTRAP", "did you mean E2AD_KAFKA__BOOTSTRAP_SERVERS (kafka.bootstrap_servers)?"),
        ("E2AD_GRAPH__CLIENT_SECRET_FIEL", "did you mean E2AD_GRAPH__CLIENT_SECRET_FILE (graph.client_secret_file)?"),
        ("E2AD_NOTHING_LIKE_IT_AT_ALL", "E2AD_NOTHING_LIKE_IT_AT_ALL names no setting\n"),
    ],
)
def test_unknown_variable_is_an_error_that_names_it(variable: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: "x", "E2AD_KAFKA__PARTITIONS": "2"})
    assert message in str(caught.value) + "\n"


def test_every_unknown_variable_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"E2AD_KAFKA__PARTITION": "2", "E2AD_LOGLEVEL": "DEBUG"})
    assert "E2AD_KAFKA__PARTITION names no setting" in str(caught.value)
    assert "E2AD_LOGLEVEL names no setting; did you mean E2AD_LOG_LEVEL" in str(caught.value)


def test_yaml_typo_gets_did_you_mean(tmp_path: Path) -> None:
    config = write(tmp_path, "kafak:\n  partitions: 2\nad:\n  bind_pasword_file: /run/secrets/ad\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert "kafak: Extra inputs are not permitted; did you mean kafka?" in str(caught.value)
    assert "ad.bind_pasword_file: Extra inputs are not permitted; did you mean ad.bind_password_file?" in str(
        caught.value
    )


def test_variables_name_sections_and_collections_as_json(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "E2AD_KAFKA": '{"partitions": 3, "client_id": "from-json"}',
            "E2AD_KAFKA__CLIENT_ID": "from-variable",
            "E2AD_MAPPINGS": '{"extensionAttribute1": "[displayName]"}',
            "E2AD_WRITER__QUARANTINE_RETRY_SECONDS": "[1, 2]",
        }
    )
    assert (settings.kafka.partitions, settings.kafka.client_id) == (3, "from-variable")
    # The dict form is one expression rule per key; attribute names keep their case.
    assert [(rule.target, rule.type, rule.expression) for rule in settings.mappings] == [
        ("extensionAttribute1", "expression", "[displayName]")
    ]
    assert settings.writer.quarantine_retry_seconds == [1.0, 2.0]


def test_bad_json_in_a_variable_names_the_variable() -> None:
    environ = {"E2AD_PROVISIONING__CONTAINERS": "OU=a", "E2AD_PROVISIONING__TARGET_CONTAINER": "OU=a"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**environ, "E2AD_MAPPINGS": "{not json"})
    assert "E2AD_MAPPINGS: expected JSON (Expecting property name" in str(caught.value)
    assert "E2AD_PROVISIONING__CONTAINERS: expected JSON (Expecting value" in str(caught.value)
    assert "TARGET_CONTAINER" not in str(caught.value)


def test_secret_file_beats_the_environment_which_beats_yaml(tmp_path: Path) -> None:
    secret = tmp_path / "state"
    secret.write_text("from-file\n")
    config = write(tmp_path, "webhook:\n  client_state: from-yaml\n  listen_port: 1\n")
    environ = {"E2AD_WEBHOOK__CLIENT_STATE": "from-env", "E2AD_WEBHOOK__LISTEN_PORT": "2"}
    settings = load_settings(config, environ=environ)
    assert settings.webhook.client_state is not None
    assert (settings.webhook.client_state.get_secret_value(), settings.webhook.listen_port) == ("from-env", 2)
    settings = load_settings(config, environ={**environ, "E2AD_WEBHOOK__CLIENT_STATE_FILE": str(secret)})
    assert settings.webhook.client_state is not None
    assert settings.webhook.client_state.get_secret_value() == "from-file"


def test_only_the_given_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("E2AD_")]:
        monkeypatch.delenv(name)  # a developer's own settings
    monkeypatch.setenv("E2AD_KAFKA__PARTITIONS", "9")
    assert load_settings(environ={}).kafka.partitions == 4
    assert load_settings(environ={"E2AD_KAFKA__PARTITIONS": "7"}).kafka.partitions == 7
    assert load_settings().kafka.partitions == 9  # by default, the process's own
