"""Benchmark (issue 14): `e2ad provision`'s dry run of a 1,000-member group, next to its Graph fetch alone.

A dry run does the command's whole work but the process start-up: it reads e2ad.config, fetches
the group and its members from the Graph stand-in (a token, the group, the member pages, through
the real SDK), runs the processors' core, reads AD (the group by anchor, the nested anchors, the
members by objectGUID) and builds the report. The baseline, measured in the same run on the same
tenant, is the Graph fetch alone (`ingest.group_read.read_group`); a 10-member group's dry run is
printed too, to show what grows with the members. Target: the 1,000-member dry run well under 2 s.

Usage: .venv/bin/python scripts/bench_provision.py [--members 1000] [--runs 5]

Needs the machine's Samba AD DC running (`e2ad services up`); starts its own embedded broker and
Graph stand-in. Its users go into an OU `OU=bench-provision-…`, tree-deleted at the end. Exits
non-zero only when something went wrong, never because of a slow figure.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench_writer import ad_settings, add_ou, create_users, on_new_connection, remove_leftovers

from e2ad.provision import group_attributes, provision, read_from_graph
from harness.services import LocalServices
from harness.standin import GraphStandin, running_standin
from processors.configuration import first_configuration
from runtime import kafka
from runtime.logs import configure_logging
from schemas.config import AdSettings, KafkaSettings, ProvisioningSettings, Settings

MAX_MEMBERS, MAX_RUNS = 5_000, 20
SMALL = 10  # members of the small group


async def fetch_only(settings: Settings, group_id: str) -> None:
    """The baseline: what the dry run reads from Graph (a token, the group, its member pages), nothing else."""
    configuration = first_configuration(settings.job, changed_by="bench", source=None)  # as the dry run's
    await read_from_graph(settings, group_id, group_attributes(configuration))


async def dry_run(settings: Settings, group_id: str, members: int) -> None:
    report, _ = await provision(settings, group_id)
    added = len(report.action.members_to_add)
    if report.action.operations != ["create"] or added != members:
        raise RuntimeError(f"unexpected dry run: {report.action.operations}, {added} members to add, not {members}")


async def timed(runs: int, step: Callable[[], Awaitable[None]]) -> list[float]:
    await step()  # warm: imports, the first TLS handshakes, the DC's caches
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        await step()
        seconds.append(time.perf_counter() - started)
    return seconds


def shown(name: str, seconds: list[float]) -> float:
    median = statistics.median(seconds)
    print(
        f"{name:<44} median {median * 1000:7.0f} ms   min {min(seconds) * 1000:6.0f}   max {max(seconds) * 1000:6.0f}"
    )
    return median


async def bench(args: argparse.Namespace, ad: AdSettings, state_dir: Path) -> int:
    services = LocalServices(state_dir)
    bootstrap = await services.start_kafka()
    kafka_settings = KafkaSettings(bootstrap_servers=bootstrap, client_id="e2ad-bench")
    tag = uuid.uuid4().hex[:6]
    bench_ou = await on_new_connection(ad, add_ou, f"OU=bench-provision-{tag},{ad.base_dn}")
    try:
        await kafka.ensure_topics(kafka_settings)
        users = await on_new_connection(ad, create_users, bench_ou, args.members, tag)
        async with running_standin() as standin:
            settings = Settings(
                kafka=kafka_settings,
                ad=ad,
                graph=standin.graph_settings(),
                provisioning=ProvisioningSettings(target_container=bench_ou),
            )
            large = group_with(standin, "Bench large", [str(user.guid) for user in users])
            small = group_with(standin, "Bench small", [str(user.guid) for user in users[:SMALL]])
            print(
                f"dry runs of `e2ad provision` in process, {args.runs} runs each after one warm-up; Graph stand-in, DC"
            )
            fetch = shown(
                f"Graph fetch alone, {args.members} members",
                await timed(args.runs, lambda: fetch_only(settings, large)),
            )
            ten = shown(f"dry run, {SMALL} members", await timed(args.runs, lambda: dry_run(settings, small, SMALL)))
            thousand = shown(
                f"dry run, {args.members} members",
                await timed(args.runs, lambda: dry_run(settings, large, args.members)),
            )
        print(f"ratio: dry run / Graph fetch alone = {thousand / fetch:.2f}")
        print(f"ratio: dry run of {args.members} / of {SMALL} members = {thousand / ten:.2f}")
    finally:
        services.stop_kafka()
        remove_leftovers(ad, bench_ou)
    return 0


def group_with(standin: GraphStandin, name: str, guids: list[str]) -> str:
    """A group of synced users: each user's onPremisesObjectIdentifier is an AD user's objectGUID."""
    tenant = standin.tenant
    group_id = tenant.add_group(name).object_id
    for number, guid in enumerate(guids):
        tenant.add_member(group_id, tenant.add_user(f"{name} user {number}", onPremisesObjectIdentifier=guid).object_id)
    return group_id


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000, help=f"members of the large group (≤ {MAX_MEMBERS})")
    parser.add_argument("--runs", type=int, default=5, help=f"timed runs of each figure (≤ {MAX_RUNS})")
    args = parser.parse_args()
    if not (SMALL <= args.members <= MAX_MEMBERS and 1 <= args.runs <= MAX_RUNS):
        parser.error(f"--members {SMALL}..{MAX_MEMBERS}, --runs 1..{MAX_RUNS}")
    return args


def main() -> None:
    args = arguments()
    configure_logging("WARNING", "bench")
    # aiokafka logs each refused connection at ERROR while the fresh broker starts; start_kafka waits for it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="e2ad-bench-") as state_dir:
        sys.exit(asyncio.run(bench(args, ad_settings(), Path(state_dir))))


if __name__ == "__main__":
    main()
