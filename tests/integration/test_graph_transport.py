"""Graph and its authority over HTTPS with a private CA, directly and through a real CONNECT proxy.

The token request (azure-identity on aiohttp) and the Graph reads (msgraph-sdk on httpx) share one
transport configuration: graph.ca_bundle, graph.proxy, HTTPS_PROXY / NO_PROXY.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from azure.core.exceptions import ServiceRequestError

from harness.standin import GraphStandin, running_standin
from harness.standin.tls import make_test_ca
from ingest.delta import read_round
from ingest.graph_client import build_credential, build_graph_client, close_graph_client, describe_graph_error
from ingest.graph_transport import GraphTransport
from ingest.graph_worker import GraphWorker
from runtime import kafka
from schemas import topics
from schemas.config import GraphSettings, KafkaSettings, Settings
from tests.fakes import FakeAsyncCredential
from tests.integration.connect_proxy import ConnectProxy
from tests.integration.stages import command_environment
from tests.polling import until

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's own proxy variables must not decide where these tests' requests go."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    async with running_standin(graph_tls=True) as standin:
        standin.tenant.add_group("Sales")
        standin.tenant.add_group("Marketing")
        yield standin


@pytest.fixture
def other_ca() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="e2ad-other-ca-") as tmp:
        yield make_test_ca(Path(tmp))[0]


async def delta_round_with_real_credential(settings: GraphSettings) -> list[str]:
    """A groups delta round with a real ClientSecretCredential: one token request, then Graph reads."""
    transport = GraphTransport.from_settings(settings)
    async with build_credential(settings, transport) as credential:
        client = build_graph_client(credential, settings, transport=transport)
        try:
            delta_round = await read_round(client, "groups", None)
        finally:
            await close_graph_client(client)
    return sorted(item["displayName"] for item in delta_round.items)


async def test_graph_over_https_trusts_graph_ca_bundle_for_token_and_reads(standin: GraphStandin) -> None:
    assert standin.graph_base_url.startswith("https://")

    assert await delta_round_with_real_credential(standin.graph_settings()) == ["Marketing", "Sales"]
    assert len(standin.token_requests) == 1
    assert standin.requests_to("/groups/delta")


async def test_token_and_delta_round_go_through_graph_proxy_with_credentials(standin: GraphStandin) -> None:
    async with ConnectProxy(credentials=("e2ad", "proxy-secret")) as proxy:
        names = await delta_round_with_real_credential(standin.graph_settings(proxy=proxy.url))

    assert names == ["Marketing", "Sales"]
    assert proxy.refused == []  # both clients sent the URL's credentials with their first CONNECT
    assert proxy.tunnels_to(standin.authority_host) == 1  # the token request
    assert proxy.tunnels_to(standin.graph_base_url) == 1  # the delta pages, on one kept-alive connection
    assert len(standin.token_requests) == 1


async def test_https_proxy_variable_is_followed_and_no_proxy_exempts(
    standin: GraphStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")  # no scheme: read as http://, like curl
        assert await delta_round_with_real_credential(standin.graph_settings()) == ["Marketing", "Sales"]
        assert proxy.tunnels_to(standin.authority_host) == 1
        assert proxy.tunnels_to(standin.graph_base_url) == 1

        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.0/8")
        assert await delta_round_with_real_credential(standin.graph_settings()) == ["Marketing", "Sales"]
        assert len(proxy.tunnels) == 2  # nothing more went through the proxy
    assert len(standin.token_requests) == 2


@pytest.mark.integration
async def test_graph_worker_builds_its_credential_and_client_on_one_proxied_transport(
    standin: GraphStandin, kafka_settings: KafkaSettings
) -> None:
    async with ConnectProxy(credentials=("e2ad", "proxy-secret")) as proxy:
        settings = Settings(kafka=kafka_settings, graph=standin.graph_settings(proxy=proxy.url))
        worker = GraphWorker(settings)  # no injected credential: the ClientSecretCredential of production
        worker.start_thread()
        try:
            await until(lambda: worker.completed_rounds or worker.failed_rounds, "the first round", timeout=30)
        finally:
            await asyncio.to_thread(worker.stop)

    assert (worker.completed_rounds, worker.failed_rounds) == (1, 0)
    changes = await kafka.read_latest(kafka_settings, topics.GRAPH_CHANGES)
    assert len(changes) == 2  # Sales and Marketing
    assert proxy.refused == []
    assert proxy.tunnels_to(standin.authority_host) == 1
    assert proxy.tunnels_to(standin.graph_base_url) == 1  # users' and groups' delta pages, one connection
    assert len(standin.token_requests) == 1


async def test_graph_proxy_wins_over_no_proxy(standin: GraphStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    async with ConnectProxy() as proxy:
        await delta_round_with_real_credential(standin.graph_settings(proxy=proxy.url))
    assert proxy.tunnels_to(standin.authority_host) == 1
    assert proxy.tunnels_to(standin.graph_base_url) == 1


async def test_certificate_of_another_ca_is_refused_naming_graph_ca_bundle(
    standin: GraphStandin, other_ca: Path
) -> None:
    settings = standin.graph_settings(ca_bundle=other_ca)

    async with build_credential(settings) as credential:
        with pytest.raises(ServiceRequestError) as token_refused:
            await credential.get_token("https://graph.microsoft.com/.default")
    client = build_graph_client(FakeAsyncCredential(standin.issue_token()), settings)
    try:
        with pytest.raises(httpx.ConnectError) as read_refused:
            await read_round(client, "groups", None)
    finally:
        await close_graph_client(client)

    assert standin.token_requests == []
    assert standin.requests == []
    for refused in (token_refused.value, read_refused.value):
        message = describe_graph_error(refused)
        assert "certificate is not trusted" in message
        assert "graph.ca_bundle must hold the CA that issued it" in message


async def test_without_graph_ca_bundle_the_private_ca_is_not_trusted(standin: GraphStandin) -> None:
    client = build_graph_client(FakeAsyncCredential(standin.issue_token()), standin.graph_settings(ca_bundle=None))
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await read_round(client, "groups", None)
    finally:
        await close_graph_client(client)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HTTPS_PROXY": "socks5://proxy:1080"}, "Error: HTTPS_PROXY: must be an http:// proxy URL, not socks5://"),
        ({"E2AD_GRAPH__CA_BUNDLE": "/nonexistent/ca.pem"}, "Error: graph.ca_bundle: cannot load /nonexistent/ca.pem"),
    ],
)
def test_ingest_refuses_to_start_naming_the_bad_transport_setting(environ: dict[str, str], message: str) -> None:
    settings = {
        "E2AD_GRAPH__TENANT_ID": "tenant",
        "E2AD_GRAPH__CLIENT_ID": "client",
        "E2AD_GRAPH__CLIENT_SECRET": "secret",
        "E2AD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",  # never reached: the check comes first
    }
    inherited = {k: v for k, v in command_environment(settings).items() if k not in PROXY_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-m", "e2ad", "ingest"],
        env={**inherited, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
