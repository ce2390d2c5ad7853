"""Benchmark (issue 4): the writer's groups/s next to a plain ldap3 loop doing the same work on the same DC.

Each run does the same workload twice, once through the pipeline (DesiredGroup records
pre-published to ad.desired, one in-process WriterService converging them and publishing
ad.results) and once as the baseline a competent engineer would write without e2ad (one
SAFE_SYNC connection, one add per group with its members, one modify per group for the
churn, no reads). Phase 1 creates the groups with their members, phase 2 swaps some members
of every group. Both variants write the same attribute values and member values (<GUID=…>),
each into its own OU, and both are checked afterwards: every group once, exactly its members.

Usage: .venv/bin/python scripts/bench_writer.py [--groups 1000] [--members 20] [--users 200] [--runs 1]

Needs the machine's Samba AD DC running (`e2ad services up`); starts its own embedded broker.
Exits non-zero only when something went wrong, never because of a low ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import ldap3
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

# The benchmarks' shared pieces, next to this script (its directory is on sys.path).
from pipeline_bench import TREE_DELETE, BenchError, check, search_all

from harness.services import LocalServices
from runtime import kafka
from runtime.logs import configure_logging
from schemas import topics
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings
from schemas.desired import UNIVERSAL_SECURITY_GROUP, DesiredGroup, DesiredMember, anchor_of
from schemas.results import ProvisioningResult
from writers.connection import close, connect
from writers.errors import DirectoryUnavailable
from writers.service import CONSUMER_GROUP, WriterService

T = TypeVar("T")
Variant = Literal["pipeline", "baseline"]
Phase = Literal["create", "churn"]
PHASES: tuple[Phase, ...] = ("create", "churn")

ANCHOR_ATTRIBUTE = "msDS-ExternalDirectoryObjectId"
USER_CLASSES = ["top", "person", "organizationalPerson", "user"]
PARTITIONS = 4
# Bounds, so that a mistyped option cannot fill the shared DC or run for hours.
MAX_GROUPS, MAX_USERS, MAX_RUNS = 20_000, 5_000, 10
# A pipeline phase slower than this many groups/s (plus start-up) is stuck, not slow.
SLOWEST_GROUPS_PER_SECOND = 5
PHASE_GRACE_SECONDS = 60
COMMIT_POLL_SECONDS = 0.1
RESULTS_TIMEOUT_SECONDS = 30  # the results are on ad.results already when this waits for them


@dataclass(frozen=True)
class User:
    dn: str
    guid: uuid.UUID
    entra_id: str  # the Entra object id the desired state carries next to the objectGUID


@dataclass(frozen=True)
class BenchGroup:
    """One group of the workload, with its members before and after the churn."""

    group_id: str
    number: int
    members: tuple[User, ...]
    churned: tuple[User, ...]
    removed: tuple[User, ...]
    added: tuple[User, ...]

    @property
    def cn(self) -> str:
        return f"Bench group {self.number}_{self.group_id[24:]}"

    def desired(self, container: str, members: Sequence[User]) -> DesiredGroup:
        """The whole desired state, with the attributes the default mappings give (processors/mapping.py)."""
        anchor = anchor_of(self.group_id)
        return DesiredGroup(
            group_id=self.group_id,
            anchor=anchor,
            state="present",
            container=container,
            attributes={
                "cn": self.cn,
                "description": f"Benchmark group {self.number}",
                "displayName": f"Bench group {self.number}",
                ANCHOR_ATTRIBUTE: anchor,
                "adminDescription": anchor,
                "groupType": UNIVERSAL_SECURITY_GROUP,
            },
            create_only={"sAMAccountName": f"Group_{self.group_id[24:]}"},
            members=[DesiredMember(type="user", id=u.entra_id, object_guid=str(u.guid)) for u in members],
        )


@dataclass
class Timing:
    seconds: float
    startup_seconds: float = 0.0  # pipeline: writer start until it began the first group

    def rate(self, groups: int) -> float:
        return groups / self.seconds

    def rate_with_startup(self, groups: int) -> float:
        return groups / (self.seconds + self.startup_seconds)


@dataclass
class RunFigures:
    order: tuple[Variant, Variant]
    timings: dict[tuple[Variant, Phase], Timing] = field(default_factory=dict)


def member_value(user: User) -> str:
    return f"<GUID={user.guid}>"


def make_groups(count: int, members: int, churn: int, users: Sequence[User], first_number: int) -> list[BenchGroup]:
    """Group n has the users n … n+members-1 (so users are shared, as in a tenant); churn brings in the next ones."""
    groups = []
    for n in range(count):
        window = [users[(n + i) % len(users)] for i in range(members + churn)]
        current, incoming = window[:members], window[members:]
        removed = tuple(current[:churn])
        groups.append(
            BenchGroup(
                group_id=str(uuid.uuid4()),
                number=first_number + n,
                members=tuple(current),
                churned=tuple(current[churn:] + incoming),
                removed=removed,
                added=tuple(incoming),
            )
        )
    return groups


# -- AD set-up and checks --------------------------------------------------------------------
def add_ou(conn: ldap3.Connection, dn: str) -> str:
    _, result, _, _ = conn.add(dn, "organizationalUnit")
    check(result, f"create {dn}")
    return dn


def tree_delete(conn: ldap3.Connection, dn: str) -> None:
    _, result, _, _ = conn.delete(dn, controls=[TREE_DELETE])
    check(result, f"tree delete {dn}")


def create_users(conn: ldap3.Connection, ou: str, count: int, tag: str) -> list[User]:
    for n in range(count):
        dn = f"CN=bench-user-{n},{ou}"
        # sAMAccountName: unique in the domain and at most 20 characters for users
        _, result, _, _ = conn.add(dn, USER_CLASSES, {"sAMAccountName": f"b{tag}u{n}"})
        check(result, f"create {dn}")
    entries = search_all(conn, ou, "(objectClass=user)", ["objectGUID"])
    by_dn = {e["dn"].lower(): uuid.UUID(bytes_le=e["attributes"]["objectGUID"][0]) for e in entries}
    return [
        User(dn=f"CN=bench-user-{n},{ou}", guid=by_dn[f"CN=bench-user-{n},{ou}".lower()], entra_id=str(uuid.uuid4()))
        for n in range(count)
    ]


def verify(conn: ldap3.Connection, ou: str, groups: Sequence[BenchGroup], phase: Phase, users: Sequence[User]) -> None:
    """Every group of the phase is in `ou` exactly once, with exactly the members the phase wanted."""
    guid_of = {u.dn.lower(): u.guid for u in users}
    found: dict[str, list[frozenset[uuid.UUID]]] = {}
    for entry in search_all(conn, ou, "(objectClass=group)", [ANCHOR_ATTRIBUTE, "member"]):
        attributes = entry["attributes"]
        anchor = attributes[ANCHOR_ATTRIBUTE][0]
        members = frozenset(guid_of.get(dn.lower(), uuid.UUID(int=0)) for dn in attributes.get("member", []))
        found.setdefault(anchor, []).append(members)
    problems = []
    for group in groups:
        wanted = frozenset(u.guid for u in (group.members if phase == "create" else group.churned))
        copies = found.pop(anchor_of(group.group_id), [])
        if len(copies) != 1:
            problems.append(f"{anchor_of(group.group_id)} is in AD {len(copies)} times")
        elif copies[0] != wanted:
            problems.append(f"{anchor_of(group.group_id)} has {len(copies[0] & wanted)} of {len(wanted)} members "
                            f"and {len(copies[0] - wanted)} others")  # fmt: skip
    problems += [f"{anchor} is not part of the workload" for anchor in found]
    if problems:
        raise BenchError(f"{phase} in {ou}: {len(problems)} wrong group(s), e.g. " + "; ".join(problems[:3]))


# -- the baseline: plain ldap3 -----------------------------------------------------------------
def baseline_phase(conn: ldap3.Connection, groups: Sequence[BenchGroup], ou: str, phase: Phase) -> Timing:
    requests: list[tuple[str, Callable[[], tuple[Any, dict[str, Any], Any, Any]]]] = []
    for group in groups:
        dn = f"CN={escape_rdn(group.cn)},{ou}"
        if phase == "create":
            desired = group.desired(ou, group.members)
            attributes = {
                **desired.attributes,
                **desired.create_only,
                "member": [member_value(u) for u in group.members],
            }
            requests.append((dn, functools.partial(conn.add, dn, "group", attributes)))
        else:
            removed = [member_value(u) for u in group.removed]
            added = [member_value(u) for u in group.added]
            changes = {"member": [(ldap3.MODIFY_DELETE, removed), (ldap3.MODIFY_ADD, added)]}
            requests.append((dn, functools.partial(conn.modify, dn, changes)))
    # Only the LDAP calls are timed: the pipeline's figure, too, starts when its records are waiting.
    started = time.perf_counter()
    for dn, request in requests:
        _, result, _, _ = request()
        check(result, f"baseline {phase} {dn}")
    return Timing(time.perf_counter() - started)


# -- the pipeline: ad.desired → WriterService → ad.results -------------------------------------
class Pipeline:
    """A producer onto ad.desired and a reader of ad.results around one writer per phase.

    The embedded broker answers an empty fetch at once, so an assigned, idle consumer spins at
    about 30 % of a core (measured). The reader is therefore paused while the writer works, and
    the end of a phase is seen in the writers' committed offsets, which the writer advances
    only after its results are acknowledged.
    """

    def __init__(self, kafka_settings: KafkaSettings, ad_settings: AdSettings) -> None:
        self.kafka_settings = kafka_settings
        self.ad_settings = ad_settings
        self.producer: AIOKafkaProducer = kafka.producer(kafka_settings)
        self.reader: AIOKafkaConsumer = kafka.consumer(kafka_settings, group_id=None)
        self.admin: AIOKafkaAdminClient = kafka.admin(kafka_settings)
        self.partitions = [TopicPartition(topics.AD_RESULTS, p) for p in range(kafka_settings.partitions)]

    async def __aenter__(self) -> Pipeline:
        await self.producer.start()
        await self.admin.start()
        await self.reader.start()
        self.reader.assign(self.partitions)
        self.reader.pause(*self.partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reader.stop()
        await self.admin.close()
        await self.producer.stop()

    async def phase(self, groups: Sequence[BenchGroup], ou: str, phase: Phase) -> Timing:
        states = [g.desired(ou, g.members if phase == "create" else g.churned) for g in groups]
        # Everything is on ad.desired before the writer starts: the figure is the writer's, not the producer's.
        acks = [
            await self.producer.send(topics.AD_DESIRED, topics.encode(s), key=topics.key(s.group_id)) for s in states
        ]
        ends: dict[TopicPartition, int] = {}
        for sent in await asyncio.gather(*acks):
            tp = TopicPartition(sent.topic, sent.partition)
            ends[tp] = max(ends.get(tp, 0), sent.offset + 1)
        await self.reader.seek_to_end(*self.partitions)
        for tp in self.partitions:  # resolve the end now, before the writer adds results
            await self.reader.position(tp)

        settings = Settings(
            kafka=self.kafka_settings, ad=self.ad_settings, provisioning=ProvisioningSettings(target_container=ou)
        )
        started = time.time()
        service = WriterService(settings, name="bench-writer")
        stop = asyncio.Event()
        await service.start()
        task = asyncio.create_task(service.run(stop))
        try:
            timeout = PHASE_GRACE_SECONDS + len(groups) / SLOWEST_GROUPS_PER_SECOND
            await asyncio.wait_for(self._committed(ends, task), timeout)
        except TimeoutError:
            raise BenchError(f"pipeline {phase}: not done within {timeout:.0f} s; is the DC answering?") from None
        finally:
            stop.set()
            await task
            await service.stop()
        results = await self._results({g.group_id for g in groups})
        failed = [
            r for r in results if r.status == "failure" or r.action != ("create" if phase == "create" else "update")
        ]
        if failed:
            raise BenchError(
                f"pipeline {phase}: {len(failed)} unexpected result(s), e.g. {failed[0].model_dump_json()}"
            )
        # `at` is stamped when a group's result is made; minus its duration, when the writer began it.
        began = min(r.at.timestamp() - r.duration_ms / 1000 for r in results)
        ended = max(r.at.timestamp() for r in results)
        return Timing(ended - began, startup_seconds=began - started)

    async def _committed(self, ends: dict[TopicPartition, int], writer: asyncio.Task[None]) -> None:
        """Return once the writers' group has committed every record of the phase."""
        while True:
            if writer.done():
                writer.result()  # raises what stopped the writer
                raise BenchError("the writer stopped before it had converged every group")
            committed = await self.admin.list_consumer_group_offsets(CONSUMER_GROUP, partitions=list(ends))
            if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items()):
                return
            await asyncio.sleep(COMMIT_POLL_SECONDS)

    async def _results(self, wanted: set[str]) -> list[ProvisioningResult]:
        results: dict[str, ProvisioningResult] = {}
        self.reader.resume(*self.partitions)
        try:
            async with asyncio.timeout(RESULTS_TIMEOUT_SECONDS):
                while len(results) < len(wanted):
                    batches = await self.reader.getmany(timeout_ms=200)
                    for records in batches.values():
                        for record in records:
                            result = topics.decode(ProvisioningResult, record.value)
                            if result.group_id in wanted:
                                results[result.group_id] = result
        except TimeoutError:
            raise BenchError(f"committed, but only {len(results)} of {len(wanted)} results on ad.results") from None
        finally:
            self.reader.pause(*self.partitions)
        return list(results.values())


