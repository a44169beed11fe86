"""Wire JSON Lines: one recorded MQTT message per line, ``{"topic": …, "payload": …}``.

``payload`` is the message's JSON object (or a string holding the raw payload). The bytes
go to ``ingest()`` unchanged, so a bad line becomes a rejection with its reason, exactly
as it would live.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamproc.codec import parse_topic
from streamproc.errors import ConfigError
from streamproc.readers.messages import Message
from streamproc.readers.options import RecordingOptions
from streamproc.readers.tables import parse_time

__all__ = ["read_jsonl"]


def read_jsonl(path: Path, options: RecordingOptions) -> Iterator[Message]:
    ts = options.start or 0.0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                topic, payload = record["topic"], record["payload"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not a {{topic, payload}} JSON line") from exc
            raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            ts = _event_time(payload, ts)
            parts = parse_topic(topic)
            ward, bed = (parts[0], parts[1]) if parts else (options.ward, options.bed or "")
            yield Message(ts, topic, raw, ward, bed)


def _event_time(payload: Any, previous: float) -> float:
    """The message's own ts/t0 for ordering; lines without one keep the previous time."""
    if isinstance(payload, dict):
        for key in ("ts", "t0"):
            value = payload.get(key)
            if isinstance(value, int | float | str):
                try:
                    return parse_time(str(value), previous)
                except ValueError:
                    return previous
    return previous
