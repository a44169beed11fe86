"""Device faults and artefacts, switchable per bed.

Two kinds:

* **Signal artefacts** change what the monitor measures during a window of event time:
  arterial-line ``flush`` (ABP saturates high), ``zeroing`` (near 0), ``disconnect`` (a flat
  trace) and ``probe_off`` (the fingertip probe drifts to room temperature).
  :class:`Artefacts` answers "what does the line show at t?".
* **Message faults** change the stream of messages: ``dropout`` (the monitor is silent),
  ``duplicate`` (sent twice, same ``seq``), ``reorder`` (overtaken by the next message on
  the same topic), ``malformed`` (a broken payload) and ``skew`` (the device clock is off,
  applied where timestamps are written). :func:`apply_message_faults` wraps a bed's stream.

Faults come from the scenario file and from ``--fault`` options (:func:`parse_fault`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from devices.physiology import ArtefactParams
from devices.scenario import WINDOW_FAULTS, FaultSpec
from streamproc.errors import ConfigError

__all__ = [
    "Artefacts",
    "Message",
    "apply_message_faults",
    "faults_for_bed",
    "parse_fault",
]


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message of a bed's stream, at ``offset`` s of event time from the start."""

    offset: float
    topic: str
    payload: bytes
    retain: bool = False
    #: the message comes from the monitor (silenced by a dropout), not from the chart
    monitor: bool = True


@dataclass(frozen=True, slots=True)
class _Window:
    kind: str
    start: float
    end: float
    level: float


class Artefacts:
    """The artefact windows of one bed, in event seconds from the start."""

    def __init__(self, faults: Iterable[FaultSpec], params: ArtefactParams) -> None:
        self.params = params
        self.windows = [_window(f, params) for f in faults if f.kind in WINDOW_FAULTS]

    def _active(self, kinds: frozenset[str], t: float) -> _Window | None:
        for window in self.windows:
            if window.kind in kinds and window.start <= t < window.end:
                return window
        return None

    def line(self, t: float) -> _Window | None:
        """The arterial-line artefact at ``t`` (its flat ``level``), if any."""
        return self._active(_LINE_FAULTS, t)

    def silent(self, t: float) -> bool:
        return self._active(_DROPOUT, t) is not None

    def skin_reading(self, t: float, skin: float) -> float:
        """What the fingertip probe reads when the true skin temperature is ``skin``."""
        window = self._active(_PROBE_OFF, t)
        if window is None:
            return skin
        ambient = self.params.probe_off_ambient
        return ambient + (skin - ambient) * math.exp(
            -(t - window.start) / self.params.probe_off_tau_s
        )


_LINE_FAULTS = frozenset({"flush", "zeroing", "disconnect"})
_DROPOUT = frozenset({"dropout"})
_PROBE_OFF = frozenset({"probe_off"})


def _window(fault: FaultSpec, params: ArtefactParams) -> _Window:
    defaults = {
        "flush": (params.flush_duration_s, params.flush_level),
        "zeroing": (params.zeroing_duration_s, params.zeroing_level),
        "disconnect": (math.inf, params.disconnect_level),
    }
    duration, level = defaults.get(fault.kind, (math.inf, math.nan))
    if fault.duration_s is not None:
        duration = fault.duration_s
    if fault.level is not None:
        level = fault.level
    start = fault.at_min * 60.0
    return _Window(fault.kind, start, start + duration, level)


# --- message faults ---------------------------------------------------------------------------


def apply_message_faults(
    messages: Iterable[Message],
    faults: Sequence[FaultSpec],
    artefacts: Artefacts,
    rng: np.random.Generator,
) -> Iterator[Message]:
    """A bed's stream with dropouts, malformed payloads, duplicates and reordering applied."""
    rates = {f.kind: f.rate for f in faults if f.kind in {"duplicate", "reorder", "malformed"}}
    held: Message | None = None
    for original in messages:
        if original.monitor and artefacts.silent(original.offset):
            continue
        message = _maybe_malform(original, rates.get("malformed", 0.0), rng)
        if held is not None and held.topic == message.topic:
            yield message
            yield Message(message.offset, held.topic, held.payload, held.retain, held.monitor)
            held = None
            continue
        if _is_reading(message) and rng.random() < rates.get("reorder", 0.0):
            held = message
            continue
        yield message
        if _is_reading(message) and rng.random() < rates.get("duplicate", 0.0):
            yield message
    if held is not None:
        yield held


def _is_reading(message: Message) -> bool:
    return message.topic.endswith("/vitals")


def _maybe_malform(message: Message, rate: float, rng: np.random.Generator) -> Message:
    if not _is_reading(message) or rate <= 0.0 or rng.random() >= rate:
        return message
    broken = _MALFORMATIONS[int(rng.integers(len(_MALFORMATIONS)))](message.payload)
    return Message(message.offset, message.topic, broken, message.retain, message.monitor)


def _truncated(payload: bytes) -> bytes:
    return payload[: len(payload) // 2]  # malformed_json


def _string_number(payload: bytes) -> bytes:
    return re.sub(rb'("values":\{"[a-z_]+":)(-?[0-9.]+)', rb'\1"\2"', payload)  # schema: "60.1"


def _no_timestamp(payload: bytes) -> bytes:
    return re.sub(rb'"ts":"[^"]*",', b"", payload)  # schema: ts missing


def _not_a_number(payload: bytes) -> bytes:
    return re.sub(rb'("values":\{"[a-z_]+":)[^,}]+', rb"\1NaN", payload)  # non_finite


_MALFORMATIONS = (_truncated, _string_number, _no_timestamp, _not_a_number)


# --- --fault options --------------------------------------------------------------------------

_FAULT_SYNTAX = "KIND[:key=value,...][@BED,BED...]"


def parse_fault(text: str) -> tuple[FaultSpec, frozenset[str] | None]:
    """``--fault`` syntax ``KIND[:key=value,...][@BED,...]`` → (fault, beds or None for all).

    Keys are those of a scenario's ``[[faults]]`` table: ``at_min``, ``duration_s``, ``rate``,
    ``seconds``, ``level``. Examples: ``duplicate:rate=0.05``, ``skew:seconds=12@b003``,
    ``flush:at_min=5``.
    """
    spec, _, beds = text.partition("@")
    kind, _, options = spec.partition(":")
    fields: dict[str, object] = {"kind": kind}
    try:
        for item in filter(None, options.split(",")):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError("expected key=value")
            fields[key.strip()] = float(value)
        fault = FaultSpec.model_validate(fields)
    except ValueError as exc:
        raise ConfigError(f"--fault {text!r}: {exc}; syntax {_FAULT_SYNTAX}") from exc
    return fault, (frozenset(beds.split(",")) if beds else None)


def faults_for_bed(
    extra: Sequence[tuple[FaultSpec, frozenset[str] | None]], bed: str
) -> list[FaultSpec]:
    """The ``--fault`` options that apply to ``bed``."""
    return [f for f, beds in extra if beds is None or bed in beds]
