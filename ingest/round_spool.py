"""A delta round's items on disk until the round is read to its deltaLink, then handed out one object at a time.

A round cannot be published page by page: Graph splits a group's members@delta over items on any
page, and a full round's record must carry the whole membership (members_complete). Held in
memory, a full round of a large tenant costs about 1 KB a membership (docs/benchmarks.md); spooled
to a private temporary SQLite database (stdlib, deleted on close) the reader holds one page and
then one object at a time, so its memory does not grow with the tenant.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any


class RoundSpool:
    """The items of one delta round in the order read; given back per object, in the order first seen."""

    def __init__(self) -> None:
        # "": a temporary database on disk, private to this connection and removed when it closes.
        self._db = sqlite3.connect("")
        self._db.execute("CREATE TABLE items (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, item TEXT NOT NULL)")
        self._db.execute("CREATE INDEX items_by_object ON items (id, seq)")
        self.count = 0  # items added

    def add(self, items: Iterable[dict[str, Any]]) -> None:
        rows = [(str(item["id"]), json.dumps(item)) for item in items]
        self._db.executemany("INSERT INTO items (id, item) VALUES (?, ?)", rows)
        self.count += len(rows)

    def objects(self) -> Iterator[list[dict[str, Any]]]:
        """Each object's items in the order read, objects in the order the round first named them."""
        ids = [row[0] for row in self._db.execute("SELECT id FROM items GROUP BY id ORDER BY MIN(seq)")]
        for object_id in ids:
            parts = self._db.execute("SELECT item FROM items WHERE id = ? ORDER BY seq", (object_id,))
            yield [json.loads(part) for (part,) in parts]

    def close(self) -> None:
        self._db.close()
