"""`e2ad check`: load the configuration, then try every dependency for real, one line each.

Checks, in order: the configuration (its expressions are checked by the loader), a Graph token,
one page of /users/delta and /groups/delta with e2ad's $select, the webhook's public URL (HTTPS
and its host resolves; no request is sent to it), Kafka (metadata: e2ad's topics with their
partition counts), LDAP (bind, base DN), and each container the writer may write in (it exists,
a uniquely named test group can be created there, found by its anchor below the base DN as the
writer finds its groups, and deleted).

A check is skipped when its dependency is not configured (no Graph tenant, no public URL) or a
check it needs failed; a skip does not fail the run. Exit 0 only when no check failed.

`--json` prints one object: {"ok": bool, "checks": [{"name": str, "status": "pass" | "fail" |
"skip", "detail": str}, ...]}, the checks in the order above.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import click
import ldap3
from azure.core.credentials_async import AsyncTokenCredential

from e2ad.settings import load_settings
from ingest.delta import read_first_page
from ingest.graph_client import (
    GraphNotConfigured,
    build_credential,
    build_graph_client,
    close_graph_client,
    describe_graph_error,
    graph_scopes,
)
from ingest.graph_transport import GraphTransport, GraphTransportError
from runtime.config import ConfigError
from runtime.kafka import topic_specs
from runtime.outages import KafkaUnreachable, kafka_topics, tame_aiokafka
from schemas.config import Settings
from schemas.desired import UNIVERSAL_SECURITY_GROUP
from writers.connection import BindRejected, close, connect
from writers.errors import DirectoryUnavailable

if TYPE_CHECKING:
    from e2ad.cli import Context

Status = Literal["pass", "fail", "skip"]
ANCHOR_ATTRIBUTE = "msDS-ExternalDirectoryObjectId"
# Each dependency gets this long; a DC or broker that does not answer fails its line, not the run.
CHECK_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


class CheckFailed(Exception):
    """One check's failure; the message names the endpoint and the setting."""


class Skipped(Exception):
    """The check does not apply (its dependency is not configured, or a check it needs failed)."""


@click.command("check")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: ok, and each check's name, status and detail.")
@click.pass_obj
def check(context: Context, as_json: bool) -> None:
    """Try the configuration and every dependency for real; exit 1 when any check fails."""
    tame_aiokafka()  # the Kafka line says what is wrong; aiokafka's own retries would only repeat it
    try:
        settings = load_settings(context.config_path)
    except ConfigError as exc:
        checks = [Check("configuration", "fail", str(exc))]
    else:
        checks = asyncio.run(run_checks(settings, source=str(context.config_path or "defaults and E2AD_… variables")))
    ok = all(c.status != "fail" for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, ensure_ascii=False))
    else:
        for c in checks:
            click.echo(f"{c.status.upper():<4}  {c.name:<20} {c.detail}")
    raise SystemExit(0 if ok else 1)


async def run_checks(settings: Settings, *, source: str) -> list[Check]:
    mappings = len(settings.mappings)
    checks = [Check("configuration", "pass", f"{source}: valid, {mappings} mapping(s) over the defaults compile")]
    token = await _run("graph.token", lambda: _graph_token(settings))
    checks.append(token)
    checks.append(await _run("graph.read", lambda: _graph_read(settings, token)))
    checks.append(await _run("webhook.public_url", lambda: _public_url(settings)))
    checks.append(await _run("kafka", lambda: _kafka(settings)))
    bind = await _run("ldap", lambda: asyncio.to_thread(_ldap_bind, settings))
    checks.append(bind)
    for container in _containers(settings):
        checks.append(await _run(f"ldap.container {container}", lambda c=container: _container(settings, bind, c)))
    return checks


