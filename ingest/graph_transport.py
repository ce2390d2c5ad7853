"""How e2ad reaches Graph and its authority over HTTP: one trust and one proxy decision for both clients.

azure-identity fetches tokens through azure-core's aiohttp transport and msgraph-sdk reads Graph through
httpx. Left alone, each picks its own CAs (aiohttp the system's, httpx certifi's) and reads the proxy
variables its own way (aiohttp ignores ALL_PROXY and https:// proxies, httpx honours CIDRs in NO_PROXY).
Here graph.ca_bundle, graph.proxy and HTTPS_PROXY / NO_PROXY are resolved once and handed to both.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import proxy_bypass_environment

import aiohttp
import httpx
from azure.core.pipeline.transport import AioHttpTransport
from kiota_abstractions.request_option import RequestOption
from kiota_http.kiota_client_factory import DEFAULT_CONNECTION_TIMEOUT, DEFAULT_REQUEST_TIMEOUT
from msgraph_core import GraphClientFactory

from schemas.config import GraphSettings, check_proxy_url


class GraphTransportError(ValueError):
    """graph.ca_bundle or a proxy variable cannot be used; the message names which."""


@dataclass(frozen=True)
class GraphTransport:
    """The CAs to trust and the proxy (None: direct) for Graph's host and for the authority's host."""

    ca_bundle: Path | None
    graph_proxy: str | None
    authority_proxy: str | None

    @classmethod
    def from_settings(cls, settings: GraphSettings, environ: Mapping[str, str] | None = None) -> GraphTransport:
        environ = os.environ if environ is None else environ
        configured = settings.proxy.get_secret_value() if settings.proxy is not None else None
        transport = cls(
            ca_bundle=settings.ca_bundle,
            graph_proxy=proxy_for(str(settings.base_url), configured, environ),
            authority_proxy=proxy_for(str(settings.authority_host), configured, environ),
        )
        transport.ssl_context()  # a missing or unreadable bundle fails here, not at the first request
        return transport

    def ssl_context(self) -> ssl.SSLContext:
        """A fresh client context: the system's CAs (SSL_CERT_FILE / SSL_CERT_DIR apply) and graph.ca_bundle.

        Each client gets its own: httpx sets its ALPN protocols (h2) on the context it is given, and
        aiohttp, which speaks HTTP/1.1 only, must not offer h2 to the authority.
        """
        context = ssl.create_default_context()
        if self.ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise GraphTransportError(f"graph.ca_bundle: cannot load {self.ca_bundle}: {exc}") from None
        return context

    def sdk_client(self, options: dict[str, RequestOption]) -> httpx.AsyncClient:
        """The httpx client msgraph-sdk sends through, with Graph's default middleware (retry, redirect, …).

        Timeouts and HTTP/2 are kiota's defaults; the environment is not read again (trust_env=False).
        """
        client = httpx.AsyncClient(
            verify=self.ssl_context(),
            proxy=self.graph_proxy,
            trust_env=False,
            http2=True,
            timeout=httpx.Timeout(DEFAULT_REQUEST_TIMEOUT, connect=DEFAULT_CONNECTION_TIMEOUT),
        )
        return GraphClientFactory.create_with_default_middleware(client=client, options=options)

    def credential_options(self) -> dict[str, Any]:
        """azure-core keywords for an aio azure-identity credential: its aiohttp transport and proxy.

        The session is the one AioHttpTransport would make itself (no cookies, no decompression: azure-core
        decodes), with this trust and without reading the environment; closing the credential closes it.
        """
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context()),
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        options: dict[str, Any] = {"transport": AioHttpTransport(session=session, session_owner=True)}
        if self.authority_proxy is not None:
            options["proxies"] = {"https": self.authority_proxy}  # azure-core's ProxyPolicy, by URL scheme
        return options


def proxy_for(url: str, configured: str | None, environ: Mapping[str, str]) -> str | None:
    """The proxy for requests to url: graph.proxy when set, else HTTPS_PROXY unless NO_PROXY exempts url's host.

    Only HTTPS_PROXY is read (Graph and the authority are https); like curl and urllib, the lower-case
    spelling wins over the upper-case one.
    """
    if configured is not None:
        return configured
    variable, proxy = _variable(environ, "https_proxy")
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"  # curl's and httpx's reading of host:port
    try:
        check_proxy_url(proxy)
    except ValueError as exc:
        raise GraphTransportError(f"{variable}: {exc}") from None
    _, no_proxy = _variable(environ, "no_proxy")
    return None if _bypassed(url, no_proxy or "") else proxy


def _variable(environ: Mapping[str, str], lower: str) -> tuple[str, str | None]:
    for name in (lower, lower.upper()):
        if name in environ:
            return name, environ[name]
    return lower.upper(), None


def _bypassed(url: str, no_proxy: str) -> bool:
    """NO_PROXY as urllib reads it (*, host names and domain suffixes, host:port), plus IP networks."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if proxy_bypass_environment(parts.netloc.rpartition("@")[2], {"no": no_proxy}):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in (e.strip() for e in no_proxy.split(",")):
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name, handled above
    return False
