"""The writer's web endpoints: /healthz (200 while running, 503 quarantined or disabled) and /metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from schemas import topics
from schemas.status import WriterStatus

log = logging.getLogger(__name__)


class HealthServer:
    """A small aiohttp app, started and stopped with the writer."""

    def __init__(self, host: str, port: int, status: Callable[[], WriterStatus], registry: CollectorRegistry) -> None:
        self.host = host
        self.port = port  # 0 until started on a free port
        self._status = status
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("writer health and metrics on http://%s:%d/healthz and /metrics", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        status = self._status()
        return web.json_response(topics.jsonable(status), status=200 if status.healthy else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(self._registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response
