"""The delta reader: Graph delta rounds for users and groups, normalised onto graph.changes.

Delta pages are sent through the SDK's request builders (auth, retries, error mapping) but parsed
as raw JSON, because model parsing costs ~3.6 ms per object (reference/graph-sdk.md §5).
The pure core (merge_items, normalise) turns a round's items into change records; DeltaReader is
the edge that reads cursors, publishes records, and only then saves the next cursor, so a crash
re-reads a round instead of losing one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.request_information import RequestInformation
from msgraph import GraphServiceClient
from msgraph.generated.groups.delta.delta_request_builder import DeltaRequestBuilder as GroupsDeltaRequestBuilder
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder as UsersDeltaRequestBuilder

from ingest.graph_client import describe_graph_error
from ingest.metrics import DELTA_CHANGES, DELTA_PAGES, RECORDS, THROTTLED
from ingest.round_spool import RoundSpool
from runtime import kafka
from schemas import topics
from schemas.active import ActiveConfiguration
from schemas.changes import ChangeRecord, DeltaCursor, GroupChanged, GroupRemoved, MemberRef, UserChanged, UserRemoved
from schemas.config import KafkaSettings
from schemas.graph import GROUP_SELECT
from schemas.status import INGEST_KEY, DeltaRoundFailure, DeltaRoundReport, IngestStatus, ResourceRounds

log = logging.getLogger(__name__)

DeltaResource = Literal["users", "groups"]
# Users first: a groups round can then resolve its members against users already published.
RESOURCES: tuple[DeltaResource, ...] = ("users", "groups")
USER_SELECT = [
    "id",
    "displayName",
    "userPrincipalName",
    "mail",
    "onPremisesObjectIdentifier",
    "onPremisesSecurityIdentifier",
    "onPremisesImmutableId",
    "onPremisesSyncEnabled",
    "accountEnabled",
]
# Ingest's own attributes; the groups' $select adds what the active configuration references (group_select).
SELECT: dict[DeltaResource, list[str]] = {"users": USER_SELECT, "groups": GROUP_SELECT}
ERROR_MAP: dict[str, Any] = {"XXX": ODataError}
# Error codes after which a delta token or page token cannot continue: only a full round helps.
RESYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired", "Directory_ExpiredPageToken"})
# Our own retries of a throttled page, after the SDK's retry middleware has given up.
MAX_THROTTLED_ATTEMPTS = 10
DEFAULT_RETRY_AFTER = 5.0
MEMBERS_DELTA = "members@delta"  # a group's member changes in a delta item
PROGRESS_SECONDS = 5.0  # how often a long round logs how far it got
PUBLISH_BATCH = 500  # objects of a round normalised and published together (acknowledged before the next)


class DeltaProtocolError(RuntimeError):
    """A delta page that is neither followed by a nextLink nor closed by a deltaLink."""


@dataclass(frozen=True)
class DeltaRound:
    """One finished delta round: its items (spooled, see ingest/round_spool.py) and where the next round starts."""

    resource: DeltaResource
    spool: RoundSpool
    delta_link: str
    full_round: bool
    started_from: str | None  # the delta link the round read from (None: a full round)

    def merged(self, batch: int) -> Iterator[list[dict[str, Any]]]:
        """The merged items (merge_items), `batch` objects at a time: what is held while they are published."""
        objects = (item for parts in self.spool.objects() for item in merge_items(parts))
        while chunk := list(itertools.islice(objects, batch)):
            yield chunk

    @property
    def items(self) -> list[dict[str, Any]]:
        """Every merged item at once (a small round's, or a test's)."""
        return [item for chunk in self.merged(1000) for item in chunk]

    @property
    def round_from(self) -> str | None:
        """The records' round_from: a digest of the token, not the token (a credential of sorts)."""
        if self.started_from is None:
            return None
        return hashlib.sha256(self.started_from.encode()).hexdigest()[:16]


# -- pure core --------------------------------------------------------------------------------


