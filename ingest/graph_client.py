"""The one place Graph clients are built: a credential from GraphSettings, and an SDK client around it.

Production and tests share this code; tests inject any AsyncTokenCredential instead of building one.
"""

from __future__ import annotations

from urllib.parse import urlparse

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory

from schemas.config import GraphSettings

PUBLIC_GRAPH_HOST = "graph.microsoft.com"


class GraphNotConfigured(ValueError):
    """GraphSettings lacks what a credential needs (tenant, client id, secret or certificate)."""


def build_credential(settings: GraphSettings) -> AsyncTokenCredential:
    """An aio client-secret or certificate credential for settings' tenant and authority."""
    if not settings.tenant_id or not settings.client_id:
        raise GraphNotConfigured("graph.tenant_id and graph.client_id are needed to build a Graph credential")
    options: dict[str, object] = {"authority": str(settings.authority_host).rstrip("/")}
    if settings.ca_bundle is not None:
        # azure-core transport keyword: trust the private CA of a stand-in or a TLS-inspecting proxy.
        options["connection_verify"] = str(settings.ca_bundle)
    if settings.client_secret is not None:
        return ClientSecretCredential(
            settings.tenant_id, settings.client_id, settings.client_secret.get_secret_value(), **options
        )
    if settings.certificate_path is not None:
        return CertificateCredential(
            settings.tenant_id, settings.client_id, certificate_path=str(settings.certificate_path), **options
        )
    raise GraphNotConfigured("graph.client_secret or graph.certificate_path is needed to build a Graph credential")


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
    credential: AsyncTokenCredential, settings: GraphSettings, *, max_retries: int | None = None
) -> GraphServiceClient:
    """A GraphServiceClient for settings.base_url that sends tokens only to that host.

    max_retries overrides the SDK's retry middleware (429/503/504, honouring Retry-After);
    None keeps its default of three.
    """
    base_url = str(settings.base_url).rstrip("/")  # a trailing slash makes the SDK send //groups
    host = urlparse(base_url).hostname or PUBLIC_GRAPH_HOST
    auth = AzureIdentityAuthenticationProvider(credential, scopes=graph_scopes(base_url), allowed_hosts=[host])
    client = None
    if max_retries is not None:
        options = {**graph_default_options, RetryHandlerOption.get_key(): RetryHandlerOption(max_retries=max_retries)}
        client = GraphClientFactory.create_with_default_middleware(options=options)
    adapter = GraphRequestAdapter(auth, client=client)
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter)


def describe_graph_error(exc: BaseException) -> str:
    """One line naming what Graph answered: status, Graph error code and message, or the exception."""
    status = getattr(exc, "response_status_code", None)
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None)
    if status is None and code is None:
        return f"{type(exc).__name__}: {exc}"
    return f"HTTP {status} {code or type(exc).__name__}: {message or 'no message'}"


async def close_graph_client(client: GraphServiceClient) -> None:
    """Close the client's connection pool; the SDK offers no public way to do so."""
    http_client = getattr(client.request_adapter, "_http_client", None)
    if http_client is not None:
        await http_client.aclose()
