"""/healthz, /readyz and /metrics, the same for every stage that serves them (ingest, the writer).

A stage says whether it is healthy and whether it is ready, with what to show; this module answers
200 or 503 with that body as JSON, and serves the stage's Prometheus registry in the text exposition
format. /healthz says the process is alive and not held (a load balancer or an orchestrator restarts
it otherwise); /readyz says it is connected and caught up, from the stage's own readiness checks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# A stage's health: whether it is healthy (200, else 503) and the JSON body that says why.
Health = Callable[[], tuple[bool, Mapping[str, object]]]
# One condition of readiness: why the stage is not ready ("Kafka producer not started"), None when it is.
ReadinessCheck = Callable[[], str | None]


def readiness(checks: Sequence[ReadinessCheck]) -> Health:
    """A stage's /readyz: ready when none of its checks names a reason, else every reason named."""

    def ready() -> tuple[bool, dict[str, object]]:
        reasons = [reason for check in checks if (reason := check()) is not None]
        if reasons:
            return False, {"status": "not ready", "reasons": reasons}
        return True, {"status": "ready"}

    return ready


def caught_up(topic: str, behind: Callable[[], int], most: int) -> ReadinessCheck:
    """A readiness check: at most `most` records of `topic` wait for the stage (`behind` counts them now)."""

    def check() -> str | None:
        count = behind()
        return None if count <= most else f"{count} records of {topic} behind (ready at {most} or fewer)"

    return check


def add_health_routes(
    app: web.Application, health: Health, ready: Health, registry: CollectorRegistry = REGISTRY
) -> None:
    """Serve GET /healthz, GET /readyz and GET /metrics on `app`."""

    def answer(check: Health) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_: web.Request) -> web.Response:
            ok, body = check()
            return web.json_response(dict(body), status=200 if ok else 503)

        return handle

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app.router.add_get("/healthz", answer(health))
    app.router.add_get("/readyz", answer(ready))
    app.router.add_get("/metrics", metrics)


class HealthServer:
    """/healthz, /readyz and /metrics on a port of their own, for a stage that serves nothing else."""

    def __init__(
        self, stage: str, host: str, port: int, health: Health, ready: Health, registry: CollectorRegistry
    ) -> None:
        self.stage = stage
        self.host = host
        self.port = port  # 0 until started on a free port
        self._health = health
        self._ready = ready
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        add_health_routes(app, self._health, self._ready, self._registry)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info(
            "%s health, readiness and metrics on http://%s:%d/healthz, /readyz and /metrics",
            self.stage, self.host, self.port,
        )  # fmt: skip

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