def merge_items(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge a round's items by object id, in first-seen order.

    Graph splits a large group's members@delta over several items, on any page; their members are
    concatenated in order. A later item that carries properties without @removed means the
    object came back within the round, so it clears an earlier @removed.
    """
    merged: dict[str, dict[str, Any]] = {}
    for item in items:
        object_id = str(item["id"])
        into = merged.setdefault(object_id, {"id": object_id})
        for name, value in item.items():
            if name == MEMBERS_DELTA:
                into.setdefault(MEMBERS_DELTA, []).extend(value or [])
            elif name != "id":
                into[name] = value
        if "@removed" not in item and _properties(item):
            into.pop("@removed", None)
    return list(merged.values())


def normalise(
    resource: DeltaResource,
    items: Iterable[dict[str, Any]],
    *,
    full_round: bool,
    observed_at: dt.datetime,
    round_from: str | None = None,
    selected: Sequence[str] = (),
) -> list[ChangeRecord]:
    """Change records for a round's merged items (see schemas.changes).

    An item of a full round is the whole object: an attribute `selected` names that it lacks is
    null, and its record says so. The processors then tell an attribute Graph has no value for
    from one that was never read (an attribute a new configuration just added to the $select).
    """
    records: list[ChangeRecord] = []
    unread = dict.fromkeys(name for name in selected if name not in ("id", "members")) if full_round else {}
    stamp = {"observed_at": observed_at, "full_round": full_round, "round_from": round_from}
    for item in items:
        object_id = str(item["id"])
        removed = item.get("@removed")
        if removed is not None:
            # Graph documents "changed" (soft delete, restorable) and "deleted" (permanent); anything
            # else is taken as the restorable kind rather than destroying state on a guess.
            reason: Literal["changed", "deleted"] = "deleted" if _reason(removed) == "deleted" else "changed"
            removed_type = GroupRemoved if resource == "groups" else UserRemoved
            records.append(removed_type(id=object_id, reason=reason, **stamp))
        elif resource == "groups":
            added, gone = member_changes(item.get(MEMBERS_DELTA) or [])
            records.append(
                GroupChanged(
                    id=object_id,
                    **stamp,
                    attributes={**unread, **_properties(item)},
                    members_added=added,
                    members_removed=gone,
                    members_complete=full_round,
                )
            )
        else:
            records.append(UserChanged(id=object_id, attributes={**unread, **_properties(item)}, **stamp))
    return records


def member_changes(members_delta: Iterable[dict[str, Any]]) -> tuple[list[MemberRef], list[MemberRef]]:
    """(added, removed) members; when a member appears twice in a round its last entry wins."""
    last: dict[str, dict[str, Any]] = {}
    for entry in members_delta:
        last[str(entry["id"])] = entry
    added = [MemberRef.from_odata(e) for e in last.values() if "@removed" not in e]
    removed = [MemberRef.from_odata(e) for e in last.values() if "@removed" in e]
    return added, removed


def group_select(active: ActiveConfiguration | None) -> list[str]:
    """The groups delta $select: ingest's own attributes, then the ones the active configuration's
    scope and mappings reference (directory extensions among them), each once, in that order.

    Without an active configuration, GROUP_SELECT: what the file's own job references can only be
    computed by the processors' expression parser, and they publish it as the first configuration.
    """
    extra = active.graph_group_attributes if active is not None else []
    return list(dict.fromkeys([*GROUP_SELECT, *extra]))


def continues_from(resource: DeltaResource, cursor: DeltaCursor | None, select: Sequence[str]) -> str | None:
    """The delta link a round of `select` continues from; None (a full round) without a cursor, or
    when the cursor was taken with another set of attributes: Graph answers a delta link with the
    $select its full round asked for, so attributes newly selected arrive only with a full round."""
    if cursor is None:
        return None
    taken_with = cursor.select if cursor.select is not None else SELECT[resource]
    return cursor.delta_link if set(taken_with) == set(select) else None


def needs_full_round(exc: BaseException) -> bool:
    """Graph's answer to an expired or unknown delta token: 410 Gone, or one of the resync codes."""
    if not isinstance(exc, APIError):
        return False
    code = getattr(getattr(exc, "error", None), "code", None)
    return exc.response_status_code == 410 or code in RESYNC_CODES


def _properties(item: dict[str, Any]) -> dict[str, Any]:
    # Annotations (@odata.type, @removed, members@delta, …) all contain "@"; properties never do.
    return {name: value for name, value in item.items() if name != "id" and "@" not in name}


def _reason(removed: Any) -> str | None:
    return removed.get("reason") if isinstance(removed, dict) else None


# -- reading a round --------------------------------------------------------------------------


async def read_round(
    client: GraphServiceClient,
    resource: DeltaResource,
    delta_link: str | None,
    *,
    select: Sequence[str] | None = None,
    page_size: int | None = None,
) -> DeltaRound:
    """Read one delta round from delta_link, or a full round when there is none or Graph refuses it.

    `select` is a full round's $select (default: ingest's own, SELECT); a delta link carries its own.
    """
    select = SELECT[resource] if select is None else select
    if delta_link is not None:
        try:
            return await _read_pages(client, resource, delta_link, select, page_size)
        except APIError as exc:
            if not needs_full_round(exc):
                raise
            log.warning("%s delta token refused (%s): running a full round", resource, describe_graph_error(exc))
    return await _read_pages(client, resource, None, select, page_size)


async def _read_pages(
    client: GraphServiceClient,
    resource: DeltaResource,
    delta_link: str | None,
    select: Sequence[str],
    page_size: int | None,
) -> DeltaRound:
    builder = _builder(client, resource)

    def first_page() -> RequestInformation:
        if delta_link is not None:
            return builder.with_url(delta_link).to_get_request_information()
        return builder.to_get_request_information(_select_configuration(resource, select))

    make_request: Callable[[], RequestInformation] = first_page
    spool = RoundSpool()
    pages = members = 0
    loop = asyncio.get_running_loop()
    told_at = loop.time()
    try:
        while True:
            page = await send_page(client, make_request, page_size)
            pages += 1
            DELTA_PAGES.labels(resource).inc()
            values = page.get("value") or []
            spool.add(values)
            members += sum(len(item.get(MEMBERS_DELTA) or ()) for item in values)
            if loop.time() - told_at >= PROGRESS_SECONDS:
                # A full round of a large tenant takes minutes: whoever watches ingest sees it advance.
                told_at = loop.time()
                log.info(
                    "%s delta round: %d pages, %d objects, %d member changes read so far",
                    resource,
                    pages,
                    spool.count,
                    members,
                )
            if next_link := page.get("@odata.nextLink"):
                make_request = follow(builder, next_link)
                continue
            if new_delta_link := page.get("@odata.deltaLink"):
                log.debug("%s delta round: %d items on %d pages", resource, spool.count, pages)
                return DeltaRound(
                    resource, spool, new_delta_link, full_round=delta_link is None, started_from=delta_link
                )
            raise DeltaProtocolError(f"{resource} delta page {pages} has neither @odata.nextLink nor @odata.deltaLink")
    except BaseException:
        spool.close()  # a failed round's items go with it
        raise


async def read_first_page(client: GraphServiceClient, resource: DeltaResource) -> list[dict[str, Any]]:
    """The first page (at most one item) of a full delta round with e2ad's $select: what `e2ad check` reads."""
    builder = _builder(client, resource)
    page = await send_page(
        client,
        lambda: builder.to_get_request_information(_select_configuration(resource, SELECT[resource])),
        page_size=1,
    )
    return page.get("value") or []


def _builder(client: GraphServiceClient, resource: DeltaResource) -> Any:
    return client.groups.delta if resource == "groups" else client.users.delta


def _select_configuration(resource: DeltaResource, select: Sequence[str]) -> RequestConfiguration[Any]:
    if resource == "groups":
        group_params = GroupsDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=list(select))
        return RequestConfiguration(query_parameters=group_params)
    user_params = UsersDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=list(select))
    return RequestConfiguration(query_parameters=user_params)


