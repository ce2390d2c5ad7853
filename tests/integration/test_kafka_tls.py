"""Kafka over TLS and SASL for real: the embedded broker behind a TLS terminator with a CA the test makes.

noida-db speaks SASL PLAIN (and accepts any credentials: these tests show the SASL exchange
works, not that a wrong password is refused) and offers no SCRAM mechanism; TLS is the
terminator's (tests/integration/kafka_tls.py).
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from harness.standin.tls import make_test_ca
from runtime import kafka
from schemas import topics
from schemas.changes import GroupChanged
from schemas.config import KafkaSettings
from schemas.desired import DesiredGroup
from tests.integration.kafka_tls import KafkaTlsTerminator, make_client_certificate
from tests.integration.stages import TopicWatcher, publish, running_stage

PLAIN = {"sasl_mechanism": "PLAIN", "sasl_username": "e2ad", "sasl_password": "s3cret"}


@pytest.fixture
def terminator(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[KafkaTlsTerminator]:
    _, server_context = make_test_ca(tmp_path)
    with KafkaTlsTerminator(_port(kafka_settings), server_context) as tls:
        yield tls


def _port(settings: KafkaSettings) -> int:
    return int(settings.bootstrap_servers.rsplit(":", 1)[1])


def _secured(plain: KafkaSettings, bootstrap: str, **security: object) -> KafkaSettings:
    """The test broker's settings, reached at bootstrap with these security settings (validated together)."""
    return KafkaSettings.model_validate({**plain.model_dump(), "bootstrap_servers": bootstrap, **security})


async def _round_trip(settings: KafkaSettings) -> list[bytes]:
    """Topics, a produce, and a consumer group's read and commit: every kind of client and coordinator."""
    await kafka.wait_until_ready(settings, timeout=10)
    await kafka.ensure_topics(settings, timeout=10)
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topics.AD_RESULTS, f"record-{n}".encode(), key=b"k")
    finally:
        await producer.stop()
    reader = kafka.consumer(settings, topics.AD_RESULTS, group_id="tls-test")
    await reader.start()
    try:
        values: list[bytes] = []
        while len(values) < 3:
            batches = await reader.getmany(timeout_ms=10_000)
            assert batches, f"no records through {settings.bootstrap_servers} within 10 s"
            values += [record.value for records in batches.values() for record in records]
        await reader.commit()  # through the group coordinator FindCoordinator named
    finally:
        await reader.stop()
    return values


@pytest.mark.parametrize("security", [{}, PLAIN], ids=["SSL", "SASL_SSL-PLAIN"])
async def test_every_client_works_through_tls_with_the_ca_it_is_given(
    kafka_settings: KafkaSettings, terminator: KafkaTlsTerminator, tmp_path: Path, security: dict[str, str]
) -> None:
    protocol = "SASL_SSL" if security else "SSL"
    settings = _secured(
        kafka_settings,
        terminator.bootstrap_servers,
        security_protocol=protocol,
        ssl_ca_file=tmp_path / "ca.pem",
        **security,
    )
    assert await _round_trip(settings) == [b"record-0", b"record-1", b"record-2"]
    # every connection went through TLS: none found the broker's plaintext port in a metadata response
    assert terminator.connections >= 3


async def test_mutual_tls_presents_the_client_certificate(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    ca_file, server_context = make_test_ca(tmp_path)
    client_ca, cert, key = make_client_certificate(tmp_path / "clients", "e2ad-writer-1")
    server_context.load_verify_locations(client_ca)
    server_context.verify_mode = ssl.CERT_REQUIRED
    with KafkaTlsTerminator(_port(kafka_settings), server_context) as tls:
        tls_only = _secured(kafka_settings, tls.bootstrap_servers, security_protocol="SSL", ssl_ca_file=ca_file)
        with pytest.raises(KafkaConnectionError):  # no client certificate: the terminator refuses the session
            await kafka.ensure_topics(tls_only, timeout=2)
        assert tls.connections == 0
        mutual = _secured(
            kafka_settings,
            tls.bootstrap_servers,
            security_protocol="SSL",
            ssl_ca_file=ca_file,
            ssl_cert_file=cert,
            ssl_key_file=key,
        )
        assert await _round_trip(mutual) == [b"record-0", b"record-1", b"record-2"]
        assert tls.client_names == {"e2ad-writer-1"}


async def test_sasl_plain_without_tls(kafka_settings: KafkaSettings) -> None:
    settings = _secured(kafka_settings, kafka_settings.bootstrap_servers, security_protocol="SASL_PLAINTEXT", **PLAIN)
    assert await _round_trip(settings) == [b"record-0", b"record-1", b"record-2"]


async def test_a_certificate_of_another_ca_is_refused_at_once_with_the_reason(
    kafka_settings: KafkaSettings, terminator: KafkaTlsTerminator, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    wrong_ca, _ = make_test_ca(tmp_path / "other")
    settings = _secured(kafka_settings, terminator.bootstrap_servers, security_protocol="SSL", ssl_ca_file=wrong_ca)
    started = dt.datetime.now(dt.UTC)
    with pytest.raises(KafkaConnectionError) as caught:
        await kafka.ensure_topics(settings, timeout=30)
    assert dt.datetime.now(dt.UTC) - started < dt.timedelta(seconds=10)  # not retried for 30 s
    assert str(caught.value).endswith(
        f"the Kafka broker {terminator.bootstrap_servers} presents a certificate kafka.ssl_ca_file {wrong_ca}"
        " does not verify: certificate signature failure"
    )
    assert terminator.connections == 0  # no TLS session got as far as the broker


async def test_tls_against_a_plaintext_listener_says_so(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    ca_file, _ = make_test_ca(tmp_path)
    settings = _secured(kafka_settings, kafka_settings.bootstrap_servers, security_protocol="SSL", ssl_ca_file=ca_file)
    with pytest.raises(
        KafkaConnectionError,
        match=r"does not complete a TLS handshake \(the connection was closed\): is it a SSL listener\?",
    ):
        await kafka.ensure_topics(settings, timeout=30)


async def test_the_processors_run_through_tls(
    kafka_settings: KafkaSettings, terminator: KafkaTlsTerminator, tmp_path: Path
) -> None:
    """faust's own producer, consumer and table changelogs, with the settings an operator would give."""
    group_id = "5a0c7a52-6c3e-4d1d-9d5b-0123456789ab"
    group = GroupChanged(
        id=group_id,
        observed_at=dt.datetime.now(dt.UTC),
        attributes={"securityEnabled": True, "mailEnabled": False, "displayName": "Over TLS"},
    )
    env = {
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": terminator.bootstrap_servers,
        "E2AD_KAFKA__SECURITY_PROTOCOL": "SSL",
        "E2AD_KAFKA__SSL_CA_FILE": str(tmp_path / "ca.pem"),
        "E2AD_PROVISIONING__TARGET_CONTAINER": "OU=Groups,DC=e2ad,DC=test",
        "E2AD_STATE_DIR": str(tmp_path / "state"),
    }
    async with TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json) as desired:
        with running_stage("process", env, tmp_path / "process.log"):
            await publish(kafka_settings, topics.GRAPH_CHANGES, [(group_id, group)])
            state = await desired.wait_for(lambda d: d.group_id == group_id, timeout=60)
    assert state.attributes["displayName"] == "Over TLS"
    assert terminator.connections >= 2  # faust's consumer and producer at least
