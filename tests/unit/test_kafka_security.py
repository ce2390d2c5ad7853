"""Kafka security settings: validated together, and mapped to aiokafka's and faust's arguments."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from e2ad.settings import load_settings
from harness.pipeline import settings_environment
from harness.standin.tls import make_test_ca
from runtime import kafka
from runtime.config import ConfigError
from schemas.config import KafkaSettings, Settings


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A CA file, and a PEM holding a certificate it signed with its key (usable as a client certificate)."""
    directory = tmp_path_factory.mktemp("ca")
    ca_file, _ = make_test_ca(directory)
    return ca_file, directory / "server.pem"


SASL = {"sasl_username": "svc", "sasl_password": "s3cret"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
async def test_every_sasl_mechanism_maps_to_aiokafka(protocol: str, mechanism: str) -> None:
    settings = KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism, **SASL)
    options, context = _split(kafka.security_options(settings))
    assert options == {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cret",
    }
    assert (context is not None) == (protocol == "SASL_SSL")
    # aiokafka checks these arguments when a client is made (in a running loop): it takes them as they are
    AIOKafkaProducer(**{**options, "ssl_context": context})  # type: ignore[arg-type]
    # faust hands its credentials to aiokafka: the same arguments
    faust_auth, faust_context = _split(
        credentials_to_aiokafka_auth(kafka.faust_options(settings)["broker_credentials"])
    )
    assert faust_auth == options
    assert type(faust_context) is type(context)


def _split(options: dict[str, object]) -> tuple[dict[str, object], object]:
    """The arguments without the SSL context (a new one each time), and the context."""
    rest = dict(options)
    return rest, rest.pop("ssl_context", None)


def test_plaintext_is_the_default_for_every_client() -> None:
    settings = KafkaSettings()
    assert kafka.security_options(settings) == {"security_protocol": "PLAINTEXT"}
    faust_options = kafka.faust_options(settings)
    assert faust_options["broker_credentials"] is None
    assert credentials_to_aiokafka_auth(None) == {"security_protocol": "PLAINTEXT"}


def test_brokers_become_faust_urls() -> None:
    options = kafka.faust_options(KafkaSettings(bootstrap_servers="k1:9092, k2:9093"))
    assert options["broker"] == ["kafka://k1:9092", "kafka://k2:9093"]


def test_ssl_verifies_the_brokers_with_the_configured_ca(ca: tuple[Path, Path]) -> None:
    ca_file, client_pem = ca
    settings = KafkaSettings(security_protocol="SSL", ssl_ca_file=ca_file, ssl_cert_file=client_pem)
    options = kafka.security_options(settings)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # only the configured CA, not the system's trust store
    assert [dict(item[0] for item in c["subject"])["commonName"] for c in context.get_ca_certs()] == [
        "e2ad Graph stand-in test CA"
    ]
    faust_auth, faust_context = _split(
        credentials_to_aiokafka_auth(kafka.faust_options(settings)["broker_credentials"])
    )
    assert faust_auth == {"security_protocol": "SSL"}
    assert isinstance(faust_context, ssl.SSLContext) and faust_context.get_ca_certs() == context.get_ca_certs()


