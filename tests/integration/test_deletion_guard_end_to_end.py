"""The deletion guard end to end (issue 12, "Tests"): Graph stand-in → ingest → processors → writer → Samba DC.

The three stages run as the `e2ad ingest|process|write` processes an operator starts, on the real
broker, with threshold 500 as in production; the window is scaled down to WINDOW seconds. The
operator's controls are the real command line (`e2ad deletes list|approve|reject`, `e2ad restart`)
run as processes with the pipeline's settings, and the trip's e-mail goes to a real SMTP server.

One pipeline, one tenant, in order:
1. DOOMED + KEPT groups (and a canary, a marker) reach AD. In one delta round DOOMED are deleted,
   half soft, half hard, and the canary is created: the canary reaches AD, nothing is deleted in AD
   past the window, 600 are staged (`deletes list`, StagedDelete results), one e-mail, quarantined.
2. `deletes approve --all`: the 600 are deleted in AD, the processors run again, nothing is staged.
3. KEPT leave the scope in one round (mailEnabled): held the same way. `e2ad restart`: a full delta
   round runs, the quarantine ends, the staged deletes are dropped and the AD groups stay.
4. KEPT come back into scope and leave it again: held again. The stages and the broker are stopped
   (stages first: the embedded broker drops writes acknowledged during its own shutdown) and started
   again: still staged, still quarantined. `deletes reject --all`: the AD groups stay, running.
5. 499 of those groups deleted in Entra in one round: below the threshold, every one is deleted in
   AD, each after the window.

Delta rounds run on the timer (graph.delta_interval_seconds), not on change notifications: a
change that reaches AD proves what it needs to without 1,200 webhook deliveries on a 2-core host.
A block of tenant mutations with no await in between is read by one delta round: the stand-in
serves its pages from the same event loop, and computes a round's pages at its first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.pipeline import Pipeline
from harness.services import LocalServices
from harness.standin import GraphStandin, running_standin
from processors.app import TICK_SECONDS
from schemas import topics
from schemas.changes import CHANGE_RECORD, GroupChanged, GroupRemoved
from schemas.config import (
    AdSettings,
    DeleteSettings,
    EmailSettings,
    KafkaSettings,
    NotificationSettings,
    Settings,
)
from schemas.desired import DesiredGroup, anchor_of
from schemas.results import ProvisioningResult
from schemas.status import ProcessorStatus
from tests.integration.helpers import anchors_in_ad, committed, end_offsets, full_rounds, pipeline_settings, read_group
from tests.integration.smtp import Inbox, running_inbox
from tests.integration.stages import TopicWatcher, e2ad
from tests.polling import until

pytestmark = pytest.mark.integration

THRESHOLD = 500
WINDOW = 3.0
DOOMED = 600  # deleted in one round: half soft, half hard
KEPT = 520  # leave the scope in one round, twice
QUARANTINED = "delete threshold exceeded"
OUT_OF_SCOPE = "out of scope: mail-enabled groups are not provisioned"
# Generous: the DC is shared, and this host has 2 cores for the DC, the broker and three stages.
AD_TIMEOUT = 240.0
TIMEOUT = 120.0


def processor_status(value: bytes | None) -> ProcessorStatus | None:
    """The processors' record on e2ad.status; None for the writers' records on the same topic."""
    if value is None:
        return None
    try:
        return ProcessorStatus.model_validate_json(value)
    except ValidationError:
        return None


class Observed:
    """Watchers of the topics the test reads, from their beginnings."""

    def __init__(self, kafka_settings: KafkaSettings) -> None:
        self.desired = TopicWatcher(kafka_settings, topics.AD_DESIRED, DesiredGroup.model_validate_json)
        self.results = TopicWatcher(kafka_settings, topics.AD_RESULTS, ProvisioningResult.model_validate_json)
        self.status = TopicWatcher(kafka_settings, topics.STATUS, processor_status)
        self.changes = TopicWatcher(kafka_settings, topics.GRAPH_CHANGES, CHANGE_RECORD.validate_json)
        self._all = [self.desired, self.results, self.status, self.changes]
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Observed:
        for watcher in self._all:
            await self._stack.enter_async_context(watcher)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def until(self, condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        """Read what every topic has now, then ask the condition; until it holds."""

        async def check() -> Any:
            for watcher in self._all:
                await watcher.collect(0.1)
            return condition()

        return await until(check, what, timeout=timeout, interval=0)

    def statuses(self, after: dt.datetime) -> list[ProcessorStatus]:
        return [s for s in self.status.seen if s is not None and s.updated_at > after]

    def staged_results(self, ids: set[str]) -> list[ProvisioningResult]:
        return [r for r in self.results.seen if r.action == "StagedDelete" and r.group_id in ids]

    def absent(self, ids: set[str]) -> list[DesiredGroup]:
        return [d for d in self.desired.seen if d.state == "absent" and d.group_id in ids]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Scenario:
    """The test's moving parts: the tenant, AD, the pipeline and what its topics say."""

    def __init__(
        self,
        standin: GraphStandin,
        settings: Settings,
        ad_admin: Any,
        ou: str,
        inbox: Inbox,
        log_dir: Path,
        measured: Callable[[str], None],
    ) -> None:
        self.standin = standin
        self.tenant = standin.tenant
        self.settings = settings
        self.ad_admin = ad_admin
        self.ou = ou
        self.inbox = inbox
        self.log_dir = log_dir
        self.measured = measured
        self.marker = ""
        self._markers = 0
        self._started = time.monotonic()

    def took(self, what: str) -> None:
        self.measured(f"deletion guard end to end: {what} at {time.monotonic() - self._started:.1f} s")

    async def deletes(self) -> list[dict[str, Any]]:
        """`e2ad deletes list --json`: what is staged on ad.staged-deletes now."""
        return json.loads(await e2ad(self.settings, "deletes", "list", "--json"))

    async def anchors(self) -> set[str]:
        return await asyncio.to_thread(anchors_in_ad, self.ad_admin, self.ou)

    async def in_ad(self, condition: Callable[[set[str]], bool], what: str, timeout: float = AD_TIMEOUT) -> None:
        async def check() -> bool:
            return condition(await self.anchors())

        await until(check, what, timeout=timeout, interval=1.0)

    async def writers_caught_up(self, observed: Observed, after: dt.datetime | None = None) -> None:
        """Wait past `after` (the processors' clock, this host's: a held delete is released by time
        alone), then change the marker group and wait until AD has it and the writers have
        committed everything on ad.desired up to it; read ad.desired to its end.

        The release timer asks for its turn every tick and turns are taken in order, so once the
        marker's state is on ad.desired, a tick two ticks past `after` has run before it and what
        it released is on ad.desired too; the writers' commit then covers it.
        """
        if after is not None:
            ticked = after + dt.timedelta(seconds=2 * TICK_SECONDS)
            await until(lambda: now() >= ticked, f"the clock to pass {ticked}", timeout=WINDOW + 60, interval=0.1)
        self._markers += 1
        description = f"marker {self._markers}"
        self.tenant.update_group(self.marker, description=description)
        await until(
            lambda: (
                (g := read_group(self.ad_admin, self.ou, anchor_of(self.marker))) and g["description"] == [description]
            ),
            f"the marker's change {description!r} in AD",
            timeout=TIMEOUT,
            interval=0.5,
        )
        kafka_settings = self.settings.kafka
        end = await end_offsets(kafka_settings, topics.AD_DESIRED)

        async def committed_to_end() -> bool:
            return await committed(kafka_settings) >= end

        await until(committed_to_end, f"the writers to commit ad.desired up to {end}", timeout=TIMEOUT, interval=0.5)
        await observed.desired.read_to_end()


