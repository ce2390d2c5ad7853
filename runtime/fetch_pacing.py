"""Pace a caught-up consumer's fetches when the broker does not hold empty fetches (the embedded noida-db).

Apache Kafka holds a Fetch that has no records up to the consumer's `fetch_max_wait_ms` (aiokafka's
default 500 ms, faust's 1,500 ms), so a caught-up consumer sends about two requests a second.
noida-db answers it at once (0.4 ms), and aiokafka's fetcher sends the next one as soon as the
answer is in: ~900 fetches a second and 40 % of a core per idle consumer (docs/benchmarks.md).

The pacing waits a short pause after an empty answer that came back much sooner than the wait the
consumer asked for, before the next fetch to that broker. An answer with records is never followed
by a pause, and an answer a broker held (as Apache Kafka does) is more than half the asked wait,
so on Kafka nothing changes. The pause never takes the fetch past the asked wait either: the
consumer sees at most what a long-polling broker would have made it wait.

Where it hooks in: `Fetcher._proc_fetch_request` is the task that sends one Fetch to one broker
and files its records; while it runs, aiokafka's fetch loop sends that broker no other Fetch. A
subclass that measures it and sleeps at its end therefore delays exactly the next fetch to that
broker, as a held request would, and nothing else (seeks, commits, heartbeats and the consumer's
getmany run as before). aiokafka builds its Fetcher from the name `Fetcher` in
`aiokafka.consumer.consumer`; `install()` rebinds that one name, once per process, so every
AIOKafkaConsumer is paced, also the ones faust builds itself (faust/transport/drivers/aiokafka.py
calls `aiokafka.AIOKafkaConsumer`, whose `start()` makes the fetcher). The private method is
pinned by the aiokafka version range in pyproject.toml, and tests/integration/test_fetch_pacing.py
fails if the hook stops pacing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import aiokafka.consumer.consumer
from aiokafka.consumer.fetcher import Fetcher

# Chosen with scripts/bench_idle.py (docs/benchmarks.md): pauses of 50, 75 and 100 ms left the idle
# embedded mode at 7.9, 5.7 and 5.0 % of a core, with a p50 of 0.43, 0.43 and 0.47 s from a change
# to AD (0.41-0.52 s unpaced, on a shared machine); 75 ms keeps room under both targets (10 %,
# 0.5 s). A record that arrives during a pause waits for its end: up to 75 ms per stage, about 40 ms
# on average.
DEFAULT_PAUSE_SECONDS = 0.075
# An answer faster than this part of the asked wait was not held: the broker does not long-poll.
HELD_FRACTION = 0.5
# The pause in seconds; 0 turns pacing off (scripts/bench_idle.py --variants off measures the spin).
# Not an E2AD_… variable: those name configuration fields, and pacing is the client's concern.
PAUSE_VARIABLE = "FETCH_PACING_SECONDS"


def pause_after_fetch(*, had_records: bool, elapsed: float, max_wait: float, pause: float) -> float:
    """Seconds to wait before the next fetch to a broker, given how its last answer came back.

    `elapsed`: seconds from sending the Fetch to having handled its answer; `max_wait`: the
    fetch_max_wait_ms the consumer asked the broker to hold an empty fetch for, in seconds.
    """
    if had_records or elapsed >= max_wait * HELD_FRACTION:
        return 0.0
    return min(pause, max_wait - elapsed)


class PacedFetcher(Fetcher):  # type: ignore[misc]  # aiokafka has no type hints
    pause: float = DEFAULT_PAUSE_SECONDS

    async def _proc_fetch_request(self, assignment, node_id, request) -> bool:  # type: ignore[no-untyped-def]
        started = self._loop.time()
        had_records: bool = await super()._proc_fetch_request(assignment, node_id, request)
        delay = pause_after_fetch(
            had_records=had_records,
            elapsed=self._loop.time() - started,
            max_wait=self._fetch_max_wait_ms / 1000,
            pause=self.pause,
        )
        if delay:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # Cancelled by close() or a lost assignment, which await this task and expect it to
                # end quietly: aiokafka's own send in this method returns False on cancellation too.
                return had_records
        return had_records


def install(environ: Mapping[str, str] = os.environ) -> None:
    """Make every AIOKafkaConsumer of this process pace its fetches (idempotent; see the module docstring)."""
    value = environ.get(PAUSE_VARIABLE, str(DEFAULT_PAUSE_SECONDS))
    try:
        pause = float(value)
    except ValueError:
        raise ValueError(f"{PAUSE_VARIABLE} must be the pause in seconds (0: off), not {value!r}") from None
    PacedFetcher.pause = pause
    aiokafka.consumer.consumer.Fetcher = PacedFetcher if pause > 0 else Fetcher  # type: ignore[misc]
