"""`e2ad topics ensure|describe`: the topics e2ad needs, created, aligned and raised; and how the cluster's compare."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click
from rich import box
from rich.console import Console
from rich.table import Column, Table

from e2ad.control import run_once
from e2ad.topic_plan import SHOWN_CONFIGS, TopicPlan, TopicState, plan_topics
from e2ad.topics import EnsureReport, TopicsRefused, ensure, read_cluster
from runtime import kafka
from runtime.kafka import DAY_MS, HOUR_MS

if TYPE_CHECKING:
    from aiokafka.admin import NewTopic

    from e2ad.cli import Context


@click.group()
def topics() -> None:
    """e2ad's topics: create and raise them as kafka.partitions says, or compare the cluster's with them."""


@topics.command("ensure")
@click.option("--wait", is_flag=True, help="Wait until no stage runs, instead of refusing, before raising partitions.")
@click.pass_obj
def ensure_(context: Context, wait: bool) -> None:
    """Create missing topics, align their cleanup, raise the keyed topics' partitions to kafka.partitions."""
    settings = context.settings().kafka
    specs = kafka.topic_specs(settings)
    try:
        report = run_once(settings, lambda: ensure(settings, specs, wait=wait, waiting=click.echo))
    except TopicsRefused as exc:
        raise click.ClickException(str(exc)) from None
    for line in ensure_lines(report):
        click.echo(line)


def ensure_lines(report: EnsureReport) -> list[str]:
    """What ensure did, one line per kind of change, then the topics it left as they were."""
    plan = report.plan
    lines = [
        f"created {spec.name} ({spec.num_partitions} partition{'s' if spec.num_partitions > 1 else ''}, "
        f"{_cleanup(spec.topic_configs)})"
        for spec in plan.create
    ]
    for finding in plan.findings:
        if finding.remedy == "raise":
            lines.append(f"raised {finding.topic} from {finding.has} to {plan.raise_to[finding.topic]} partitions")
    for name in plan.align:
        changed = [f"{f.item} {f.has} -> {f.needs}" for f in plan.findings if f.topic == name and f.remedy == "align"]
        lines.append(f"aligned {name}: {', '.join(changed)}")
    for name, count in sorted(report.moved.items()):
        lines.append(f"moved {count} record(s) of {name} to their keys' new partitions, tombstoned in the old ones")
    if plan.kept:
        lines.append(f"left as they are: {', '.join(plan.kept)}")
    return lines


@topics.command("describe")
@click.option("--json", "as_json", is_flag=True, help="A JSON list, one object per topic.")
@click.pass_obj
def describe(context: Context, as_json: bool) -> None:
    """Each topic's partitions, replication, cleanup, retention and records held, against what e2ad needs."""
    settings = context.settings().kafka
    specs = kafka.topic_specs(settings)
    cluster = run_once(settings, lambda: read_cluster(settings, [spec.name for spec in specs]))
    plan = plan_topics(specs, cluster)
    if as_json:
        click.echo(json.dumps([as_object(spec, cluster.get(spec.name), plan) for spec in specs], indent=2))
        return
    render(specs, cluster, plan, Console(highlight=False, markup=False))


def as_object(spec: NewTopic, state: TopicState | None, plan: TopicPlan) -> dict[str, Any]:
    """One topic in `topics describe --json` (docs/operations.md): what it has, what e2ad needs, how they differ."""
    return {
        "topic": spec.name,
        "exists": state is not None,
        "partitions": state.partitions if state else None,
        "replication": state.replication if state else None,
        "configs": {key: (state.configs or {}).get(key) for key in SHOWN_CONFIGS} if state else None,
        "records": state.records if state else None,
        "needs": {
            "partitions": spec.num_partitions,
            "replication": spec.replication_factor,
            "configs": {key: spec.topic_configs.get(key) for key in SHOWN_CONFIGS},
        },
        "findings": [
            {"item": f.item, "has": f.has, "needs": f.needs, "remedy": f.remedy, "why": f.why}
            for f in plan.findings
            if f.topic == spec.name
        ],
    }


def render(specs: list[NewTopic], cluster: Mapping[str, TopicState], plan: TopicPlan, console: Console) -> None:
    """One row per topic; a cell that disagrees shows `! ` and what e2ad needs, each explained below the table."""
    table = Table(
        *(Column(name, no_wrap=True) for name in ("TOPIC", "PARTITIONS", "REPLICAS", "CLEANUP", "RETENTION")),
        Column("RECORDS", justify="right", no_wrap=True),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for spec in specs:
        state = cluster.get(spec.name)
        if state is None:
            table.add_row(spec.name, f"- ! {spec.num_partitions}", "-", "-", "-", "missing")
            continue
        found = {f.item for f in plan.findings if f.topic == spec.name}
        configs = state.configs or {}
        policy = configs.get("cleanup.policy", "unknown")
        wanted = spec.topic_configs
        # A compacted topic's retention.ms does not apply (compaction alone removes its records).
        retention = _duration(configs.get("retention.ms")) if policy != "compact" else "-"
        cells = (
            ("partitions", str(state.partitions), str(spec.num_partitions)),
            ("replication", str(state.replication), f">= {spec.replication_factor}"),
            ("cleanup.policy", policy, wanted["cleanup.policy"]),
            ("retention.ms", retention, _duration(wanted.get("retention.ms"))),
        )
        marked = [has if item not in found else f"{has} ! {needs}" for item, has, needs in cells]
        table.add_row(spec.name, *marked, str(state.records))
    console.print(table)
    for finding in plan.findings:
        console.print(f"! {finding.line()}", soft_wrap=True)
    if not plan.findings:
        console.print("every topic is as e2ad needs it", soft_wrap=True)
    elif not plan.refusals:
        console.print("`e2ad topics ensure` fixes every one of these", soft_wrap=True)


def _cleanup(configs: Mapping[str, str]) -> str:
    policy = configs.get("cleanup.policy", "unknown")
    return policy if "retention.ms" not in configs else f"{policy} after {_duration(configs['retention.ms'])}"


def _duration(milliseconds: str | None) -> str:
    """A retention as an operator reads it: 6 h, 7 d; -1 (for ever) and unknown values as they are."""
    if milliseconds is None:
        return "-"
    try:
        ms = int(milliseconds)
    except ValueError:
        return milliseconds
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS)):
        if ms > 0 and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"