@contextlib.asynccontextmanager
async def running(settings: Settings, log_dir: Path) -> AsyncIterator[tuple[Pipeline, Observed]]:
    async with (
        Pipeline(settings, log_dir=log_dir) as pipeline,
        Observed(settings.kafka) as observed,
    ):
        yield pipeline, observed


async def test_bursts_of_deletes_are_held_in_ad_until_approved_rejected_or_restarted(
    kafka_settings: KafkaSettings,
    ad_settings: AdSettings,
    test_ou: str,
    ad_admin: Any,
    tmp_path: Path,
    measured: Callable[[str], None],
) -> None:
    with running_inbox() as (inbox, smtp_port):
        async with running_standin() as standin:
            settings = pipeline_settings(
                standin,
                kafka_settings,
                ad_settings,
                test_ou,
                tmp_path / "state",
                deletes=DeleteSettings(threshold=THRESHOLD, window_seconds=WINDOW),
                notifications=NotificationSettings(
                    email=EmailSettings.model_validate(
                        {
                            "smtp_host": "127.0.0.1",
                            "smtp_port": smtp_port,
                            "security": "none",
                            "from": "e2ad <e2ad@corp.example>",
                            "to": ["identity-admins@corp.example"],
                        }
                    )
                ),
            )
            scenario = Scenario(standin, settings, ad_admin, test_ou, inbox, tmp_path / "logs", measured)
            await _scenario(scenario, tmp_path)