# -- the runs ------------------------------------------------------------------------------------
def orders(choice: str, runs: int) -> list[tuple[Variant, Variant]]:
    first: list[Variant] = ["pipeline", "baseline"]
    if choice == "baseline":
        first.reverse()
    if choice != "alternate":
        return [(first[0], first[1])] * runs
    # Alternating, because whichever runs second works on a directory that is already bigger.
    return [("pipeline", "baseline") if n % 2 == 0 else ("baseline", "pipeline") for n in range(runs)]


async def one_run(
    number: int,
    order: tuple[Variant, Variant],
    args: argparse.Namespace,
    ad: AdSettings,
    pipeline: Pipeline,
    bench_ou: str,
    users: Sequence[User],
) -> RunFigures:
    figures = RunFigures(order)
    ous = {v: await on_new_connection(ad, add_ou, f"OU={v}-{number},{bench_ou}") for v in order}
    groups = {
        v: make_groups(args.groups, args.members, args.churn, users, first_number=i * args.groups)
        for i, v in enumerate(order)
    }
    try:
        for phase in PHASES:
            for variant in order:
                if variant == "pipeline":
                    timing = await pipeline.phase(groups[variant], ous[variant], phase)
                else:
                    timing = await on_new_connection(ad, baseline_phase, groups[variant], ous[variant], phase)
                figures.timings[variant, phase] = timing
                await on_new_connection(ad, verify, ous[variant], groups[variant], phase, users)
    finally:
        # Every run starts from the same directory size, so that runs are comparable.
        for ou in ous.values():
            await on_new_connection(ad, tree_delete, ou)
    return figures


