"""Test doubles shared by the Graph-facing tests: a credential, a client on the stand-in, a webhook receiver."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken
from msgraph import GraphServiceClient

from harness.standin import GraphStandin
from ingest.graph_client import build_graph_client


class FakeAsyncCredential:
    """An AsyncTokenCredential handing out one fixed token (kiota accepts only AccessToken)."""

    def __init__(self, token: str = "static-test-token") -> None:
        self.token = token
        self.requests: list[tuple[tuple[str, ...], bool]] = []

    async def get_token(
        self, *scopes: str, claims: str | None = None, tenant_id: str | None = None, enable_cae: bool = False, **_: Any
    ) -> AccessToken:
        self.requests.append((scopes, enable_cae))
        return AccessToken(self.token, 4_102_444_800)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> FakeAsyncCredential:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass


def standin_client(standin: GraphStandin, *, max_retries: int | None = None) -> GraphServiceClient:
    """A real GraphServiceClient on the stand-in, authenticated with a token the stand-in issued."""
    return build_graph_client(
        FakeAsyncCredential(standin.issue_token()), standin.graph_settings(), max_retries=max_retries
    )


class WebhookReceiver:
    """A minimal notification endpoint: answers Graph's validation handshake and records deliveries."""

    def __init__(self, *, echo_token: bool = True) -> None:
        self.echo_token = echo_token
        self.validations: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if (token := request.query.get("validationToken")) is not None:
            self.validations.append(token)
            return web.Response(text=token if self.echo_token else "nope", content_type="text/plain")
        self.bodies.append(await request.json())
        return web.Response(status=202)


@contextlib.asynccontextmanager
async def running_receiver(**options: Any) -> AsyncIterator[WebhookReceiver]:
    """Serve a WebhookReceiver on loopback; url is its base, paths /graph/notifications and /graph/lifecycle."""
    receiver = WebhookReceiver(**options)
    app = web.Application()
    app.router.add_post("/graph/notifications", receiver.handle)
    app.router.add_post("/graph/lifecycle", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    receiver.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
