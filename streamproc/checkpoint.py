"""Evaluator checkpoints: one JSON file in the state directory, replaced atomically.

The service writes the evaluator's snapshot every few seconds, soon after every alert
event, and on shutdown, and restores it at start, so that an alert active when the service
stops is neither forgotten nor raised again under a new id (design §5). A write goes to a
temporary file that is flushed to disk and then renamed over the old checkpoint: a crash
leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from streamproc.errors import ConfigError

__all__ = ["CHECKPOINT_FORMAT", "CheckpointStore"]

logger = logging.getLogger(__name__)

#: Bumped when the file layout changes incompatibly.
CHECKPOINT_FORMAT: Final = 1
#: List items (beds) encoded between two yields to the event loop.
_ITEMS_PER_SLICE: Final = 16


class CheckpointStore:
    """Save and load ``{"format", "saved_at", "evaluator"}`` at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The periodic save runs in a worker thread and the shutdown save in the event loop's
        # thread: both write the same temporary file, so one save at a time.
        self._writing = threading.Lock()

    def save(self, snapshot: Mapping[str, Any], *, saved_at: float | None = None) -> None:
        self.write(self.encode(_dumps(snapshot).encode(), saved_at=saved_at))

    async def save_async(self, snapshot: Mapping[str, Any]) -> None:
        """Like :meth:`save`, but encodes piece by piece, yielding to the event loop between
        pieces (a snapshot of hundreds of beds takes tens of milliseconds to encode), and
        writes in a worker thread."""
        encoded = await _dumps_piecewise(snapshot)
        await asyncio.to_thread(self.write, self.encode(encoded))

    @staticmethod
    def encode(snapshot_json: bytes, *, saved_at: float | None = None) -> bytes:
        """The checkpoint document around an already JSON-encoded evaluator snapshot."""
        stamp = time.time() if saved_at is None else saved_at
        head = f'{{"format":{CHECKPOINT_FORMAT},"saved_at":{stamp!r},"evaluator":'.encode()
        return head + snapshot_json + b"}"

    def write(self, data: bytes) -> None:
        """Replace the checkpoint with ``data`` atomically (temporary file, fsync, rename)."""
        with self._writing:
            self._write(data)

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        _fsync_directory(self.path.parent)

    def load(self) -> dict[str, Any] | None:
        """The saved evaluator snapshot, or ``None`` when there is no checkpoint yet."""
        try:
            document = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"checkpoint {self.path} cannot be read ({exc}); move it away to start afresh"
            ) from exc
        if not isinstance(document, dict) or document.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(
                f"checkpoint {self.path} has an unknown format; move it away to start afresh"
            )
        logger.info("restoring the evaluator from %s", self.path)
        snapshot: dict[str, Any] = document["evaluator"]
        return snapshot


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


async def _dumps_piecewise(snapshot: Mapping[str, Any]) -> bytes:
    """``_dumps(snapshot)``, one list item at a time with a yield every few items."""
    parts: list[str] = []
    for key, value in snapshot.items():
        if not isinstance(value, list):
            parts.append(f"{_dumps(key)}:{_dumps(value)}")
            continue
        items: list[str] = []
        for index, item in enumerate(value):
            items.append(_dumps(item))
            if index % _ITEMS_PER_SLICE == _ITEMS_PER_SLICE - 1:
                await asyncio.sleep(0)
        parts.append(f"{_dumps(key)}:[{','.join(items)}]")
    return ("{" + ",".join(parts) + "}").encode()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