async def on_new_connection(ad: AdSettings, step: Callable[..., T], *args: object) -> T:
    """One step on its own connection, off the event loop: the DC may have been restarted since the last step."""

    def run() -> T:
        conn = connect(ad)
        try:
            return step(conn, *args)
        finally:
            close(conn)

    return await asyncio.to_thread(run)


def report(number: int, figures: RunFigures, groups: int) -> tuple[float, ...]:
    print(f"run {number} ({figures.order[0]} first)")
    ratios = []
    for phase in PHASES:
        ours, theirs = figures.timings["pipeline", phase], figures.timings["baseline", phase]
        ratio = ours.rate(groups) / theirs.rate(groups)
        ratios.append(ratio)
        print(
            f"  {phase:<6}  pipeline {ours.rate(groups):7.1f} groups/s ({ours.seconds:6.2f} s; "
            f"{ours.rate_with_startup(groups):6.1f}/s with {ours.startup_seconds:.2f} s writer start-up)"
            f"   baseline {theirs.rate(groups):7.1f} groups/s ({theirs.seconds:6.2f} s)   ratio {ratio:.2f}"
        )
    ours_total = sum(figures.timings["pipeline", p].seconds for p in PHASES)
    theirs_total = sum(figures.timings["baseline", p].seconds for p in PHASES)
    overall = theirs_total / ours_total  # same work on both sides: the ratio of rates is that of times
    print(f"  overall ratio {overall:.2f} (pipeline {ours_total:.2f} s, baseline {theirs_total:.2f} s)")
    return (*ratios, overall)