def test_every_client_gets_the_security_options(ca: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, dict[str, object]] = {}
    for name in ("AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"):
        monkeypatch.setattr(kafka, name, lambda *topics, _name=name, **options: made.setdefault(_name, options))
    settings = KafkaSettings(security_protocol="SSL", ssl_ca_file=ca[0])
    kafka.producer(settings)
    kafka.consumer(settings, group_id=None, auto_offset_reset="latest")
    kafka.admin(settings)
    assert made.keys() == {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    for options in made.values():
        assert options["security_protocol"] == "SSL"
        assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert made["AIOKafkaConsumer"]["auto_offset_reset"] == "latest"  # overrides keep the security options


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sasl_mechanism": "PLAIN"}, "kafka.sasl_mechanism needs kafka.security_protocol SASL_PLAINTEXT or SASL_SSL"),
        ({"sasl_username": "svc"}, "kafka.sasl_username needs kafka.security_protocol SASL_PLAINTEXT or SASL_SSL"),
        ({"security_protocol": "SSL", "sasl_password": "x"}, "kafka.sasl_password needs kafka.security_protocol SASL"),
        (
            {"ssl_ca_file": "/ca.pem"},
            "kafka.ssl_ca_file needs kafka.security_protocol SSL or SASL_SSL (it is PLAINTEXT)",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "ssl_cert_file": "/c.pem", **SASL},
            "kafka.ssl_cert_file needs kafka.security_protocol SSL or SASL_SSL (it is SASL_PLAINTEXT)",
        ),
        ({"security_protocol": "SSL", "ssl_key_file": "/k.pem"}, "kafka.ssl_key_file needs kafka.ssl_cert_file"),
        ({"security_protocol": "SASL_SSL"}, "kafka.sasl_mechanism is required with kafka.security_protocol SASL_SSL"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc"},
            "kafka.sasl_password is required with kafka.sasl_mechanism SCRAM-SHA-512",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_password": "x"},
            "kafka.sasl_username is required with kafka.sasl_mechanism PLAIN",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            "kafka.sasl_mechanism OAUTHBEARER is not supported yet",
        ),
        ({"security_protocol": "TLS"}, "kafka.security_protocol: Input should be 'PLAINTEXT', 'SSL'"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"},
            "kafka.sasl_mechanism: Input should be 'PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512' or 'OAUTHBEARER'",
        ),
    ],
)
def test_inconsistent_security_names_the_field(fields: dict[str, str], message: str) -> None:
    environ = {f"E2AD_KAFKA__{name.upper()}": value for name, value in fields.items()}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=environ)
    assert message in str(caught.value)


def test_sasl_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "kafka"
    secret.write_text("from-file\n")
    config = tmp_path / "e2ad.yaml"
    config.write_text(
        "kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-256\n  sasl_username: svc\n"
        f"  sasl_password_file: {secret}\n"
    )
    settings = load_settings(config, environ={})
    assert kafka.security_options(settings.kafka)["sasl_plain_password"] == "from-file"
    assert "from-file" not in repr(settings)


def test_unusable_ca_or_certificate_is_refused_at_load(tmp_path: Path, ca: tuple[Path, Path]) -> None:
    ca_file, client_pem = ca
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    ssl_env = {"E2AD_KAFKA__SECURITY_PROTOCOL": "SSL"}
    cases = [
        ({"E2AD_KAFKA__SSL_CA_FILE": str(tmp_path / "missing.pem")}, r"kafka\.ssl_ca_file: cannot load .*missing\.pem"),
        ({"E2AD_KAFKA__SSL_CA_FILE": str(not_pem)}, r"kafka\.ssl_ca_file: cannot load .*not\.pem"),
        ({"E2AD_KAFKA__SSL_CERT_FILE": str(ca_file)}, r"kafka\.ssl_cert_file: cannot load .*ca\.pem"),  # no key
        (
            {"E2AD_KAFKA__SSL_CERT_FILE": str(client_pem), "E2AD_KAFKA__SSL_KEY_FILE": str(not_pem)},
            r"kafka\.ssl_cert_file, kafka\.ssl_key_file: cannot load .*server\.pem",
        ),
    ]
    for environ, pattern in cases:
        with pytest.raises(ConfigError, match=pattern):
            load_settings(environ={**ssl_env, **environ})


def test_security_settings_reach_the_stages_e2ad_up_starts(ca: tuple[Path, Path]) -> None:
    ca_file, client_pem = ca
    kafka_settings = KafkaSettings(
        security_protocol="SASL_SSL",
        ssl_ca_file=ca_file,
        ssl_cert_file=client_pem,
        sasl_mechanism="SCRAM-SHA-512",
        **SASL,
    )
    settings = Settings(kafka=kafka_settings)
    assert load_settings(environ=settings_environment(settings)) == settings
