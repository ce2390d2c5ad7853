"""The Graph stand-in's HTTP side: Graph v1.0 on http:// or https://127.0.0.1, the token endpoint on https.

It serves the real msgraph-sdk and azure-identity code paths: collections with absolute
@odata.nextLink paging, delta rounds with split members@delta and 410 on expired tokens, 429 with
Retry-After on demand, subscriptions, and bearer tokens checked against the ones it issued.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from harness.standin.odata import GraphError
from harness.standin.subscriptions import Delivery, SubscriptionService
from harness.standin.tenant import Mutation, Resource, Tenant, UnknownObject
from harness.standin.tls import make_test_ca
from schemas.config import GraphSettings
from schemas.graph import is_directory_extension

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_LIFETIME = 3599


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    at: float


@dataclass(frozen=True)
class _DeltaState:
    resource: Resource
    seq: int
    select: tuple[str, ...] | None


class GraphStandin:
    """A fake Microsoft Graph + Entra token endpoint around one Tenant."""

    def __init__(
        self,
        tenant: Tenant | None = None,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        page_size: int = 100,
        delta_page_size: int = 100,
        delta_members_per_item: int = 100,
    ) -> None:
        self.tenant = tenant or Tenant()
        self.tenant_id = self.tenant.tenant_id
        self.client_id = client_id or str(uuid.uuid4())
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.page_size = page_size
        self.delta_page_size = delta_page_size
        self.delta_members_per_item = delta_members_per_item
        self.subscriptions = SubscriptionService(self.tenant_id, self.client_id)
        self.requests: list[SeenRequest] = []
        self.token_requests: list[dict[str, str]] = []
        self.issued_tokens: set[str] = set()
        self.graph_base_url = ""  # set by running_standin, e.g. https://127.0.0.1:PORT/v1.0
        self.authority_host = ""  # e.g. https://127.0.0.1:PORT
        self.ca_file: Path | None = None
        self._throttled_requests = 0
        self._retry_after: float = 1
        self._delta_tokens: dict[str, _DeltaState] = {}
        self._pending_pages: dict[str, tuple[list[list[dict[str, Any]]], _DeltaState]] = {}
        self.tenant.listeners.append(self._on_mutation)

    # -- test and demo controls --------------------------------------------------------------

    def issue_token(self) -> str:
        """A bearer token Graph requests may carry (for tests that inject their own credential)."""
        token = f"standin.{secrets.token_urlsafe(24)}"
        self.issued_tokens.add(token)
        return token

    def throttle(self, next_n_requests: int, retry_after_seconds: float) -> None:
        """Answer the next N Graph requests with 429 and this Retry-After (Graph sends whole seconds)."""
        self._throttled_requests = next_n_requests
        self._retry_after = retry_after_seconds

    def expire_delta_tokens(self) -> None:
        """Forget every delta and skip token, as Graph does after seven days: the next use gets 410."""
        self._delta_tokens.clear()
        self._pending_pages.clear()

    async def send_lifecycle(self, subscription_id: str, event: str = "reauthorizationRequired") -> Delivery:
        return await self.subscriptions.send_lifecycle(subscription_id, event)

    def graph_settings(self, **overrides: Any) -> GraphSettings:
        """GraphSettings that point e2ad at this stand-in with its client secret."""
        values: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "base_url": self.graph_base_url,
            "authority_host": self.authority_host,
            "ca_bundle": self.ca_file,
        }
        values.update(overrides)
        return GraphSettings(**values)

    def requests_to(self, path_fragment: str) -> list[SeenRequest]:
        return [r for r in self.requests if path_fragment in r.path]

    # -- the application ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._graph_middleware])
        r = app.router
        r.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        for resource in ("groups", "users"):
            handler = self._delta_handler(cast(Resource, resource))
            r.add_get(f"/v1.0/{resource}/delta", handler)
            r.add_get(f"/v1.0/{resource}/delta()", handler)
            r.add_get(f"/v1.0/{resource}", self._list_handler(cast(Resource, resource)))
            r.add_get(f"/v1.0/{resource}/{{id}}", self._get_handler(cast(Resource, resource)))
        r.add_get("/v1.0/groups/{id}/members", self._members)
        r.add_get("/v1.0/directory/deletedItems/{id}", self._deleted_item)
        r.add_post("/v1.0/groups", self._create_group)
        r.add_patch("/v1.0/groups/{id}", self._update_group)
        r.add_delete("/v1.0/groups/{id}", self._delete_group)
        r.add_post("/v1.0/groups/{id}/members/$ref", self._add_member)
        r.add_delete("/v1.0/groups/{id}/members/{member}/$ref", self._remove_member)
        r.add_get("/v1.0/subscriptions", self._list_subscriptions)
        r.add_post("/v1.0/subscriptions", self._create_subscription)
        r.add_get("/v1.0/subscriptions/{id}", self._get_subscription)
        r.add_patch("/v1.0/subscriptions/{id}", self._renew_subscription)
        r.add_delete("/v1.0/subscriptions/{id}", self._delete_subscription)
        r.add_post("/v1.0/subscriptions/{id}/reauthorize", self._reauthorize_subscription)
        return app

    @web.middleware
    async def _graph_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1.0/"):
            return await handler(request)
        self.requests.append(
            SeenRequest(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                time.time(),
            )
        )
        try:
            self._authorize(request)
            if self._throttled_requests > 0:
                self._throttled_requests -= 1
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests. The request was throttled by the stand-in.",
                    {"Retry-After": f"{self._retry_after:g}"},
                )
            return await handler(request)
        except GraphError as exc:
            return exc.response()
        except UnknownObject as exc:
            return GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{exc.object_id}' does not exist or one of its queried reference-property objects "
                "are not present.",
            ).response()
        except ValueError as exc:
            return GraphError(400, "Request_BadRequest", str(exc)).response()

    def _authorize(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if token not in self.issued_tokens:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")

    # -- token endpoint ----------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(form)
        if not request.secure:
            return _aad_error(400, "invalid_request", 9002326, "The token endpoint is only served over https.")
        if request.match_info["tenant"] != self.tenant_id:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{request.match_info['tenant']}' not found.")
        if form.get("grant_type") != "client_credentials":
            return _aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form.get("client_id") != self.client_id:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
            )
        # A certificate credential sends a signed assertion; the stand-in trusts any well-formed one.
        has_assertion = form.get("client_assertion_type", "").endswith("jwt-bearer") and form.get("client_assertion")
        if not has_assertion and form.get("client_secret") != self.client_secret:
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{self.client_id}'.",
            )
        token = self.issue_token()
        return web.json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            }
        )

    # -- reads -------------------------------------------------------------------------------

    def _list_handler(self, resource: Resource) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            items = list(self.tenant.objects[resource].values())
            return web.json_response(self._collection_page(request, items))

        return handler

    def _get_handler(self, resource: Resource) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            item = self.tenant.get(resource, request.match_info["id"])
            return web.json_response(_selected(item, _select(request)))

        return handler

    async def _members(self, request: web.Request) -> web.Response:
        group_id = request.match_info["id"]
        self.tenant.get("groups", group_id)
        return web.json_response(self._collection_page(request, self.tenant.member_refs(group_id)))

    async def _deleted_item(self, request: web.Request) -> web.Response:
        return web.json_response(_selected(self.tenant.deleted_item(request.match_info["id"]), _select(request)))

    def _collection_page(self, request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        top = _int_param(request, "$top", self.page_size)
        offset = _int_param(request, "$skiptoken", 0)
        select = _select(request)
        page: dict[str, Any] = {"value": [_selected(item, select) for item in items[offset : offset + top]]}
        if offset + top < len(items):
            next_url = request.url.update_query({"$skiptoken": str(offset + top)})
            page["@odata.nextLink"] = str(next_url)
        return page

    def _delta_handler(self, resource: Resource) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            link_base = f"{request.url.origin()}/v1.0/{resource}/delta"
            if skip := request.query.get("$skiptoken"):
                pages_and_state = self._pending_pages.pop(skip, None)
                if pages_and_state is None:
                    raise GraphError(400, "Directory_ExpiredPageToken", f"The page token {skip!r} has expired.")
                pages, state = pages_and_state
            else:
                state, since = self._delta_start(request, resource, link_base)
                if state is None:  # $deltatoken=latest: only a deltaLink, starting now
                    latest = _DeltaState(resource, self.tenant.seq, _select(request))
                    return web.json_response({"value": [], "@odata.deltaLink": self._delta_link(link_base, latest)})
                pages = self._delta_pages(request, state, since)
            page: dict[str, Any] = {"value": pages[0]}
            if len(pages) > 1:
                skip_token = secrets.token_urlsafe(16)
                self._pending_pages[skip_token] = (pages[1:], state)
                page["@odata.nextLink"] = f"{link_base}?$skiptoken={skip_token}"
            else:
                page["@odata.deltaLink"] = self._delta_link(link_base, state)
            return web.json_response(page)

        return handler

    def _delta_start(
        self, request: web.Request, resource: Resource, link_base: str
    ) -> tuple[_DeltaState | None, int | None]:
        """The round's state (what the next deltaLink continues from) and where it reads from."""
        token = request.query.get("$deltatoken") or request.query.get("$deltaToken")
        if token is None:
            return _DeltaState(resource, self.tenant.seq, _select(request)), None
        if token == "latest":
            return None, None
        previous = self._delta_tokens.get(token)
        if previous is None or previous.resource != resource:
            raise GraphError(
                410,
                "syncStateNotFound",
                f"The sync state for delta token {token!r} was not found or has expired; start a full round.",
                {"Location": f"{link_base}?$deltatoken="},
            )
        return _DeltaState(resource, self.tenant.seq, previous.select), previous.seq

    def _delta_pages(self, request: web.Request, state: _DeltaState, since: int | None) -> list[list[dict[str, Any]]]:
        items: list[dict[str, Any]] = []
        for item in self.tenant.delta_items(state.resource, since):
            items.extend(_split_members(_selected(item, state.select), self.delta_members_per_item))
        size = _max_page_size(request) or self.delta_page_size
        return [items[i : i + size] for i in range(0, len(items), size)] or [[]]

    def _delta_link(self, link_base: str, state: _DeltaState) -> str:
        token = secrets.token_urlsafe(16)
        self._delta_tokens[token] = state
        return f"{link_base}?$deltatoken={token}"

    # -- writes ------------------------------------------------------------------------------

    async def _create_group(self, request: web.Request) -> web.Response:
        body = _properties(await _json_body(request))
        display_name = body.pop("displayName", None)
        if not display_name:
            raise GraphError(400, "Request_BadRequest", "displayName is required to create a group")
        mutation = self.tenant.add_group(display_name, **body)
        return web.json_response(self.tenant.get("groups", mutation.object_id), status=201)

    async def _update_group(self, request: web.Request) -> web.Response:
        self.tenant.update_group(request.match_info["id"], **_properties(await _json_body(request)))
        return web.Response(status=204)

    async def _delete_group(self, request: web.Request) -> web.Response:
        self.tenant.soft_delete_group(request.match_info["id"])
        return web.Response(status=204)

    async def _add_member(self, request: web.Request) -> web.Response:
        reference = str((await _json_body(request)).get("@odata.id", ""))
        member_id = reference.rstrip("/").rsplit("/", 1)[-1]
        if not member_id:
            raise GraphError(400, "Request_BadRequest", "@odata.id must name the member to add")
        self.tenant.add_member(request.match_info["id"], member_id)
        return web.Response(status=204)

    async def _remove_member(self, request: web.Request) -> web.Response:
        self.tenant.remove_member(request.match_info["id"], request.match_info["member"])
        return web.Response(status=204)

    # -- subscriptions -----------------------------------------------------------------------

    async def _list_subscriptions(self, request: web.Request) -> web.Response:
        return web.json_response({"value": list(self.subscriptions.subscriptions.values())})

    async def _create_subscription(self, request: web.Request) -> web.Response:
        subscription = await self.subscriptions.create(await _json_body(request))
        return web.json_response(subscription, status=201)

    async def _get_subscription(self, request: web.Request) -> web.Response:
        return web.json_response(self.subscriptions.get(request.match_info["id"]))

    async def _renew_subscription(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        return web.json_response(self.subscriptions.renew(request.match_info["id"], body))

    async def _delete_subscription(self, request: web.Request) -> web.Response:
        self.subscriptions.delete(request.match_info["id"])
        return web.Response(status=204)

    async def _reauthorize_subscription(self, request: web.Request) -> web.Response:
        self.subscriptions.reauthorize(request.match_info["id"])
        return web.Response(status=204)

    def _on_mutation(self, mutation: Mutation) -> None:
        if self.subscriptions.subscriptions:
            self.subscriptions.notify(mutation)


@contextlib.asynccontextmanager
async def running_standin(
    tenant: Tenant | None = None, *, graph_tls: bool = False, **options: Any
) -> AsyncIterator[GraphStandin]:
    """Serve a GraphStandin on loopback: the token endpoint over https with a fresh test CA, and Graph on a
    port of its own, over http or (graph_tls) over https with the same CA, as real Graph is reached."""
    standin = GraphStandin(tenant, **options)
    runner = web.AppRunner(standin.app(), access_log=None)
    await runner.setup()
    with tempfile.TemporaryDirectory(prefix="e2ad-standin-") as tmp:
        ca_file, tls = make_test_ca(Path(tmp))
        graph_socket, tls_socket = _loopback_socket(), _loopback_socket()
        try:
            await web.SockSite(runner, graph_socket, ssl_context=tls if graph_tls else None).start()
            await web.SockSite(runner, tls_socket, ssl_context=tls).start()
            scheme = "https" if graph_tls else "http"
            standin.graph_base_url = f"{scheme}://127.0.0.1:{graph_socket.getsockname()[1]}/v1.0"
            standin.authority_host = f"https://127.0.0.1:{tls_socket.getsockname()[1]}"
            standin.ca_file = ca_file
            yield standin
        finally:
            await standin.subscriptions.close()
            await runner.cleanup()


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _aad_error(status: int, error: str, code: int, description: str) -> web.Response:
    # Entra's token endpoint error shape; azure-identity surfaces error_description in its exception.
    trace = str(uuid.uuid4())
    return web.json_response(
        {
            "error": error,
            "error_description": f"AADSTS{code}: {description} Trace ID: {trace}",
            "error_codes": [code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
        status=status,
    )


def _select(request: web.Request) -> tuple[str, ...] | None:
    raw = request.query.get("$select")
    return tuple(p.strip() for p in raw.split(",") if p.strip()) if raw else None


def _selected(item: dict[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    """The item with only the selected properties; id, @odata.type and @removed always stay.

    Without $select, every property but the directory extensions: Graph returns those only when named.
    """
    if select is None:
        return {k: v for k, v in item.items() if not is_directory_extension(k)}
    keep = set(select) | {"id", "@odata.type", "@removed"}
    if "members" in select:
        keep.add("members@delta")
    return {k: v for k, v in item.items() if k in keep}


def _split_members(item: dict[str, Any], per_item: int) -> list[dict[str, Any]]:
    """Graph splits a large group's members@delta over several items of the same group."""
    members = item.get("members@delta")
    if not members or len(members) <= per_item:
        return [item]
    first = {**item, "members@delta": members[:per_item]}
    rest = [
        {"id": item["id"], "members@delta": members[i : i + per_item]} for i in range(per_item, len(members), per_item)
    ]
    return [first, *rest]


def _max_page_size(request: web.Request) -> int | None:
    for preference in request.headers.get("Prefer", "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.lower() == "odata.maxpagesize" and value.isdigit():
            return int(value)
    return None


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for query option {name}.")
    return int(raw)


def _properties(body: dict[str, Any]) -> dict[str, Any]:
    """A write body without its annotations: the SDK sends @odata.type with every group it serialises."""
    return {name: value for name, value in body.items() if not name.startswith("@")}


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise GraphError(400, "BadRequest", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body
