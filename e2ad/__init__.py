"""The operator's command line: the one layer that imports every stage (pyproject.toml's contracts)."""
