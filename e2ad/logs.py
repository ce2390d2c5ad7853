"""Logging set-up for every e2ad process: one line per event, the stage's name in front."""

from __future__ import annotations

import logging


def configure_logging(level: str, stage: str) -> None:
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)-7s {stage:<9} %(name)s: %(message)s",
        force=True,
    )
    # aiokafka logs every refused connection attempt at ERROR while a broker starts.
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
