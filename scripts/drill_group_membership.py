"""Measurement (issue 17): does a consumer killed with SIGKILL and started again get its partitions back?

On a fresh embedded noida-db broker with e2ad's topics, each variant runs plain aiokafka consumers
of ad.desired (4 partitions) in a group of its own as child processes, SIGKILLs one twice, starts
it again at once each time, then publishes 8 records and reports when the new process was assigned
partitions, which ones, whether the group consumed all 8 records and how many members the broker
lists. docs/architecture.md (the embedded broker's limits) gives the figures and what e2ad does.

Variants: dynamic, static (group_instance_id), member-id (the dead member's id patched into
aiokafka's coordinator), assign (every partition assigned, offsets committed under the group),
each with one member, and dynamic-2 / static-2 / member-id-2 with two members (the first is killed).

Usage: .venv/bin/python scripts/drill_group_membership.py [VARIANT ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOPIC = "ad.desired"
WAIT_SECONDS = 25.0


# -- the child: one consumer, printing what happens to it as JSON lines ---------------------------
async def member(bootstrap: str, mode: str, group: str, options: dict[str, Any]) -> None:
    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

    def out(**fields: object) -> None:
        print(json.dumps({"t": time.time(), **fields}), flush=True)

    id_file = options.pop("member_id_file", None)
    if id_file is not None:
        import aiokafka.consumer.group_coordinator as gc

        init = gc.GroupCoordinator.__init__

        def reuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            init(self, *args, **kwargs)
            if os.path.exists(id_file):
                self.member_id = Path(id_file).read_text()

        gc.GroupCoordinator.__init__ = reuse  # type: ignore[method-assign]

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            pass

        async def on_partitions_assigned(self, assigned: Any) -> None:
            out(event="assigned", partitions=sorted(tp.partition for tp in assigned))

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest", **options
    )
    if mode == "subscribe":
        consumer.subscribe([TOPIC], listener=Listener())
        await consumer.start()
    else:
        await consumer.start()
        partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC) or ())]
        consumer.assign(partitions)
        out(event="assigned", partitions=[tp.partition for tp in partitions])
    while True:
        batch = await consumer.getmany(timeout_ms=200)
        coordinator = getattr(consumer, "_coordinator", None)
        if id_file is not None and coordinator is not None and coordinator.member_id:
            Path(id_file).write_text(coordinator.member_id)
        for tp, records in batch.items():
            for record in records:
                out(event="record", value=record.value.decode())
            await consumer.commit({tp: records[-1].offset + 1})


# -- the parent ---------------------------------------------------------------------------------
class Child:
    def __init__(self, bootstrap: str, mode: str, group: str, options: dict[str, Any]) -> None:
        self.args = [sys.executable, __file__, "--member", bootstrap, mode, group, json.dumps(options)]
        self.events: list[dict[str, Any]] = []

    async def start(self) -> Child:
        self.process = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        self.started = time.time()
        self._pump = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.events.append(json.loads(line))

    def partitions(self) -> list[int]:
        assigned = [e["partitions"] for e in self.events if e["event"] == "assigned"]
        return assigned[-1] if assigned else []

    def assigned_after(self) -> float | None:
        return next((e["t"] - self.started for e in self.events if e["event"] == "assigned" and e["partitions"]), None)

    def values(self) -> set[str]:
        return {e["value"] for e in self.events if e["event"] == "record"}

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


async def until(condition: Callable[[], object], timeout: float) -> float | None:
    started = time.time()
    while time.time() - started < timeout:
        if condition():
            return time.time() - started
        await asyncio.sleep(0.1)
    return None


async def group_members(bootstrap: str, group: str) -> int:
    from e2ad.topics import running_members
    from schemas.config import KafkaSettings

    return len((await running_members(KafkaSettings(bootstrap_servers=bootstrap), [group])).get(group, []))


async def variant(bootstrap: str, name: str, state: Path) -> None:
    from aiokafka import AIOKafkaProducer

    size = 2 if name.endswith("-2") else 1
    base = name.removesuffix("-2")
    mode = "assign" if base == "assign" else "subscribe"

    def options(index: int) -> dict[str, Any]:
        if base == "static":
            return {"group_instance_id": f"instance-{index}"}
        if base == "member-id":
            return {"member_id_file": str(state / f"{name}-{index}.member")}
        return {}

    group = f"drill-{name}"
    members = [await Child(bootstrap, mode, group, options(i)).start() for i in range(size)]
    for child in members:
        await until(child.partitions, WAIT_SECONDS)
    print(f"{name}: started {[m.partitions() for m in members]}", flush=True)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for kill in (1, 2):
            await asyncio.sleep(1.0)
            await members[0].stop()
            members[0] = new = await Child(bootstrap, mode, group, options(0)).start()
            await until(new.partitions, WAIT_SECONDS)
            values = [f"{name}-{kill}-{i}" for i in range(8)]
            for value in values:
                await producer.send_and_wait(TOPIC, value.encode(), key=value.encode())
            sent = set(values)
            consumed = await until(lambda: sent <= set().union(*(m.values() for m in members)), 8)  # noqa: B023
            after = new.assigned_after()
            print(
                f"  kill {kill}: new process assigned {new.partitions()} after "
                f"{'never' if after is None else f'{after:.1f} s'}; others {[m.partitions() for m in members[1:]]}; "
                f"8 new records {'consumed' if consumed is not None else 'NOT all consumed'}; "
                f"the group lists {await group_members(bootstrap, group)} members",
                flush=True,
            )
    finally:
        await producer.stop()
        for child in members:
            await child.stop()


async def main(names: list[str]) -> None:
    from harness.services import LocalServices
    from runtime import kafka
    from schemas.config import KafkaSettings

    with tempfile.TemporaryDirectory() as tmp:
        services = LocalServices(Path(tmp))
        bootstrap = await services.start_kafka()
        try:
            await kafka.ensure_topics(KafkaSettings(bootstrap_servers=bootstrap, partitions=4))
            for name in names:
                await variant(bootstrap, name, Path(tmp))
        finally:
            services.stop_kafka()


VARIANTS = ["dynamic", "static", "member-id", "assign", "dynamic-2", "static-2", "member-id-2"]

if __name__ == "__main__":
    if sys.argv[1:2] == ["--member"]:
        bootstrap, mode, group, options = sys.argv[2:6]
        asyncio.run(member(bootstrap, mode, group, json.loads(options)))
    else:
        asyncio.run(main(sys.argv[1:] or VARIANTS))
