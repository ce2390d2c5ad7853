"""`e2ad provision GROUP_ID [--apply] [--json]`: one group on demand, step by step (e2ad/provision.py)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TYPE_CHECKING

import click

from runtime.logs import configure_logging
from runtime.outages import KafkaUnreachable, one_shot

if TYPE_CHECKING:
    from e2ad.cli import Context


@click.command()
@click.argument("group_id")
@click.option("--apply", "apply_", is_flag=True, help="Perform it through the writer (not a delete the guard holds).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (docs/operations.md has its schema).")
@click.pass_obj
def provision(context: Context, group_id: str, apply_: bool, as_json: bool) -> None:
    """Provision one Entra group on demand: import, scope, match and action, as the pipeline decides them.

    A dry run by default: nothing is written to AD or to Kafka.
    """
    try:
        uuid.UUID(group_id)
    except ValueError:
        raise click.BadParameter(f"{group_id!r} is not an Entra object id (a GUID)", param_hint="GROUP_ID") from None
    # Here, not at the top: every e2ad command imports this module, and the Graph SDK is slow to import.
    from azure.core.exceptions import AzureError
    from kiota_abstractions.api_error import APIError
    from rich.console import Console

    from e2ad.provision import ApplyRefused, ProvisionError
    from e2ad.provision import provision as provision_group
    from e2ad.provision_render import render
    from ingest.graph_client import GraphNotConfigured, describe_graph_error
    from writers.connection import BindRejected
    from writers.errors import DirectoryUnavailable, ObjectError

    settings = context.settings()
    configure_logging("WARNING", "provision")  # the writer's own lines on stderr stay out of the report
    console = Console(soft_wrap=True)  # long DNs stay on one line, for copying
    try:
        report, code = asyncio.run(one_shot(settings.kafka, lambda: provision_group(settings, group_id, apply=apply_)))
    except ApplyRefused as exc:
        raise click.ClickException(f"not applied: {exc}") from None
    except (ProvisionError, KafkaUnreachable, GraphNotConfigured) as exc:
        raise click.ClickException(str(exc)) from None
    except (APIError, AzureError) as exc:  # Graph's answer, or the token request's
        raise click.ClickException(f"Graph: {describe_graph_error(exc)}") from None
    except (DirectoryUnavailable, BindRejected, ObjectError) as exc:
        raise click.ClickException(f"AD: {exc}") from None
    if as_json:
        click.echo(report.as_json())
    else:
        render(report, console)
    sys.exit(code)