async def bench(args: argparse.Namespace, ad: AdSettings, state_dir: Path) -> int:
    services = LocalServices(state_dir)
    bootstrap = await services.start_kafka()
    kafka_settings = KafkaSettings(bootstrap_servers=bootstrap, partitions=PARTITIONS, client_id="e2ad-bench")
    tag = uuid.uuid4().hex[:6]
    bench_ou = await on_new_connection(ad, add_ou, f"OU=bench-writer-{tag},{ad.base_dn}")
    all_ratios: list[tuple[float, ...]] = []
    try:
        await kafka.ensure_topics(kafka_settings)
        users_ou = await on_new_connection(ad, add_ou, f"OU=users,{bench_ou}")
        users = await on_new_connection(ad, create_users, users_ou, args.users, tag)
        print(
            f"{args.groups} groups × {args.members} members, churn -{args.churn}/+{args.churn} per group, "
            f"{args.users} users; pipeline = one in-process WriterService, {PARTITIONS} partitions"
        )
        async with Pipeline(kafka_settings, ad) as pipeline:
            for number, order in enumerate(orders(args.order, args.runs), start=1):
                figures = await one_run(number, order, args, ad, pipeline, bench_ou, users)
                all_ratios.append(report(number, figures, args.groups))
    finally:
        services.stop_kafka()
        remove_leftovers(ad, bench_ou)
    if len(all_ratios) > 1:
        create, churn, overall = (statistics.median(column) for column in zip(*all_ratios, strict=True))
        print(
            f"median ratio over {len(all_ratios)} runs: create {create:.2f}, churn {churn:.2f}, overall {overall:.2f}"
        )
    return 0


