"""Event time on the wire and inside the core.

Inside streamproc every time is a float of seconds since the Unix epoch (UTC). On the wire
a time is ISO 8601 with an explicit offset or a number of epoch seconds (design §3);
streamproc always writes ISO 8601 in UTC with millisecond precision and a ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["format_ts", "to_epoch"]


def to_epoch(value: float | datetime) -> float:
    """Epoch seconds from a wire timestamp that pydantic already parsed (aware datetimes only)."""
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@lru_cache(maxsize=1 << 16)
def format_ts(epoch: float) -> str:
    """``2026-11-25T12:00:00.250Z`` for an epoch time: UTC, milliseconds, ``Z``.

    Never raises: a time no calendar can show (the codec keeps such times out, see
    ``presets/wire/limits.toml``) is written as its number.

    Cached: alert events repeat their onset, and replays of charted data repeat the same
    minutes across thousands of beds; a hit costs a tenth of a formatting.
    """
    try:
        millis = round(epoch * 1000)
        whole = datetime.fromtimestamp(millis // 1000, tz=UTC)
    except (ValueError, OverflowError, OSError):  # NaN, ±inf, or a year outside 1–9999
        return repr(epoch)
    return f"{whole:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"
