"""The alert outbox: SQLite in the state directory, so that no alert event is lost.

Every alert event is written here *before* it is published, and deleted only when the
broker has acknowledged it (PUBACK). After a reconnect or a restart the remaining entries
are published again in the order they were written, which keeps each bed's events in
order; consumers drop duplicates by ``alert_id`` and ``event`` (design §6).

The database runs in WAL mode with ``synchronous=NORMAL``: a write survives a crash of the
process (SIGKILL) without an fsync per alert, and only a power loss can lose the last
transactions.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["Outbox", "OutboxEntry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""


@dataclass(slots=True)
class OutboxEntry:
    id: int
    topic: str
    payload: bytes


class Outbox:
    """A durable FIFO of messages waiting for their PUBACK."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        (self._depth,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()

    def add(self, topic: str, payload: bytes) -> OutboxEntry:
        cursor = self._db.execute(
            "INSERT INTO outbox (topic, payload) VALUES (?, ?)", (topic, payload)
        )
        self._depth += 1
        assert cursor.lastrowid is not None
        return OutboxEntry(cursor.lastrowid, topic, payload)

    def remove(self, entry_id: int) -> None:
        deleted = self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,)).rowcount
        self._depth -= deleted

    def pending(self) -> list[OutboxEntry]:
        """Every entry not yet acknowledged, oldest first."""
        rows = self._db.execute("SELECT id, topic, payload FROM outbox ORDER BY id")
        return [OutboxEntry(row[0], row[1], bytes(row[2])) for row in rows]

    def __len__(self) -> int:
        return int(self._depth)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
