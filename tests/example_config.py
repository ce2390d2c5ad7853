"""e2ad.example.yaml, the file operators start from, and the secret files it names, for tests."""

from __future__ import annotations

from pathlib import Path

from runtime.config import SECRET_FIELDS

EXAMPLE = Path(__file__).parents[1] / "e2ad.example.yaml"


def example_secrets(tmp_path: Path) -> dict[str, str]:
    """E2AD_…_FILE variables pointing each secret file the example names at one of this test's own:
    the example's /etc/e2ad/secrets exist only on a deployed host."""
    environ = {}
    for path in SECRET_FIELDS:
        secret = tmp_path / ".".join(path)
        secret.write_text(f"  {'-'.join(path)}-from-file\n")
        environ["E2AD_" + "__".join(path).upper() + "_FILE"] = str(secret)
    return environ
