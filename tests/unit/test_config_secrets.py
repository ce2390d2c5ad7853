"""No error of the configuration loader ever prints a secret, and no input makes it crash (issue 11: 8, 9).

A secret is planted in every secret field, in the YAML file, the environment and secret files, and
every error the loader and the command line print is searched for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ad.cli import main
from e2ad.settings import load_settings
from runtime.config import SECRET_FIELDS, ConfigError

# Every SecretStr field, by its path: those with a _file form, and graph.proxy (its URL may carry a password).
SECRETS = sorted({*SECRET_FIELDS, ("graph", "proxy")})
PLANTED = "PLANTED-7f3a"


def planted(path: tuple[str, ...]) -> str:
    value = f"{PLANTED}-{'-'.join(path)}"
    return f"http://user:{value}@proxy.example:3128" if path[-1] == "proxy" else value


def nested(path: tuple[str, ...], value: object) -> dict:
    """{"ad": {"bind_password": value}} for ("ad", "bind_password")."""
    for key in reversed(path):
        value = {key: value}
    assert isinstance(value, dict)
    return value


def merge(base: dict, overlay: dict) -> dict:
    for key, value in overlay.items():
        base[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return base


def load_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "e2ad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ or {})
    return str(caught.value)


@pytest.mark.parametrize("path", SECRETS, ids=".".join)
def test_a_yaml_syntax_error_on_a_secrets_line_does_not_print_the_line(tmp_path: Path, path: tuple[str, ...]) -> None:
    *sections, field = path
    text = "".join(f"{'  ' * depth}{section}:\n" for depth, section in enumerate(sections))
    text += f"{'  ' * len(sections)}{field}: {planted(path)}: more\n"
    message = load_error(tmp_path, text)
    assert PLANTED not in message
    assert f"line {len(path)}" in message


def test_a_validation_error_beside_planted_secrets_does_not_print_them(tmp_path: Path) -> None:
    secrets: dict = {}
    for path in SECRETS:
        merge(secrets, nested(path, planted(path)))
    secrets["kafka"] |= {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_username": "u"}
    secrets["kafka"]["partitions"] = "many"  # the error to report
    message = load_error(tmp_path, yaml.safe_dump(secrets))
    assert "kafka.partitions" in message
    assert PLANTED not in message


EMAIL = {"smtp_host": "smtp.example", "from": "e2ad@example.com", "to": ["admins@example.com"], "username": "e2ad"}


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("webhook", "client_state"), PLANTED * 20),  # over Graph's 128 characters
        (("graph", "proxy"), f"ftp://{PLANTED}@proxy.example:21"),
        (("graph", "proxy"), f"http://{PLANTED}@proxy.example:99999"),
        (("ad", "bind_password"), ["a", PLANTED]),
        (("notifications", "email", "password"), ["a", PLANTED]),
    ],
)
def test_an_invalid_secret_is_named_without_its_value(tmp_path: Path, path: tuple[str, ...], bad: object) -> None:
    document = nested(path, bad)
    if path[0] == "notifications":
        document["notifications"]["email"] |= EMAIL
    message = load_error(tmp_path, yaml.safe_dump(document))
    assert ".".join(path) in message
    assert PLANTED not in message


def test_a_secret_refused_with_its_setting_is_not_printed(tmp_path: Path) -> None:
    # The password is fine, its use is not: unencrypted to a remote server.
    email = EMAIL | {"security": "none", "password": PLANTED}
    message = load_error(tmp_path, yaml.safe_dump({"notifications": {"email": email}}))
    assert "notifications.email.security none sends the password unencrypted" in message
    assert PLANTED not in message


def test_secrets_from_the_environment_and_files_are_not_printed_either(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(PLANTED)
    environ = {
        "E2AD_AD__BIND_PASSWORD": PLANTED,
        "E2AD_GRAPH__CLIENT_SECRET_FILE": str(secret_file),
        "E2AD_NOTIFICATIONS__EMAIL__PASSWORD_FILE": str(secret_file),
        "E2AD_KAFKA__PARTITIONS": "0",
    }
    message = load_error(tmp_path, "{}\n", environ)
    assert "kafka.partitions" in message
    assert PLANTED not in message
    # A misspelt secret variable is named, its value not.
    message = load_error(tmp_path, "{}\n", {"E2AD_AD__BIND_PASWORD": PLANTED})
    assert "E2AD_AD__BIND_PASWORD" in message
    assert PLANTED not in message


def test_the_command_line_prints_no_secret_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "e2ad.yaml"
    path.write_text(f"ad:\n  bind_password: {PLANTED}: more\n")
    environ = {name: None for name in os.environ if name.startswith("E2AD_")}
    result = CliRunner().invoke(main, ["--config", str(path), "quarantine", "status"], env=environ)
    assert result.exit_code != 0
    assert "not valid YAML" in result.output
    assert PLANTED not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),
        ("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 2000)), "nested too deeply"),
        ("kafka:\n  partitions: 2026-13-45\n", "a value YAML cannot read (ValueError)"),
        ("- a\n- b\n", "must hold a mapping of sections, not list"),
    ],
)
def test_yaml_that_cannot_be_a_configuration_is_a_clean_error(tmp_path: Path, text: str, message: str) -> None:
    assert message in load_error(tmp_path, text)


# -- fuzz --------------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), st.just(PLANTED)
)
SECTION_NAMES = st.sampled_from(
    ["kafka", "graph", "webhook", "ad", "provisioning", "writer", "mappings", "notifications", "x"]
)
FIELD_NAMES = st.sampled_from(
    [
        *("bootstrap_servers", "partitions", "tenant_id", "client_secret", "bind_password", "url", "proxy", "cn", "y"),
        *("email", "smtp_host", "from", "to", "password", "password_file", "client_secret_file"),
    ]
)
# Values nest lists and mappings, down to a third level (notifications.email.password_file).
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner) | st.dictionaries(FIELD_NAMES, inner), max_leaves=6)
DOCUMENTS = st.dictionaries(
    SECTION_NAMES, st.one_of(SCALARS, st.dictionaries(FIELD_NAMES, VALUES, max_size=4)), max_size=5
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(DOCUMENTS.map(yaml.safe_dump), st.text(max_size=200)))
def test_fuzz_any_file_loads_or_is_a_clean_error(tmp_path: Path, document: str) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(document, errors="surrogatepass")
    try:
        load_settings(path, environ={})
    except ConfigError as error:
        assert str(error)