def remove_leftovers(ad: AdSettings, bench_ou: str) -> None:
    """Tree-delete the benchmark's OU on a new connection: the old one may have died with the DC."""
    try:
        conn = connect(ad)
        try:
            tree_delete(conn, bench_ou)
        finally:
            close(conn)
    except Exception as exc:  # reported, not raised: the error that got us here matters more
        print(f"warning: could not remove {bench_ou} ({exc}); remove it with a tree delete", file=sys.stderr)


def ad_settings() -> AdSettings:
    return LocalServices().endpoints(bootstrap="").ad_settings()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000, help=f"groups per variant and run (≤ {MAX_GROUPS})")
    parser.add_argument("--members", type=int, default=20, help="members per group")
    parser.add_argument("--churn", type=int, default=5, help="members removed and added per group in phase 2")
    parser.add_argument("--users", type=int, default=200, help=f"users shared by all groups (≤ {MAX_USERS})")
    parser.add_argument("--runs", type=int, default=1, help=f"repetitions, each printed (≤ {MAX_RUNS})")
    parser.add_argument(
        "--order", choices=("alternate", "pipeline", "baseline"), default="alternate", help="which variant goes first"
    )
    args = parser.parse_args()
    if not (1 <= args.groups <= MAX_GROUPS and 1 <= args.users <= MAX_USERS and 1 <= args.runs <= MAX_RUNS):
        parser.error(f"--groups 1..{MAX_GROUPS}, --users 1..{MAX_USERS}, --runs 1..{MAX_RUNS}")
    if not (1 <= args.churn <= args.members and args.members + args.churn <= args.users):
        parser.error("need 1 ≤ --churn ≤ --members and --members + --churn ≤ --users")
    return args


def main() -> None:
    args = arguments()
    configure_logging("WARNING", "bench")  # the writer's per-group INFO lines would drown the figures
    # aiokafka logs each refused connection at ERROR while the fresh broker starts; start_kafka waits for it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="e2ad-bench-") as state_dir:
        try:
            sys.exit(asyncio.run(bench(args, ad_settings(), Path(state_dir))))
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        except (LDAPException, DirectoryUnavailable) as exc:
            # Other engineers' fault tests restart the shared DC now and then.
            print(f"error: lost the DC ({exc}); rerun", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