def follow(builder: Any, link: str) -> Callable[[], RequestInformation]:
    # Paging links are absolute and carry the whole query (with_url ignores query parameters).
    return lambda: builder.with_url(link).to_get_request_information()


async def send_page(
    client: GraphServiceClient, make_request: Callable[[], RequestInformation], page_size: int | None
) -> dict[str, Any]:
    """One page as raw JSON. A page still throttled after the SDK's retries waits Retry-After and
    is asked again, so a busy tenant slows a round down instead of failing it."""
    attempt = 1
    while True:
        request = make_request()  # fresh each time: the auth provider stamps its token on the request
        if page_size is not None:
            request.headers.try_add("Prefer", f"odata.maxpagesize={page_size}")
        try:
            raw = await client.request_adapter.send_primitive_async(request, "bytes", ERROR_MAP)
        except APIError as exc:
            if exc.response_status_code != 429 or attempt >= MAX_THROTTLED_ATTEMPTS:
                raise
            THROTTLED.inc()
            delay = _retry_after(exc)
            log.warning("Graph throttled a delta page (attempt %d): retrying in %.1f s", attempt, delay)
            await asyncio.sleep(delay)
            attempt += 1
            continue
        page = json.loads(raw or b"{}")
        if not isinstance(page, dict):
            raise DeltaProtocolError(f"delta page is {type(page).__name__}, not a JSON object")
        return page


def _retry_after(exc: APIError) -> float:
    value = (exc.response_headers or {}).get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else DEFAULT_RETRY_AFTER
    except ValueError:  # an HTTP date: rare from Graph, a fixed pause is good enough
        return DEFAULT_RETRY_AFTER


