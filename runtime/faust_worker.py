"""faust's worker with SIGTERM bounded while Kafka is out of reach.

With Kafka gone, faust's stop waits on aiokafka (LeaveGroup, the fetcher, the consumer thread) for
half a minute and more. Nothing can be flushed to an unreachable broker, so once the stop has had
STOP_SECONDS and aiokafka still fails to connect, the process exits; a stop with Kafka reachable is
never cut short. Uncommitted records are read again on the next start (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

import faust
from aiokafka.errors import KafkaError

from runtime.outages import OUTAGE_FILTER

log = logging.getLogger(__name__)

STOP_SECONDS = 4.0
# aiokafka retries about every 200 ms while running (stopping, it gives up connecting): a failure
# this long before the timer fires means Kafka was out of reach when the signal came.
RECENT_FAILURE_SECONDS = STOP_SECONDS + 3.0


class SignalBoundedWorker(faust.Worker):  # type: ignore[misc]
    def _on_sigterm(self) -> None:
        _exit_later_if_kafka_unreachable()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        _exit_later_if_kafka_unreachable()
        super()._on_sigint()


def _exit_later_if_kafka_unreachable() -> None:
    # Stopping with Kafka gone, aiokafka's consumer stop in faust's consumer thread raises the
    # CancelledError of its own fetch task (as in every stage): one line, not a thread traceback.
    threading.excepthook = _quiet_while_stopping
    timer = threading.Timer(STOP_SECONDS, _exit_if_kafka_unreachable)
    timer.daemon = True  # a stop that finishes in time ends the process with the timer pending
    timer.start()


def _quiet_while_stopping(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is not None and issubclass(args.exc_type, asyncio.CancelledError | KafkaError):
        thread = args.thread.name if args.thread else "a thread"
        log.warning("%s ended with %s while stopping", thread, args.exc_type.__name__)
    else:
        threading.__excepthook__(args)


def _exit_if_kafka_unreachable() -> None:
    if not OUTAGE_FILTER.failing_within(RECENT_FAILURE_SECONDS):
        return
    log.warning("stopping takes over %.0f s and Kafka is unreachable: exiting without it", STOP_SECONDS)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(0)