async def _scenario(s: Scenario, tmp_path: Path) -> None:
    tenant = s.tenant
    doomed = [tenant.add_group(f"Doomed {n:04d}").object_id for n in range(DOOMED)]
    kept = [tenant.add_group(f"Kept {n:04d}").object_id for n in range(KEPT)]
    s.marker = tenant.add_group("Marker").object_id
    doomed_ids, kept_ids = set(doomed), set(kept)
    doomed_anchors, kept_anchors = {anchor_of(g) for g in doomed}, {anchor_of(g) for g in kept}

    async with running(s.settings, s.log_dir) as (pipeline, observed):
        # -- 1. every group in AD, then 600 deletes and a canary in one round -------------------
        await s.in_ad(lambda found: doomed_anchors | kept_anchors <= found, f"the {DOOMED + KEPT} groups in AD")
        s.took(f"{DOOMED + KEPT} groups created in AD")

        tripped_after = now()
        for n, group_id in enumerate(doomed):
            (tenant.soft_delete_group if n % 2 else tenant.hard_delete_group)(group_id)
        canary = tenant.add_group("Canary").object_id

        await until(
            lambda: read_group(s.ad_admin, s.ou, anchor_of(canary)), "the canary in AD", timeout=TIMEOUT, interval=0.5
        )
        s.took("canary created in AD (600 deletes in the same round)")
        first = await observed.until(
            lambda: (
                len(observed.staged_results(doomed_ids)) >= DOOMED
                and next(
                    (x for x in observed.statuses(tripped_after) if x.state == "quarantined" and x.staged == DOOMED),
                    None,
                )
            ),
            f"{DOOMED} StagedDelete results and a quarantined status with {DOOMED} staged",
        )
        assert first.reason == QUARANTINED
        # The burst as counted when it tripped (at the threshold-th delete); the rest were staged on arrival.
        assert first.burst_deletes is not None and first.burst_deletes >= THRESHOLD
        assert (first.threshold, first.pending) == (THRESHOLD, 0)
        staged_results = observed.staged_results(doomed_ids)
        assert len(staged_results) == DOOMED and {r.group_id for r in staged_results} == doomed_ids
        assert all(r.status == "skipped" for r in staged_results)
        removals = [c for c in observed.changes.seen if isinstance(c, GroupRemoved) and c.id in doomed_ids]
        rounds = {c.round_from for c in removals}
        assert len(rounds) == 1 and None not in rounds, f"the 600 deletes were read by more than one round: {rounds}"
        assert len(removals) == DOOMED and sum(c.reason == "changed" for c in removals) == DOOMED // 2

        listed = await s.deletes()
        assert len(listed) == DOOMED and {item["group_id"] for item in listed} == doomed_ids
        reasons = [item["reason"] for item in listed]
        assert (reasons.count("deleted in Entra"), reasons.count("soft-deleted in Entra")) == (300, 300)

        await until(lambda: len(s.inbox.received) >= 1, "the first trip's e-mail", timeout=60)
        s.took("first trip: staged, quarantined, e-mail received")
        message = s.inbox.received[0]
        assert message["Subject"] == f"e2ad: {DOOMED} group deletes held: {QUARANTINED}"
        body = message.get_content()
        assert f"{DOOMED} are staged" in body
        assert "e2ad deletes approve --all" in body

        # Past the window (and the trip's e-mail): no delete reached ad.desired, none left AD.
        last_arrival = max(dt.datetime.fromisoformat(item["arrived_at"]) for item in listed)
        await s.writers_caught_up(observed, after=last_arrival + dt.timedelta(seconds=WINDOW))
        assert observed.absent(doomed_ids) == [], "a held delete reached ad.desired"
        assert doomed_anchors | kept_anchors <= await s.anchors(), "a held delete was applied in AD"
        s.took("nothing deleted past the window")

        # -- 2. approve: all 600 deleted in AD -------------------------------------------------
        approved_at = now()
        output = await e2ad(s.settings, "deletes", "approve", "--all")
        assert output.startswith("sent approve-deletes") and f"release {DOOMED} staged deletes" in output, output
        await s.in_ad(lambda found: not (doomed_anchors & found), f"the {DOOMED} approved deletes applied in AD")
        s.took("600 approved deletes applied in AD")
        await observed.until(
            lambda: any(x.state == "running" and x.staged == 0 for x in observed.statuses(approved_at)),
            "the processors running again after the approval",
        )
        assert await s.deletes() == []
        assert kept_anchors | {anchor_of(canary)} <= await s.anchors()

        # -- 3. KEPT leave the scope in one round: held; `e2ad restart` ends the quarantine ----------
        second_at = now()
        for group_id in kept:
            tenant.update_group(group_id, mailEnabled=True)
        second = await _held(s, observed, kept_ids, second_at, emails=2)
        assert second.since is not None and first.since is not None and second.since > first.since
        s.took("second trip (scope change): staged, quarantined, e-mail received")

        rounds_before = full_rounds(s.standin)
        restarted_at = now()
        output = await e2ad(s.settings, "restart")
        assert output.startswith("sent restart"), output
        await observed.until(
            lambda: any(
                isinstance(c, GroupChanged) and c.id == s.marker and c.full_round and c.observed_at > restarted_at
                for c in observed.changes.seen
            ),
            "the marker read again by the restart's full round",
        )
        assert full_rounds(s.standin) > rounds_before
        await observed.until(
            lambda: any(x.state == "running" and x.staged == 0 for x in observed.statuses(restarted_at)),
            "the processors' quarantine cleared by the restart",
        )
        assert await s.deletes() == []
        await s.writers_caught_up(observed)
        assert kept_anchors <= await s.anchors(), "a delete the restart dropped was applied"
        assert observed.absent(kept_ids) == []
        s.took("restart: full round, quarantine cleared, the groups stay")

        # -- 4. KEPT back in scope and out again: held; stages and broker restarted ---------------
        back_from = len(observed.desired.seen)
        for group_id in kept:
            tenant.update_group(group_id, mailEnabled=False)
        await observed.until(
            lambda: kept_ids <= {d.group_id for d in observed.desired.seen[back_from:] if d.state == "present"},
            f"the {KEPT} groups back in scope on ad.desired",
        )
        third_at = now()
        for group_id in kept:
            tenant.update_group(group_id, mailEnabled=True)
        await _held(s, observed, kept_ids, third_at, emails=3)
        s.took("third trip: staged, quarantined, e-mail received")
        assert pipeline.exited() == {}, "a stage died; see its log"

    # Every stage has exited (the block has ended): only now the broker.
    settings = await _restart_broker(s, tmp_path)
    s.took("stages and broker stopped and started again")
    listed = await s.deletes()  # read from the restarted broker, before the processors start
    assert {item["group_id"] for item in listed} == kept_ids
    assert {item["reason"] for item in listed} == {OUT_OF_SCOPE}

    restarted_at = now()
    async with running(settings, s.log_dir) as (pipeline, observed):
        again = await observed.until(
            lambda: next(iter(observed.statuses(restarted_at)), None), "the processors' status after their restart"
        )
        assert (again.state, again.reason, again.staged, again.pending) == ("quarantined", QUARANTINED, KEPT, 0)

        rejected_at = now()
        output = await e2ad(settings, "deletes", "reject", "--all")
        assert output.startswith("sent reject-deletes") and f"({KEPT} staged now)" in output, output
        await observed.until(
            lambda: any(x.state == "running" and x.staged == 0 for x in observed.statuses(rejected_at)),
            "the processors running again after the rejection",
        )
        assert await s.deletes() == []
        last_arrival = max(dt.datetime.fromisoformat(item["arrived_at"]) for item in listed)
        await s.writers_caught_up(observed, after=max(rejected_at, last_arrival + dt.timedelta(seconds=WINDOW)))
        found = await s.anchors()
        assert kept_anchors <= found, "a rejected delete was applied in AD"
        assert not (doomed_anchors & found)
        assert anchor_of(canary) in found
        assert observed.absent(kept_ids) == [], "a held delete of KEPT reached ad.desired"
        assert len(observed.absent(doomed_ids)) == DOOMED  # the approved ones, once each
        s.took("reject after the restart: the groups stay, running")

        # -- 5. 499 of the rejected groups deleted in Entra in one round: below the threshold, all
        # reach AD once the window has passed (a rejected delete keeps the group, not the next one).
        below = kept[: THRESHOLD - 1]
        below_ids, below_anchors = set(below), {anchor_of(g) for g in below}
        deleted_at = now()
        for group_id in below:
            tenant.hard_delete_group(group_id)
        await s.in_ad(lambda found: not (below_anchors & found), f"the {len(below)} deletes below the threshold in AD")
        applied = await observed.until(
            lambda: (
                len(done := [r for r in observed.results.seen if r.action == "delete" and r.group_id in below_ids])
                >= len(below)
                and done
            ),
            f"the {len(below)} delete results",
        )
        assert {r.status for r in applied} == {"success"}
        assert min(r.at for r in applied) >= deleted_at + dt.timedelta(seconds=WINDOW), "a delete did not wait"
        assert [x for x in observed.statuses(deleted_at) if x.state != "running"] == []
        assert kept_anchors - below_anchors <= await s.anchors()
        assert len(s.inbox.received) == 3, "one e-mail per trip"
        assert pipeline.exited() == {}, "a stage died; see its log"
        s.took(f"{len(below)} deletes below the threshold applied in AD")


