"""`e2ad check`'s lines that need no service: the webhook's public URL, and a configuration that does not load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from e2ad.cli import main
from e2ad.cli_check import CheckFailed, Skipped, _public_url
from schemas.config import Settings, WebhookSettings


def with_url(url: str | None) -> Settings:
    return Settings(webhook=WebhookSettings(public_url=url, client_state=SecretStr("s") if url else None))


async def test_an_https_url_whose_host_resolves_passes_without_a_request() -> None:
    detail = await _public_url(with_url("https://localhost:8443/e2ad"))
    assert detail.startswith("https://localhost:8443/e2ad is https and localhost resolves to ")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://localhost/e2ad", "(webhook.public_url) is not https"),
        ("https://e2ad-check.invalid/e2ad", "the host e2ad-check.invalid of https://e2ad-check.invalid/e2ad"),
    ],
)
async def test_a_plain_or_unresolvable_url_fails_naming_the_setting(url: str, expected: str) -> None:
    with pytest.raises(CheckFailed, match=r"\(webhook\.public_url\)") as failed:
        await _public_url(with_url(url))
    assert expected in str(failed.value)


async def test_no_public_url_is_skipped() -> None:
    with pytest.raises(Skipped, match="not set"):
        await _public_url(with_url(None))


def test_a_configuration_that_does_not_load_is_one_failed_line_in_the_json(tmp_path: Path) -> None:
    config = tmp_path / "e2ad.yaml"
    config.write_text("kafka:\n  partitions: 0\n")
    result = CliRunner().invoke(main, ["--config", str(config), "check", "--json"], env={"E2AD_CONFIG": None})
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and [c["status"] for c in report["checks"]] == ["fail"]
    assert report["checks"][0]["name"] == "configuration" and "kafka.partitions" in report["checks"][0]["detail"]
