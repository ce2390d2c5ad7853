"""Processors: pure stream processing from Graph changes to the desired state of each AD group."""
