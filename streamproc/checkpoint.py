"""Evaluator checkpoints: one JSON file in the state directory, replaced atomically.

The service writes the evaluator's snapshot every few seconds, soon after every alert
event, and on shutdown, and restores it at start, so that an alert active when the service
stops is neither forgotten nor raised again under a new id (design §5). A write goes to a
temporary file that is flushed to disk and then renamed over the old checkpoint: a crash
leaves either the old or the new checkpoint, never half of one.
"""

from __future__ import annotations

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


class CheckpointStore:
    """Save and load ``{"format", "saved_at", "evaluator"}`` at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The periodic save runs in a worker thread and the shutdown save in the event loop's
        # thread: both write the same temporary file, so one save at a time.
        self._lock = threading.Lock()

    def save(self, snapshot: Mapping[str, Any], *, saved_at: float | None = None) -> None:
        document = {
            "format": CHECKPOINT_FORMAT,
            "saved_at": time.time() if saved_at is None else saved_at,
            "evaluator": snapshot,
        }
        data = json.dumps(document, separators=(",", ":")).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with self._lock:
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


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