async def _run(name: str, attempt: Callable[[], Awaitable[str]]) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return Check(name, "pass", await attempt())
    except Skipped as exc:
        return Check(name, "skip", str(exc))
    except CheckFailed as exc:
        return Check(name, "fail", str(exc))
    except TimeoutError:
        return Check(name, "fail", f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s")


# -- Graph ----------------------------------------------------------------------------------------


async def _graph_token(settings: Settings) -> str:
    graph = settings.graph
    if not graph.configured:
        raise Skipped("graph.tenant_id is not set (`e2ad up` simulates a tenant)")
    scopes = graph_scopes(str(graph.base_url))
    async with _graph_credential(settings) as (credential, _):
        try:
            await credential.get_token(*scopes)
        except Exception as exc:  # azure-identity's errors: ClientAuthenticationError, ServiceRequestError, …
            raise CheckFailed(
                f"no token from {graph.authority_host} (graph.authority_host) for tenant {graph.tenant_id}"
                f" (graph.tenant_id, graph.client_id): {_first_line(describe_graph_error(exc))}"
            ) from None
    return f"token for {scopes[0]} from {graph.authority_host} (tenant {graph.tenant_id})"


async def _graph_read(settings: Settings, token: Check) -> str:
    if token.status != "pass":
        raise Skipped("needs a Graph token")
    graph = settings.graph
    read = []
    async with _graph_credential(settings) as (credential, transport):
        client = build_graph_client(credential, graph, max_retries=0, transport=transport)
        try:
            for resource in ("users", "groups"):
                try:
                    items = await read_first_page(client, resource)
                except Exception as exc:  # the SDK's APIError, or the transport's
                    raise CheckFailed(
                        f"GET {graph.base_url}/{resource}/delta (graph.base_url) with e2ad's $select failed: "
                        f"{describe_graph_error(exc)}"
                    ) from None
                read.append(f"/{resource}/delta ({len(items)} item)")
        finally:
            await close_graph_client(client)
    return f"read the first page of {' and '.join(read)} at {graph.base_url} with e2ad's $select"


@contextlib.asynccontextmanager
async def _graph_credential(settings: Settings) -> AsyncIterator[tuple[AsyncTokenCredential, GraphTransport]]:
    """The ingest stage's own credential and transport (CAs, proxy), closed on exit."""
    try:
        transport = GraphTransport.from_settings(settings.graph)
        credential = build_credential(settings.graph, transport)
    except (GraphNotConfigured, GraphTransportError) as exc:  # both name the field
        raise CheckFailed(str(exc)) from None
    try:
        yield credential, transport
    finally:
        await credential.close()


# -- webhook --------------------------------------------------------------------------------------


async def _public_url(settings: Settings) -> str:
    url = settings.webhook.public_url
    if url is None:
        raise Skipped("not set: no Graph subscriptions, e2ad runs on delta rounds alone")
    if url.scheme != "https":
        raise CheckFailed(f"{url} (webhook.public_url) is not https: Graph posts notifications to https only")
    host = url.host or ""
    try:
        addresses = await asyncio.get_running_loop().getaddrinfo(host, url.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CheckFailed(f"the host {host} of {url} (webhook.public_url) does not resolve: {exc}") from None
    resolved = sorted({str(info[4][0]) for info in addresses})
    return f"{url} is https and {host} resolves to {', '.join(resolved)} (not requested)"


# -- Kafka ----------------------------------------------------------------------------------------


async def _kafka(settings: Settings) -> str:
    try:
        present = await kafka_topics(settings.kafka)
    except (KafkaUnreachable, ValueError) as exc:  # ValueError: a kafka.ssl_* file, named by the message
        raise CheckFailed(str(exc)) from None
    missing, wrong = [], []
    for spec in topic_specs(settings.kafka):
        if spec.name not in present:
            missing.append(spec.name)
        elif present[spec.name] != spec.num_partitions:
            wrong.append(f"{spec.name} has {present[spec.name]}, expected {spec.num_partitions}")
    where = f"Kafka at {settings.kafka.bootstrap_servers} (kafka.bootstrap_servers)"
    problems = []
    if missing:
        problems.append(f"topics missing: {', '.join(missing)} (every stage creates them at start, given the right)")
    if wrong:
        problems.append(
            f"partition counts differ (kafka.partitions is {settings.kafka.partitions}): {'; '.join(wrong)}"
        )
    if problems:
        raise CheckFailed(f"{where}: {'; '.join(problems)}")
    return f"{where}: all {len(topic_specs(settings.kafka))} topics present with their partition counts"


# -- LDAP -----------------------------------------------------------------------------------------


def _ldap_bind(settings: Settings) -> str:
    ad = settings.ad
    if not ad.base_dn:
        raise CheckFailed("ad.base_dn is not set")
    with _connected(settings) as connection:
        _read_entry(connection, ad.base_dn, "ad.base_dn", ["distinguishedName"])
    who = ad.bind_dn if ad.auth == "simple" else "Kerberos"
    return f"bound to {ad.url} (ad.url) as {who}; {ad.base_dn} (ad.base_dn) readable"


def _containers(settings: Settings) -> tuple[str, ...]:
    """Where the writer may create groups; without a setting, anywhere below the base DN."""
    configured = settings.provisioning.write_containers
    return configured or ((settings.ad.base_dn,) if settings.ad.base_dn else ())


async def _container(settings: Settings, bind: Check, container: str) -> str:
    if bind.status != "pass":
        raise Skipped("needs the LDAP bind")
    return await asyncio.to_thread(_try_container, settings, container)


def _try_container(settings: Settings, container: str) -> str:
    """The container exists; a test group is created there, found by its anchor, and deleted."""
    setting = "provisioning.containers" if settings.provisioning.containers else "provisioning.target_container"
    tag = uuid.uuid4().hex[:12]
    dn = f"CN=e2ad-check-{tag},{container}"
    anchor = f"Group_e2ad-check-{tag}"
    with _connected(settings) as connection:
        _read_entry(connection, container, setting, ["objectClass"])
        _, result, _, _ = connection.add(
            dn,
            ["top", "group"],
            {
                "groupType": UNIVERSAL_SECURITY_GROUP,
                "sAMAccountName": f"e2adchk-{tag}",
                "description": "created and deleted at once by `e2ad check`",
                ANCHOR_ATTRIBUTE: anchor,
            },
        )
        if result["result"] != 0:
            raise CheckFailed(f"cannot create a group in {container} ({setting}): {_ldap_error(result)}")
        try:
            # As the writer finds its groups: by the anchor, anywhere below the base DN.
            base_dn = str(settings.ad.base_dn)
            _, result, response, _ = connection.search(
                base_dn, f"({ANCHOR_ATTRIBUTE}={anchor})", ldap3.SUBTREE, attributes=[ANCHOR_ATTRIBUTE]
            )
            found = [r["dn"] for r in response if r.get("type") == "searchResEntry"]
            if result["result"] != 0 or [d.lower() for d in found] != [dn.lower()]:
                raise CheckFailed(
                    f"the test group {dn} is not found by {ANCHOR_ATTRIBUTE} below {base_dn} (ad.base_dn): "
                    f"{_ldap_error(result) if result['result'] else f'found {found}'}"
                )
        finally:
            _, result, _, _ = connection.delete(dn)
            if result["result"] != 0:
                raise CheckFailed(f"created the test group {dn}, but cannot delete it: {_ldap_error(result)}")
    return f"exists; a test group was created, found by {ANCHOR_ATTRIBUTE} and deleted"


@contextlib.contextmanager
def _connected(settings: Settings) -> Iterator[ldap3.Connection]:
    """The writer's own connection (writers/connection.py), unbound on exit; failures become CheckFailed."""
    ad = settings.ad
    try:
        connection = connect(ad)
    except DirectoryUnavailable as exc:
        raise CheckFailed(str(exc)) from None
    except BindRejected as exc:
        who = "ad.bind_dn, ad.bind_password" if ad.auth == "simple" else "ad.keytab, ad.kerberos_principal"
        raise CheckFailed(f"{exc} ({who})") from None
    try:
        yield connection
    finally:
        close(connection)


def _read_entry(connection: ldap3.Connection, dn: str, setting: str, attributes: list[str]) -> dict[str, Any]:
    _, result, response, _ = connection.search(dn, "(objectClass=*)", ldap3.BASE, attributes=attributes)
    if result["result"] != 0:
        raise CheckFailed(f"cannot read {dn} ({setting}): {_ldap_error(result)}")
    entries: Iterator[dict[str, Any]] = (r for r in response if r.get("type") == "searchResEntry")
    entry = next(entries, None)
    if entry is None:
        raise CheckFailed(f"cannot read {dn} ({setting}): no entry returned")
    return dict(entry.get("attributes") or {})


def _ldap_error(result: dict[str, Any]) -> str:
    return f"{result.get('description')} ({result.get('result')}): {result.get('message') or 'no message'}".strip()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
