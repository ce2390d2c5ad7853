"""`e2ad expr`: evaluate one mapping expression, or statically check every mapping of a configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import click
import yaml

from processors.expressions import IGNORE_FLOW, ExpressionError, compile_expression
from processors.mapping import MappingProblem, mapping_errors

EXIT_EXPRESSION_ERROR = 2


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(EXIT_EXPRESSION_ERROR)


def _pairs(values: tuple[str, ...], option: str) -> dict[str, list[str]]:
    pairs: dict[str, list[str]] = {}
    for item in values:
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=option)
        pairs.setdefault(name, []).append(value)
    return pairs


def _show_error(text: str, error: ExpressionError) -> str:
    if error.position is None:
        return str(error)
    return f"{error}\n  {text}\n  {' ' * error.position}^"


@click.group()
def expr() -> None:
    """Entra attribute-mapping expressions."""


@expr.command("eval")
@click.argument("expression")
@click.option(
    "--attr",
    "attributes",
    multiple=True,
    metavar="NAME=VALUE",
    help="A source attribute; repeat a NAME for multiple values.",
)
@click.option("--token", "tokens", multiple=True, metavar="NAME=VALUE", help="Bind a %NAME% placeholder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as a JSON value.")
def eval_command(expression: str, attributes: tuple[str, ...], tokens: tuple[str, ...], as_json: bool) -> None:
    """Evaluate EXPRESSION against the given attributes and print the result."""
    source = {name: values[0] if len(values) == 1 else values for name, values in _pairs(attributes, "--attr").items()}
    bound = {name: values[-1] for name, values in _pairs(tokens, "--token").items()}
    try:
        result = compile_expression(expression, tokens=bound).evaluate(source)
    except ExpressionError as error:
        _fail(_show_error(expression, error))
    if result is IGNORE_FLOW:
        click.echo("IgnoreFlowIfNullOrEmpty: the attribute is dropped from the flow", err=True)
        result = None
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    elif isinstance(result, list):
        click.echo("\n".join(map(str, result)))
    elif result is not None:
        click.echo(result)


@expr.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_command(file: Path) -> None:
    """Statically check every mapping under `mappings:` in the YAML configuration FILE, as its load does."""
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        _fail(f"{file}: not valid YAML: {exc}")
    if (
        not isinstance(document, dict)
        or "mappings" not in document
        or not isinstance(tokens := document.get("tokens") or {}, dict)
    ):
        _fail(f"{file}: expected a top-level 'mappings:' (rules, or target → expression) and optional 'tokens:'")
    mappings = document.get("mappings")
    problems = mapping_errors(mappings, {str(k): str(v) for k, v in tokens.items()})
    if problems:
        shown = [_show_problem(problem) for problem in problems]
        _fail("\n".join(shown) + f"\n{len(problems)} error(s) in {file}")
    click.echo(f"{file}: {len(mappings or ())} mapping(s) OK")


def _show_problem(problem: MappingProblem) -> str:
    if problem.expression is None or problem.position is None:
        return str(problem)
    return f"{problem}\n  {problem.expression}\n  {' ' * problem.position}^"
