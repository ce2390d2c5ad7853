"""/healthz and /metrics, the same for every stage that serves them (the webhook, the writer).

A stage says whether it is healthy and what to show; this module answers 200 or 503 with that
body as JSON, and serves the stage's Prometheus registry in the text exposition format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# A stage's health: whether it is healthy (200, else 503) and the JSON body that says why.
Health = Callable[[], tuple[bool, Mapping[str, object]]]


def add_health_routes(app: web.Application, health: Health, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve GET /healthz and GET /metrics on `app`."""

    async def healthz(_: web.Request) -> web.Response:
        healthy, body = health()
        return web.json_response(dict(body), status=200 if healthy else 503)

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


class HealthServer:
    """/healthz and /metrics on a port of their own, for a stage that serves nothing else."""

    def __init__(self, stage: str, host: str, port: int, health: Health, registry: CollectorRegistry) -> None:
        self.stage = stage
        self.host = host
        self.port = port  # 0 until started on a free port
        self._health = health
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        add_health_routes(app, self._health, self._registry)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("%s health and metrics on http://%s:%d/healthz and /metrics", self.stage, self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
