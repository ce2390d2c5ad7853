"""`e2ad ingest`: the webhook on this event loop, the graph worker on its own thread and loop."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from azure.core.credentials_async import AsyncTokenCredential

from ingest.graph_worker import GraphWorker
from ingest.webhook import NotificationSink, build_app
from runtime.kafka import ensure_topics
from runtime.outages import stopped_within
from schemas.config import Settings

log = logging.getLogger(__name__)

WORKER_CHECK_SECONDS = 1.0  # how often the stage looks whether its graph worker lost Kafka


async def run_ingest(
    settings: Settings, stop: asyncio.Event, *, credential: AsyncTokenCredential | None = None
) -> None:
    worker = GraphWorker(settings, credential=credential)  # first: it checks the Graph transport settings
    await ensure_topics(settings.kafka)
    app = build_app(
        settings.webhook, NotificationSink(settings.kafka), tenant_id=settings.graph.tenant_id, ready=[worker.not_ready]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    # The webhook listens before the worker subscribes: Graph validates the URL while subscribing.
    await web.TCPSite(runner, settings.webhook.listen_host, settings.webhook.listen_port).start()
    log.info("webhook listening on %s:%s", settings.webhook.listen_host, settings.webhook.listen_port)
    worker.start_thread()
    try:
        while not await stopped_within(stop, WORKER_CHECK_SECONDS):
            if worker.failure is not None:
                raise worker.failure
    finally:
        await asyncio.to_thread(worker.stop)
        await runner.cleanup()
