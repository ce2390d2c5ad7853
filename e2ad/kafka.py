"""Kafka plumbing shared by every stage: clients built from settings, topic creation, compacted reads.

Only the Kafka protocol is used, so the embedded noida-db broker and Apache Kafka behave alike.
Every client, faust's included, gets its TLS and SASL options from security_options().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from e2ad import fetch_pacing
from schemas import topics
from schemas.config import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings

log = logging.getLogger(__name__)
fetch_pacing.install()  # every e2ad process that talks to Kafka imports this module, faust's included


def security_options(settings: KafkaSettings) -> dict[str, object]:
    """aiokafka's security arguments (the same for producers, consumers and admin clients).

    Raises ValueError naming the field when a CA or client certificate cannot be loaded.
    """
    options: dict[str, object] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in TLS_PROTOCOLS:
        options["ssl_context"] = ssl_context(settings)
    if settings.security_protocol in SASL_PROTOCOLS:
        # KafkaSettings guarantees a PLAIN or SCRAM mechanism with a username and password here.
        assert settings.sasl_password is not None
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client context that verifies the brokers' certificates and host names (aiokafka's default)."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_optional(settings.ssl_ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"kafka.ssl_ca_file: cannot load {settings.ssl_ca_file}: {_reason(exc)}") from None
    if settings.ssl_cert_file is not None:
        try:
            context.load_cert_chain(settings.ssl_cert_file, _optional(settings.ssl_key_file))
        except (OSError, ssl.SSLError) as exc:
            fields = "kafka.ssl_cert_file" + (", kafka.ssl_key_file" if settings.ssl_key_file else "")
            raise ValueError(f"{fields}: cannot load {settings.ssl_cert_file}: {_reason(exc)}") from None
    return context


def faust_options(settings: KafkaSettings) -> dict[str, object]:
    """faust.App's broker and broker_credentials: faust hands the credentials to its aiokafka clients."""
    import faust  # here: only the processors need faust, and the other stages start faster without it

    options = security_options(settings)
    context = options.get("ssl_context")
    credentials: faust.types.CredentialsT | None = None
    if settings.security_protocol in SASL_PROTOCOLS:
        # faust picks SASL_SSL when the credentials carry an SSL context, SASL_PLAINTEXT otherwise.
        credentials = faust.SASLCredentials(
            username=settings.sasl_username,
            password=str(options["sasl_plain_password"]),
            ssl_context=context,  # type: ignore[arg-type]
            mechanism=settings.sasl_mechanism,
        )
    elif settings.security_protocol == "SSL":
        credentials = faust.SSLCredentials(context)  # type: ignore[arg-type]
    return {
        "broker": [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")],
        "broker_credentials": credentials,
    }


def _optional(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _reason(exc: OSError | ssl.SSLError) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def admin(settings: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=settings.client_id,
        **security_options(settings),  # type: ignore[arg-type]
    )


def producer(settings: KafkaSettings, **overrides: object) -> AIOKafkaProducer:
    # acks=all: a record the webhook acknowledged to Graph must survive a broker restart.
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "acks": "all",
        "linger_ms": 5,
        **security_options(settings),
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def consumer(settings: KafkaSettings, *topic_names: str, group_id: str | None, **overrides: object) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **security_options(settings),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topic_names, **options)  # type: ignore[arg-type]


def topic_specs(settings: KafkaSettings) -> list[NewTopic]:
    specs = []
    for name in topics.ALL_TOPICS:
        partitions = settings.partitions if name in topics.KEYED_BY_OBJECT else 1
        configs = {"cleanup.policy": "compact"} if name in topics.COMPACTED else {}
        specs.append(NewTopic(name, partitions, settings.replication_factor, topic_configs=configs))
    return specs


async def ensure_topics(settings: KafkaSettings, *, timeout: float = 30.0) -> None:
    """Create e2ad's topics that do not exist yet (partition counts of existing ones are kept)."""
    client = admin(settings)
    await _start_with_retry(client.start, settings, timeout)
    try:
        existing = set(await client.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            # another process may create them between list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await client.create_topics(missing)
            log.info("created topics %s", ", ".join(t.name for t in missing))
    finally:
        await client.close()


async def wait_until_ready(settings: KafkaSettings, *, timeout: float = 30.0) -> None:
    """Wait until the broker answers the Kafka API (a listening port alone is not enough)."""
    client = admin(settings)
    await _start_with_retry(client.start, settings, timeout)
    try:
        await client.list_topics()
    finally:
        await client.close()


async def _start_with_retry(start, settings: KafkaSettings, timeout: float) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await start()
            return
        except KafkaConnectionError:
            # A refused certificate will not be accepted on the next attempt either.
            if problem := await tls_problem(settings):
                raise KafkaConnectionError(problem) from None
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def tls_problem(settings: KafkaSettings) -> str | None:
    """Why TLS with the brokers fails, if it does; aiokafka only logs it and raises 'Unable to bootstrap'."""
    if settings.security_protocol not in TLS_PROTOCOLS:
        return None
    context = ssl_context(settings)
    for server in (s.strip() for s in settings.bootstrap_servers.split(",")):
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
        except (OSError, ValueError, TimeoutError):
            continue  # unreachable or unparsable: not a TLS problem, aiokafka's error stands
        try:
            await writer.start_tls(context, server_hostname=host, ssl_handshake_timeout=5)
        except ssl.SSLCertVerificationError as exc:
            trusted = (
                f"kafka.ssl_ca_file {settings.ssl_ca_file}" if settings.ssl_ca_file else "the system's trust store"
            )
            return f"the Kafka broker {server} presents a certificate {trusted} does not verify: {exc.verify_message}"
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            # A plaintext Kafka listener reads the ClientHello as the size of a frame: far too large,
            # it closes the connection (noida-db, Apache Kafka), or it waits for the rest.
            reasons = {TimeoutError: "no answer", ConnectionResetError: "the connection was closed"}
            reason = reasons.get(type(exc)) or str(exc)
            protocol = settings.security_protocol
            return (
                f"the Kafka broker {server} does not complete a TLS handshake ({reason}): is it a {protocol} listener?"
            )
        finally:
            writer.close()
    return None


async def read_latest(settings: KafkaSettings, topic: str) -> dict[bytes, bytes]:
    """The latest value of every key of a (compacted) topic, read from the start to the end."""
    reader = consumer(settings, group_id=None)
    try:
        await reader.start()  # inside: a failed start is stopped too, leaving no unclosed consumer
        partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not partitions:
            return {}
        reader.assign(partitions)
        await reader.seek_to_beginning(*partitions)
        end = await reader.end_offsets(partitions)
        latest: dict[bytes, bytes] = {}
        while any([await _behind(reader, tp, end[tp]) for tp in partitions]):
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        latest.pop(record.key, None)
                    else:
                        latest[record.key] = record.value
        return latest
    finally:
        await reader.stop()


async def _behind(reader: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
    return await reader.position(tp) < end