# -- the edge: cursors in, records out --------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DeltaReader:
    """Runs delta rounds and publishes them: records to graph.changes, then the cursor to graph.cursors."""

    def __init__(
        self,
        client: GraphServiceClient,
        kafka_settings: KafkaSettings,
        *,
        page_size: int | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._client = client
        self._kafka = kafka_settings
        self._page_size = page_size
        self._clock = clock
        self._cursors: dict[str, DeltaCursor] = {}
        self._select: dict[DeltaResource, list[str]] = dict(SELECT)
        self._producer: AIOKafkaProducer | None = None
        # What each resource's rounds did, for e2ad.status (`e2ad status`): the worker publishes it.
        self.rounds: dict[DeltaResource, ResourceRounds] = {resource: ResourceRounds() for resource in RESOURCES}
        self._reading: DeltaResource | None = None  # the resource whose part of the round runs now

    @property
    def cursors(self) -> dict[str, str]:
        """The delta link each resource's next round starts from."""
        return {resource: cursor.delta_link for resource, cursor in self._cursors.items()}

    def select_groups(self, select: list[str]) -> bool:
        """The $select of the groups' rounds from now on; True when the set of attributes changed.

        A cursor taken with another set is not continued: the next groups round is a full one.
        """
        changed = set(select) != set(self._select["groups"])
        self._select["groups"] = list(select)
        return changed

    async def start(self) -> None:
        for value in (await kafka.read_latest(self._kafka, topics.GRAPH_CURSORS)).values():
            cursor = topics.decode(DeltaCursor, value)
            self._cursors[cursor.resource] = cursor
        log.info("delta cursors loaded for %s", ", ".join(sorted(self._cursors)) or "no resource (full rounds)")
        self._producer = kafka.producer(self._kafka)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> DeltaReader:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def run_round(self) -> int:
        """A delta round for users, then groups: their records published, PUBLISH_BATCH objects at a time,
        then each resource's cursor saved. Returns how many records were published."""
        published = 0
        for resource in RESOURCES:
            self._reading = resource
            select = self._select[resource]
            delta_round = await read_round(
                self._client, resource, self._continues_from(resource, select), select=select, page_size=self._page_size
            )
            observed_at, changes = self._clock(), 0
            try:
                for items in delta_round.merged(PUBLISH_BATCH):
                    records = normalise(
                        resource,
                        items,
                        full_round=delta_round.full_round,
                        selected=select,
                        observed_at=observed_at,
                        round_from=delta_round.round_from,
                    )
                    await self._publish(records)
                    changes += len(records)
            finally:
                delta_round.spool.close()
            await self._save_cursor(resource, delta_round.delta_link, select)
            self.rounds[resource].last_success = DeltaRoundReport(
                at=self._clock(), full_round=delta_round.full_round, changes=changes
            )
            log.info("%s delta round%s: %d changes", resource, " (full)" if delta_round.full_round else "", changes)
            published += changes
        self._reading = None
        return published

    def note_failure(self, error: str) -> None:
        """The round that run_round raised from failed: noted on the resource it was reading, in words."""
        if self._reading is not None:
            self.rounds[self._reading].last_failure = DeltaRoundFailure(at=self._clock(), error=error)
            self._reading = None

    async def forget_cursors(self) -> None:
        """Restart sync: tombstone every resource's cursor, so the next round of each is a full one.

        The tombstones are acknowledged before the cursors are forgotten here, so a crash before
        that round does not bring the old cursors back.
        """
        producer = self._started()
        sent = [await producer.send(topics.GRAPH_CURSORS, None, key=topics.key(resource)) for resource in RESOURCES]
        await asyncio.gather(*sent)
        self._cursors.clear()

    async def _publish(self, records: list[ChangeRecord]) -> None:
        producer = self._started()
        sent = [
            await producer.send(topics.GRAPH_CHANGES, topics.encode(record), key=topics.key(record.id))
            for record in records
        ]
        await asyncio.gather(*sent)  # every record acknowledged before the cursor moves on
        RECORDS.labels(topics.GRAPH_CHANGES, "out").inc(len(records))
        for record in records:
            DELTA_CHANGES.labels(record.kind).inc()

    async def publish_status(self, status: IngestStatus) -> None:
        await self._started().send_and_wait(topics.STATUS, topics.encode(status), key=topics.key(INGEST_KEY))

    def _continues_from(self, resource: DeltaResource, select: list[str]) -> str | None:
        cursor = self._cursors.get(resource)
        delta_link = continues_from(resource, cursor, select)
        if cursor is not None and delta_link is None:
            taken_with = set(cursor.select if cursor.select is not None else SELECT[resource])
            log.info(
                "%s $select changed since the cursor was taken (added: %s; dropped: %s): a full round",
                resource,
                ", ".join(a for a in select if a not in taken_with) or "none",
                ", ".join(sorted(taken_with - set(select))) or "none",
            )
        return delta_link

    async def _save_cursor(self, resource: DeltaResource, delta_link: str, select: list[str]) -> None:
        # A delta link keeps the $select of the full round it descends from: the one asked for now.
        cursor = DeltaCursor(resource=resource, delta_link=delta_link, saved_at=self._clock(), select=select)
        await self._started().send_and_wait(topics.GRAPH_CURSORS, topics.encode(cursor), key=topics.key(resource))
        self._cursors[resource] = cursor

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("DeltaReader.start() must run before a round")
        return self._producer
