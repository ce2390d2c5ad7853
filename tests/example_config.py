"""e2ad.example.yaml, the file operators start from, and the secret files it names, for tests."""

from __future__ import annotations

from pathlib import Path

from runtime.config import SECRET_FIELDS

EXAMPLE = Path(__file__).parents[1] / "e2ad.example.yaml"


def example_secrets(tmp_path: Path) -> dict[str, str]:
    """E2AD_…_FILE variables pointing each secret file the example names at one of this test's own:
    the example's /etc/e2ad/secrets exist only on a deployed host."""
    environ = {}
    for section, field in SECRET_FIELDS:
        secret = tmp_path / f"{section}.{field}"
        secret.write_text(f"  {section}-{field}-from-file\n")
        environ[f"E2AD_{section}__{field}_FILE".upper()] = str(secret)
    return environ
