"""Wire bytes ⇄ core events: ``decode(topic, payload)`` never raises on input.

Every message becomes either an :mod:`streamproc.events` event or a
:class:`~streamproc.events.Rejection` with one reason from the closed set of design §3.5.
The checks run cheapest first:

    too_large → topic → malformed_json → schema → topic (payload of another kind)
              → non_finite → unit → implausible

The evaluator adds ``late``, ``future`` and ``duplicate``, which need per-bed state.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from functools import lru_cache
from math import isfinite
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError

from streamproc.errors import RejectionReason
from streamproc.events import (
    Ack,
    ArtefactReading,
    BedContext,
    ContextUpdate,
    Event,
    Reading,
    Rejection,
    WaveformChunk,
)
from streamproc.limits import wire_limits
from streamproc.models import (
    AckPayload,
    ContextPayload,
    ReadingPayload,
    RejectionPayload,
    WaveformPayload,
    dump,
)
from streamproc.signals import signal_table
from streamproc.timestamps import format_ts, to_epoch

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "INBOUND_KINDS",
    "REJECTED_PAYLOAD_BYTES",
    "decode",
    "encode_rejection",
    "parse_topic",
]

#: Payload cap, checked before parsing: a 10-s ABP chunk at 125 Hz is about 8 KiB.
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024
#: How much of a rejected payload is echoed on the rejected topic (design §3.5).
REJECTED_PAYLOAD_BYTES: Final = 512
#: Parsed topics remembered (about four per bed).
TOPIC_CACHE_SIZE: Final = 16_384
#: Topic suffixes streamproc consumes, after ``icu/{ward}/{bed}/``.
INBOUND_KINDS: Final = ("vitals", "waveform/abp", "context", "ack")

_NAME = r"[A-Za-z0-9_-]{1,64}"
_TOPIC = re.compile(rf"icu/({_NAME})/({_NAME})/(vitals|waveform/abp|context|ack)")

# Keys that betray a payload meant for another topic kind (design §3.5, reason `topic`).
_FOREIGN_NAMES: Final = {
    "vitals": frozenset({"samples", "alert_id", "protocol"}),
    "waveform/abp": frozenset({"values", "alert_id", "protocol"}),
    "context": frozenset({"values", "samples", "alert_id"}),
    "ack": frozenset({"values", "samples", "protocol"}),
}
_FOREIGN_KEYS: Final = {
    kind: re.compile(b'"(' + "|".join(sorted(names)).encode() + b')"')
    for kind, names in _FOREIGN_NAMES.items()
}


_M = TypeVar("_M", bound=BaseModel)


class _Reject(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, reason: RejectionReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RejectionReason = reason
        self.detail = detail
        self.artefact: ArtefactReading | None = None


def parse_topic(topic: str) -> tuple[str, str, str] | None:
    """``(ward, bed, kind)`` for an inbound topic of the contract, else ``None``."""
    match = _TOPIC.fullmatch(topic)
    return None if match is None else (match[1], match[2], match[3])


#: A ward repeats the same few topics per bed; remembering the parse saves the regular
#: expression on the hot path. Bounded, so a flood of odd topics cannot grow it.
_parse_topic_cached = lru_cache(maxsize=TOPIC_CACHE_SIZE)(parse_topic)


def decode(
    topic: str,
    payload: bytes,
    *,
    received: float | None = None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD,
) -> Event | Rejection:
    """Decode one MQTT message. ``received`` is the wall clock at arrival (``None`` offline)."""
    parts = _parse_topic_cached(topic)
    try:
        if len(payload) > max_bytes:
            raise _Reject("too_large", f"{len(payload)} bytes; the cap is {max_bytes}")
        if parts is None:
            raise _Reject("topic", "not an inbound topic icu/{ward}/{bed}/{vitals|…}")
        return _decode_kind(parts, payload, received)
    except _Reject as rej:
        ward, bed = (parts[0], parts[1]) if parts else (None, None)
        return Rejection(
            topic=topic,
            reason=rej.reason,
            detail=rej.detail,
            payload=payload[:REJECTED_PAYLOAD_BYTES],
            ward=ward,
            bed=bed,
            artefact=rej.artefact,
        )


def _decode_kind(parts: tuple[str, str, str], payload: bytes, received: float | None) -> Event:
    ward, bed, kind = parts
    if kind == "context" and not payload.strip():
        return ContextUpdate(ward, bed, None, arrival=received)
    if kind == "vitals":
        return _reading(ward, bed, _validate(ReadingPayload, payload, kind), received)
    if kind == "waveform/abp":
        return _waveform(ward, bed, _validate(WaveformPayload, payload, kind), received)
    if kind == "context":
        return _context(ward, bed, _validate(ContextPayload, payload, kind), received)
    ack = _validate(AckPayload, payload, kind)
    return Ack(ward, bed, ack.alert_id, ack.by, arrival=received)


def _validate(model: type[_M], payload: bytes, kind: str) -> _M:
    try:  # the validator itself: model_validate_json is a wrapper costing ~0.3 µs a call
        parsed: _M = model.__pydantic_validator__.validate_json(payload)
    except ValidationError as exc:
        raise _schema_rejection(exc) from exc
    extra = parsed.model_extra
    # None of the foreign names is a field of the model, so a payload that carries one at
    # the top has it among the extras: most messages have none and skip the byte search.
    if extra and not _FOREIGN_NAMES[kind].isdisjoint(extra):
        _check_topic_matches(payload, kind)
    return parsed


def _schema_rejection(exc: ValidationError) -> _Reject:
    first = exc.errors(include_url=False)[0]
    if first["type"] in {"json_invalid", "json_type", "model_type", "model_attributes_type"}:
        return _Reject("malformed_json", "payload is not a UTF-8 JSON object")
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or 'payload'}: {err['msg']}"
        for err in exc.errors(include_url=False)[:3]
    ]
    return _Reject("schema", "; ".join(problems))


def _check_topic_matches(payload: bytes, kind: str) -> None:
    pattern = _FOREIGN_KEYS[kind]
    if pattern.search(payload) is None:
        return
    top = json.loads(payload)  # valid JSON: pydantic has just parsed it
    foreign = sorted(k for k in top if pattern.fullmatch(f'"{k}"'.encode()))
    if foreign:
        raise _Reject("topic", f"a {kind} topic carries {', '.join(foreign)}: wrong topic?")


def _finite_time(value: float, field: str) -> float:
    """``value`` if it lies in the window of ``presets/wire/limits.toml``, else a rejection."""
    limits = wire_limits()
    if limits.earliest <= value <= limits.latest:
        return value
    if not math.isfinite(value):
        raise _Reject("non_finite", f"{field} is not a finite number")
    window = f"{format_ts(limits.earliest)[:10]}–{format_ts(limits.latest)[:10]}"
    if limits.earliest * 1000 <= value <= limits.latest * 1000:
        raise _Reject("schema", f"{field} {value:.4g} looks like milliseconds: send epoch seconds")
    raise _Reject("schema", f"{field} {value:.4g} is outside {window}")


def _reading(ward: str, bed: str, msg: ReadingPayload, received: float | None) -> Reading:
    # The hot path of every reading: plain loops, no helper calls per value, and the lists
    # of unknown and implausible names only made for a reading that has some.
    ts = msg.ts
    ts = _finite_time(ts if isinstance(ts, float) else to_epoch(ts), "ts")
    table = signal_table()
    units = msg.units
    values: dict[str, float] = {}
    unknown: list[str] | None = None
    implausible: list[str] | None = None
    for name, raw in msg.values.items():
        signal = table.get(name)
        if signal is None:
            unknown = [] if unknown is None else unknown
            unknown.append(name)
            continue
        if not isfinite(raw):
            raise _Reject("non_finite", f"values.{name} is {raw}")
        value = raw
        if units and name in units:
            conversion = signal.converter(units[name])
            if conversion is None:
                raise _Reject("unit", f"{name} in {units[name]!r}: known are {signal.unit}")
            value = conversion.apply(raw)
        if not signal.low <= value <= signal.high:  # Signal.plausible, inlined
            implausible = [] if implausible is None else implausible
            implausible.append(name)
        values[name] = value
    if implausible is not None:
        rej = _Reject("implausible", _describe_implausible(implausible, values))
        rej.artefact = ArtefactReading(ward, bed, ts, tuple(implausible), arrival=received)
        raise rej
    names = () if unknown is None else tuple(unknown)
    return Reading(ward, bed, ts, values, msg.device, msg.seq, received, names)


def _describe_implausible(names: Iterable[str], values: dict[str, float]) -> str:
    table = signal_table()
    return "; ".join(
        f"{n}={values[n]:g} outside {table[n].low:g}–{table[n].high:g} {table[n].unit}"
        for n in names
    )


def _waveform(ward: str, bed: str, msg: WaveformPayload, received: float | None) -> WaveformChunk:
    t0 = _finite_time(to_epoch(msg.t0), "t0")
    if not all(map(math.isfinite, msg.samples)):
        raise _Reject("non_finite", "samples hold NaN or Infinity")
    if not math.isfinite(msg.fs):
        raise _Reject("non_finite", "fs is not a finite number")
    limits = wire_limits()
    if not limits.fs_min <= msg.fs <= limits.fs_max:
        raise _Reject(
            "schema", f"fs {msg.fs:g} Hz is outside {limits.fs_min:g}–{limits.fs_max:g} Hz"
        )
    if len(msg.samples) / msg.fs > limits.max_chunk_s:
        span = len(msg.samples) / msg.fs
        raise _Reject("schema", f"the chunk spans {span:g} s; at most {limits.max_chunk_s:g} s")
    conversion = signal_table()["map"].converter(msg.unit)
    if conversion is None:
        raise _Reject("unit", f"ABP in {msg.unit!r}: use mmHg or kPa")
    samples = (
        tuple(msg.samples) if msg.unit == "mmHg" else tuple(map(conversion.apply, msg.samples))
    )
    return WaveformChunk(ward, bed, t0, msg.fs, samples, msg.device, msg.seq, received)


def _context(ward: str, bed: str, msg: ContextPayload, received: float | None) -> ContextUpdate:
    started = None if msg.protocol_started is None else to_epoch(msg.protocol_started)
    trial = None if msg.map_trial_until is None else to_epoch(msg.map_trial_until)
    for name, value in (("protocol_started", started), ("map_trial_until", trial)):
        if value is not None:
            _finite_time(value, name)
    if msg.weight_kg is not None and not math.isfinite(msg.weight_kg):
        raise _Reject("non_finite", "weight_kg is not a finite number")
    context = BedContext(
        patient=msg.patient,
        protocol=msg.protocol,
        chronic_hypertension=msg.chronic_hypertension,
        weight_kg=msg.weight_kg,
        protocol_started=started,
        map_trial_until=trial,
    )
    return ContextUpdate(ward, bed, context, arrival=received)


def encode_rejection(rejection: Rejection, *, at: float) -> bytes:
    """The ``streamproc/{instance}/rejected`` payload for a rejection (design §3.5)."""
    payload = RejectionPayload(
        topic=rejection.topic,
        reason=rejection.reason,
        detail=rejection.detail,
        payload=rejection.payload[:REJECTED_PAYLOAD_BYTES].decode("utf-8", "replace"),
        at=format_ts(at),
    )
    return dump(payload)