async def _held(s: Scenario, observed: Observed, ids: set[str], after: dt.datetime, *, emails: int) -> ProcessorStatus:
    """KEPT's deletes held: staged with their results, quarantined, the trip's e-mail; nothing applied."""
    count = len(ids)
    status = await observed.until(
        lambda: (
            len([r for r in observed.staged_results(ids) if r.at > after]) >= count
            and next(
                (x for x in observed.statuses(after) if x.state == "quarantined" and x.staged == count),
                None,
            )
        ),
        f"{count} StagedDelete results and a quarantined status with {count} staged",
    )
    assert status.reason == QUARANTINED and (status.burst_deletes or 0) >= THRESHOLD
    listed = await s.deletes()
    assert {item["group_id"] for item in listed} == ids
    assert {item["reason"] for item in listed} == {OUT_OF_SCOPE}
    await until(lambda: len(s.inbox.received) >= emails, f"e-mail {emails}", timeout=60)
    assert s.inbox.received[emails - 1]["Subject"] == f"e2ad: {count} group deletes held: {QUARANTINED}"
    last_arrival = max(dt.datetime.fromisoformat(item["arrived_at"]) for item in listed)
    await s.writers_caught_up(observed, after=last_arrival + dt.timedelta(seconds=WINDOW))
    assert {anchor_of(g) for g in ids} <= await s.anchors(), "a held delete was applied in AD"
    return status


async def _restart_broker(s: Scenario, tmp_path: Path) -> Settings:
    """Stop the embedded broker and start it again on the same data; the settings that reach it.

    The kafka_settings fixture runs it from tmp_path/"services" and stops what that directory's
    pid file names at the end, the restarted broker included. Another broker
    (E2AD_TEST_KAFKA_BOOTSTRAP) is not ours to restart: then only the stages were restarted.
    """
    if os.environ.get("E2AD_TEST_KAFKA_BOOTSTRAP"):
        return s.settings
    services = LocalServices(tmp_path / "services")
    await asyncio.to_thread(services.stop_kafka)
    bootstrap = await services.start_kafka()
    s.settings = s.settings.model_copy(
        update={"kafka": s.settings.kafka.model_copy(update={"bootstrap_servers": bootstrap})}
    )
    return s.settings
