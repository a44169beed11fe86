"""The exceptions streamproc raises, under one root.

    StreamprocError
    ├── ConfigError        settings or command-line options that cannot work
    ├── ProtocolError      a protocol file that does not validate (names the field)
    ├── PayloadError       a message that is rejected; carries a machine-readable ``reason``
    │   └── RejectedReading    rejected by the evaluator (late, future, duplicate)
    └── BrokerError        the MQTT broker cannot be reached or refused us

Library errors are translated where they enter: pydantic's ``ValidationError`` in the
codec and protocol loader, ``aiomqtt.MqttError`` only in the MQTT adapter.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "REJECTION_REASONS",
    "BrokerError",
    "ConfigError",
    "PayloadError",
    "ProtocolError",
    "RejectedReading",
    "RejectionReason",
    "StreamprocError",
]

#: The closed set of rejection reasons of the wire contract (design §3.5).
RejectionReason = Literal[
    "malformed_json",  # not UTF-8 JSON, or not a JSON object
    "schema",  # a field is missing, has the wrong type, or a timestamp has no offset
    "implausible",  # a value outside the signal's plausible range (an artefact)
    "non_finite",  # NaN or ±Infinity
    "unit",  # a unit that is not known for the signal
    "late",  # older than the newest reading already evaluated for that bed and signal
    "future",  # more than the allowed skew ahead of the receiver's clock
    "duplicate",  # a (device, seq) already seen
    "too_large",  # payload over the size cap; checked before parsing
    "topic",  # the topic is not one of ours, or does not match the payload
]
REJECTION_REASONS: tuple[str, ...] = get_args(RejectionReason)


class StreamprocError(Exception):
    """Root of every error streamproc raises on purpose."""


class ConfigError(StreamprocError):
    """Settings or options that cannot work; the message says what to change."""


class ProtocolError(StreamprocError):
    """A protocol file that does not validate; the message names the field."""


class PayloadError(StreamprocError):
    """A message that is rejected, with one reason from the closed set."""

    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RejectionReason = reason
        self.detail = detail


class RejectedReading(PayloadError):  # noqa: N818 - a rejection, not a failure
    """A well-formed reading the evaluator will not take (late, future, duplicate)."""


class BrokerError(StreamprocError):
    """The broker is unreachable, refused the connection, or dropped it."""
