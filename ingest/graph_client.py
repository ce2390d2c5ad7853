"""The one place Graph clients are built: a credential from GraphSettings, and an SDK client around it.

Production and tests share this code; tests inject any AsyncTokenCredential instead of building one.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlparse

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from kiota_abstractions.request_option import RequestOption
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.graph_request_adapter import options as graph_default_options

from ingest.graph_transport import GraphTransport
from schemas.config import GraphSettings

PUBLIC_GRAPH_HOST = "graph.microsoft.com"


class GraphNotConfigured(ValueError):
    """GraphSettings lacks what a credential needs (tenant, client id, secret or certificate)."""


def build_credential(settings: GraphSettings, transport: GraphTransport | None = None) -> AsyncTokenCredential:
    """An aio client-secret or certificate credential for settings' tenant and authority.

    transport (by default from settings and the environment) decides the CAs it trusts and its proxy.
    Call it on the event loop that will use the credential: its aiohttp session belongs to that loop.
    """
    if not settings.tenant_id or not settings.client_id:
        raise GraphNotConfigured("graph.tenant_id and graph.client_id are needed to build a Graph credential")
    if settings.client_secret is None and settings.certificate_path is None:
        raise GraphNotConfigured("graph.client_secret or graph.certificate_path is needed to build a Graph credential")
    transport = transport or GraphTransport.from_settings(settings)
    options = {"authority": str(settings.authority_host).rstrip("/"), **transport.credential_options()}
    if settings.client_secret is not None:
        return ClientSecretCredential(
            settings.tenant_id, settings.client_id, settings.client_secret.get_secret_value(), **options
        )
    return CertificateCredential(
        settings.tenant_id, settings.client_id, certificate_path=str(settings.certificate_path), **options
    )


def graph_scopes(base_url: str) -> list[str]:
    """The .default scope of the Graph cloud behind base_url (national clouds have their own host).

    Loopback stand-ins accept any token, so they get the public cloud's scope: kiota would otherwise
    derive http://127.0.0.1/.default, which no real authority issues.
    """
    host = urlparse(base_url).hostname or PUBLIC_GRAPH_HOST
    if host in {"localhost", "127.0.0.1", "::1"}:
        host = PUBLIC_GRAPH_HOST
    return [f"https://{host}/.default"]


def build_graph_client(
    credential: AsyncTokenCredential,
    settings: GraphSettings,
    *,
    max_retries: int | None = None,
    transport: GraphTransport | None = None,
) -> GraphServiceClient:
    """A GraphServiceClient for settings.base_url that sends tokens only to that host.

    max_retries overrides the SDK's retry middleware (429/503/504, honouring Retry-After);
    None keeps its default of three. transport (by default from settings and the environment)
    decides the CAs the SDK's httpx client trusts and its proxy.
    """
    base_url = str(settings.base_url).rstrip("/")  # a trailing slash makes the SDK send //groups
    host = urlparse(base_url).hostname or PUBLIC_GRAPH_HOST
    auth = AzureIdentityAuthenticationProvider(credential, scopes=graph_scopes(base_url), allowed_hosts=[host])
    options: dict[str, RequestOption] = dict(graph_default_options)
    if max_retries is not None:
        options[RetryHandlerOption.get_key()] = RetryHandlerOption(max_retries=max_retries)
    transport = transport or GraphTransport.from_settings(settings)
    adapter = GraphRequestAdapter(auth, client=transport.sdk_client(options))
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)


def describe_graph_error(exc: BaseException) -> str:
    """One line naming what Graph answered: status, Graph error code and message, or the exception.

    A certificate that is not trusted names the setting that fixes it: both the token request
    (azure-core) and the SDK (httpx) wrap the ssl error in their own connection errors.
    """
    if (untrusted := _certificate_error(exc)) is not None:
        return (
            f"{type(exc).__name__}: the server's certificate is not trusted ({untrusted.verify_message}); "
            f"graph.ca_bundle must hold the CA that issued it (a private endpoint's or a TLS-inspecting proxy's)"
        )
    status = getattr(exc, "response_status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None)
    if status is None and code is None:
        return f"{type(exc).__name__}: {exc}"
    return f"HTTP {status} {code or type(exc).__name__}: {message or 'no message'}"


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The innermost certificate error in exc's chain: the ssl module's own, which has verify_message
    (aiohttp's ClientConnectorCertificateError is one too, without it)."""
    found = None
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            found = cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return found


async def close_graph_client(client: GraphServiceClient) -> None:
    """Close the client's connection pool; the SDK offers no public way to do so."""
    http_client = getattr(client.request_adapter, "_http_client", None)
    if http_client is not None:
        await http_client.aclose()
