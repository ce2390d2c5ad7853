"""The operator documentation's relative links lead to files of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def relative_links(text: str) -> list[str]:
    return [target for target in _LINK.findall(text) if not re.match(r"^[a-z]+:", target)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_relative_links_resolve(document: Path) -> None:
    broken = [t for t in relative_links(document.read_text()) if not (document.parent / t).exists()]
    assert broken == []


def test_the_readme_leads_to_the_real_tenant_guide_and_the_example() -> None:
    links = relative_links((ROOT / "README.md").read_text())
    assert "docs/real-tenant.md" in links
    assert "e2ad.example.yaml" in links


def test_relative_links_drop_anchors_and_skip_urls() -> None:
    assert relative_links("see [x](docs/x.md#part), [y](https://example.com/y)") == ["docs/x.md"]
