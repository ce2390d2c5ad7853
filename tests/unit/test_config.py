"""Configuration loading: YAML, E2AD_… variables, secret files, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ad.config import ConfigError, load_settings
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
    assert "mappings.adminDescription: fixed" in message
    assert "mappings.description:" in message
    assert "mappings.info:" in message and "Nope" in message
