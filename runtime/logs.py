"""Logging set-up for every e2ad process: one line per event, the stage's name in front."""

from __future__ import annotations

import logging

from runtime.outages import tame_aiokafka


def configure_logging(level: str, stage: str) -> None:
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)-7s {stage:<9} %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("aiokafka").setLevel(max(logging.getLevelName(level), logging.WARNING))
    # aiokafka logs every refused connection attempt at ERROR, about every 200 ms.
    tame_aiokafka()
