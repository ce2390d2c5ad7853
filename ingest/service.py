"""`e2ad ingest`: the webhook on this event loop, the graph worker on its own thread and loop."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from azure.core.credentials_async import AsyncTokenCredential

from e2ad.kafka import ensure_topics
from ingest.graph_worker import GraphWorker
from ingest.webhook import NotificationSink, build_app
from schemas.config import Settings

log = logging.getLogger(__name__)


async def run_ingest(
    settings: Settings, stop: asyncio.Event, *, credential: AsyncTokenCredential | None = None
) -> None:
    await ensure_topics(settings.kafka)
    app = build_app(settings.webhook, NotificationSink(settings.kafka), tenant_id=settings.graph.tenant_id)
    runner = web.AppRunner(app)
    await runner.setup()
    # The webhook listens before the worker subscribes: Graph validates the URL while subscribing.
    await web.TCPSite(runner, settings.webhook.listen_host, settings.webhook.listen_port).start()
    log.info("webhook listening on %s:%s", settings.webhook.listen_host, settings.webhook.listen_port)
    worker = GraphWorker(settings, credential=credential)
    worker.start_thread()
    try:
        await stop.wait()
    finally:
        await asyncio.to_thread(worker.stop)
        await runner.cleanup()
