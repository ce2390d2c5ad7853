"""What every stage stands on: Kafka plumbing, configuration loading, logging, /healthz and /metrics,
and small shared helpers. It imports no stage (checked by import-linter, pyproject.toml)."""
