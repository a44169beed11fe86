"""Checkpoint saves from two threads at once never collide on the temporary file."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from streamproc.checkpoint import CheckpointStore


def test_concurrent_saves_leave_one_whole_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "state" / "checkpoint.json")
    errors: list[BaseException] = []

    def save_many(tag: int) -> None:
        try:
            for i in range(50):
                store.save({"writer": tag, "i": i})
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save_many, args=(tag,)) for tag in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    document = json.loads(store.path.read_text())
    assert document["evaluator"]["i"] == 49
