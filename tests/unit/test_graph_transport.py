"""The Graph transport's decisions: which proxy each endpoint gets, which CAs are trusted, bad values named."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.standin.tls import make_test_ca
from ingest.graph_client import describe_graph_error
from ingest.graph_transport import GraphTransport, GraphTransportError, proxy_for
from schemas.config import GraphSettings, Settings

GRAPH = "https://graph.microsoft.com/v1.0"
PROXY = "http://proxy.corp.example:3128"


@pytest.mark.parametrize(
    ("url", "configured", "environ", "expected"),
    [
        (GRAPH, None, {}, None),
        (GRAPH, None, {"HTTPS_PROXY": PROXY}, PROXY),
        (GRAPH, None, {"https_proxy": PROXY, "HTTPS_PROXY": "http://other:1"}, PROXY),  # lower case wins
        (GRAPH, None, {"https_proxy": "", "HTTPS_PROXY": PROXY}, None),  # as in urllib: empty lower case unsets
        (GRAPH, None, {"HTTPS_PROXY": "proxy.corp.example:3128"}, PROXY),  # host:port means http://
        (GRAPH, None, {"HTTP_PROXY": PROXY}, None),  # Graph and the authority are https only
        (GRAPH, None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "graph.microsoft.com"}, None),
        (GRAPH, None, {"HTTPS_PROXY": PROXY, "NO_PROXY": ".microsoft.com"}, None),  # a domain suffix
        (GRAPH, None, {"HTTPS_PROXY": PROXY, "no_proxy": "microsoft.com, localhost"}, None),
        (GRAPH, None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, None),
        (GRAPH, None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "microsoft.us,login.microsoftonline.com"}, PROXY),
        (GRAPH, None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "notmicrosoft.com"}, PROXY),
        ("https://10.1.2.3:8443/v1.0", None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://10.1.2.3:8443/v1.0", None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "10.1.2.3:8443"}, None),
        ("https://10.1.2.3:8443/v1.0", None, {"HTTPS_PROXY": PROXY, "NO_PROXY": "192.168.0.0/16"}, PROXY),
        (GRAPH, "http://explicit:8080/", {"HTTPS_PROXY": PROXY, "NO_PROXY": "*"}, "http://explicit:8080/"),
    ],
)
def test_proxy_for_each_endpoint(url: str, configured: str | None, environ: dict[str, str], expected: str) -> None:
    assert proxy_for(url, configured, environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"HTTPS_PROXY": "socks5://proxy:1080"}, "HTTPS_PROXY: must be an http:// proxy URL, not socks5://"),
        ({"https_proxy": "https://proxy:3128"}, "https_proxy: must be an http:// proxy URL, not https://"),
        ({"HTTPS_PROXY": "http://proxy:3128/pac"}, "HTTPS_PROXY: must be http://[user:password@]host:port"),
    ],
)
def test_unusable_proxy_variable_is_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(GraphTransportError, match=message.replace("[", r"\[")):
        proxy_for(GRAPH, None, environ)


def test_transport_resolves_graph_and_authority_separately() -> None:
    settings = GraphSettings(
        base_url="https://graph.microsoft.us/v1.0", authority_host="https://login.microsoftonline.us"
    )
    transport = GraphTransport.from_settings(settings, {"HTTPS_PROXY": PROXY, "NO_PROXY": "login.microsoftonline.us"})
    assert transport.graph_proxy == PROXY
    assert transport.authority_proxy is None


def test_graph_proxy_setting_applies_to_both_endpoints_and_stays_out_of_logs() -> None:
    settings = Settings(graph={"proxy": "http://e2ad:p%40ss@proxy.corp.example:3128"})
    transport = GraphTransport.from_settings(settings.graph, {})
    assert transport.graph_proxy == transport.authority_proxy == "http://e2ad:p%40ss@proxy.corp.example:3128"
    assert "p%40ss" not in repr(settings)  # the URL carries the proxy's credentials


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ("https://proxy.corp.example:3128", "Value error, must be an http:// proxy URL, not https://"),
        ("http://proxy.corp.example:3128/wpad.dat", "Value error, must be http://[user:password@]host:port"),
        ("socks5://proxy.corp.example:1080", "Value error, must be an http:// proxy URL, not socks5://"),
        ("proxy.corp.example:3128", "Value error, must be a URL: http://"),  # unlike HTTPS_PROXY, a URL
        ("http://proxy.corp.example:31280000", "Value error, bad port"),
        ("http://:3128", "Value error, names no proxy host"),
    ],
)
def test_graph_proxy_setting_is_validated_naming_the_field(proxy: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(graph={"proxy": proxy})
    (error,) = caught.value.errors()
    assert error["loc"] == ("graph", "proxy")
    assert message in error["msg"]


def test_ca_bundle_is_trusted_besides_the_system_cas(tmp_path: Path) -> None:
    ca_file, _ = make_test_ca(tmp_path)
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]

    context = GraphTransport(ca_bundle=ca_file, graph_proxy=None, authority_proxy=None).ssl_context()

    assert context.cert_store_stats()["x509_ca"] == system + 1
    subjects = [dict(pair[0] for pair in cert["subject"]) for cert in context.get_ca_certs()]
    assert {"commonName": "e2ad Graph stand-in test CA"} in subjects
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_each_client_gets_its_own_context(tmp_path: Path) -> None:
    # httpx sets ALPN h2 on its context; aiohttp speaks HTTP/1.1 and must not offer h2.
    transport = GraphTransport(ca_bundle=None, graph_proxy=None, authority_proxy=None)
    assert transport.ssl_context() is not transport.ssl_context()


@pytest.mark.parametrize("content", [None, "not a certificate\n"])
def test_unreadable_ca_bundle_is_named(tmp_path: Path, content: str | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(GraphTransportError, match=f"graph.ca_bundle: cannot load {bundle}"):
        GraphTransport.from_settings(GraphSettings(ca_bundle=bundle), {})


def test_certificate_error_deep_in_the_chain_names_graph_ca_bundle() -> None:
    verify = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise verify
        except ssl.SSLError as inner:
            raise ConnectionError("Cannot connect to host graph.microsoft.com:443") from inner
    except ConnectionError as outer:
        message = describe_graph_error(outer)
    assert message == (
        "ConnectionError: the server's certificate is not trusted (unable to get local issuer certificate); "
        "graph.ca_bundle must hold the CA that issued it (a private endpoint's or a TLS-inspecting proxy's)"
    )
