"""Wire JSON Lines: one recorded MQTT message per line, in bus order::

    {"topic": "icu/w1/b07/vitals", "payload": {"ts": "...", "values": {"map": 47.0}}}
    {"topic": "icu/w1/b07/vitals", "payload": "{not json"}      (a raw payload, verbatim)
    {"topic": "icu/w1/b07/context", "payload": null}              (an empty payload)

The payload bytes go to ``ingest()`` unchanged, so a bad payload becomes a rejection with
its reason, exactly as it would live. A line that is not such an object is logged and
skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from streamproc.codec import parse_topic
from streamproc.errors import ConfigError
from streamproc.readers.messages import Message
from streamproc.readers.options import RecordingOptions
from streamproc.readers.tables import parse_time

__all__ = ["read_jsonl", "read_jsonl_file"]

logger = logging.getLogger(__name__)


class _UnreadableCount(Protocol):
    unreadable_lines: int


def read_jsonl(
    lines: Iterable[str], *, source: str, summary: _UnreadableCount | None = None
) -> Iterator[tuple[str, bytes]]:
    """``(topic, payload)`` per recorded message; a line that is not one is logged, skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        message = _parse_line(line)
        if message is None:
            logger.warning('%s:%d: not {"topic": ..., "payload": ...}; skipped', source, number)
            if summary is not None:
                summary.unreadable_lines += 1
            continue
        yield message


def _parse_line(line: str) -> tuple[str, bytes] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("topic"), str):
        return None
    payload = record.get("payload")
    if payload is None:
        return record["topic"], b""
    if isinstance(payload, str):
        return record["topic"], payload.encode("utf-8", "surrogateescape")
    return record["topic"], json.dumps(payload, separators=(",", ":")).encode()


def read_jsonl_file(
    path: Path, options: RecordingOptions, *, summary: _UnreadableCount | None = None
) -> Iterator[Message]:
    """A JSON Lines file as :class:`Message` objects (``-`` is not a path: see replay)."""
    try:
        handle = path.open(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    with handle:
        yield from messages_of(read_jsonl(handle, source=str(path), summary=summary), options)


def messages_of(pairs: Iterable[tuple[str, bytes]], options: RecordingOptions) -> Iterator[Message]:
    """Recorded pairs with the event time each carries (kept from the line before if none)."""
    ts = options.start or 0.0
    for topic, payload in pairs:
        ts = _event_time(payload, ts)
        parts = parse_topic(topic)
        ward, bed = (parts[0], parts[1]) if parts else (options.ward, options.bed or "")
        yield Message(ts, topic, payload, ward, bed)


def _event_time(payload: bytes, previous: float) -> float:
    try:
        body = json.loads(payload)
    except ValueError:
        return previous
    if not isinstance(body, dict):
        return previous
    for key in ("ts", "t0"):
        value = body.get(key)
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                return parse_time(str(value), previous)
            except ValueError:
                return previous
    return previous
