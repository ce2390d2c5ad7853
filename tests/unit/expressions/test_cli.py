"""`e2ad expr eval` and `e2ad expr check`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from e2ad.cli_expr import expr


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(expr, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_eval_prints_the_result() -> None:
    code, out, _ = run(
        "eval",
        'Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))',
        "--attr",
        "displayName=Marketing",
        "--attr",
        "objectId=00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
    )
    assert (code, out) == (0, "Marketing_44ee44ee44ee\n")


def test_eval_json_and_multi_valued_attributes() -> None:
    code, out, _ = run("eval", 'Join(";", [p])', "--attr", "p=a", "--attr", "p=b", "--json")
    assert (code, json.loads(out)) == (0, "a;b")
    assert json.loads(run("eval", "Count([p])", "--attr", "p=a", "--attr", "p=b", "--json")[1]) == 2
    assert json.loads(run("eval", "IsPresent([p])", "--json")[1]) is False
    assert json.loads(run("eval", '""', "--json")[1]) is None
    assert json.loads(run("eval", 'Split("a,b", ",")', "--json")[1]) == ["a", "b"]


def test_eval_binds_tokens() -> None:
    code, out, _ = run("eval", 'Append("@", %DomainFQDN%)', "--token", "DomainFQDN=contoso.com")
    assert (code, out) == (0, "@contoso.com\n")


def test_eval_ignore_flow_is_reported() -> None:
    code, out, err = run("eval", "IgnoreFlowIfNullOrEmpty([department])", "--json")
    assert (code, out.strip()) == (0, "null")
    assert "dropped from the flow" in err


def test_eval_errors_exit_2_with_the_message() -> None:
    code, _, err = run("eval", "Left([a], 2")
    assert code == 2
    assert "missing ')' to close 'Left('" in err
    assert err.splitlines()[-1].endswith("^")
    code, _, err = run("eval", 'Error("no name")')
    assert (code, err.strip()) == (2, "no name")


def test_check_reports_every_error_with_its_attribute(tmp_path: Path) -> None:
    config = tmp_path / "mappings.yaml"
    config.write_text(
        "mappings:\n"
        '  cn: Append(Append(Left(Trim([displayName]),51),"_"),Mid([objectId],25,12))\n'
        '  sAMAccountName: Left(Item(Split([mail], "@"), 0), 15)\n'
        '  info: Appnd([a], "x")\n'
        '  upn: Append("@", %DomainFQDN%)\n'
        "tokens:\n"
        "  DomainFQDN: contoso.com\n",
        encoding="utf-8",
    )
    code, _, err = run("check", str(config))
    assert code == 2
    assert "mappings[1] (sAMAccountName): Item() argument 2 (index) is 1-based" in err
    assert "mappings[2] (info): unknown function 'Appnd'" in err
    assert "2 error(s)" in err


def test_check_clean_file_exits_0(tmp_path: Path) -> None:
    config = tmp_path / "mappings.yaml"
    config.write_text("mappings:\n  description: Left(Trim([description]),448)\n", encoding="utf-8")
    code, out, _ = run("check", str(config))
    assert (code, out.strip()) == (0, f"{config}: 1 mapping(s) OK")


def test_check_rejects_a_file_without_mappings(tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("kafka: {}\n", encoding="utf-8")
    code, _, err = run("check", str(config))
    assert code == 2 and "top-level 'mappings:'" in err
