"""Pydantic v2 models of the wire contract (design §3), shared with ``devices``.

Inbound payloads (monitor / ADT / ward → streamproc) are validated from raw JSON bytes by the
codec; outbound payloads (alerts, bed status, rejections) are built by the core and the
service and serialised with :func:`dump`.

Numbers are strict (``"60"`` and ``true`` are not numbers) and timestamps are either epoch
seconds or ISO 8601 *with* an offset; a naive timestamp is a schema error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict

__all__ = [
    "AckPayload",
    "AlertEventName",
    "AlertEventPayload",
    "AlertKind",
    "AlertState",
    "BedStatusPayload",
    "ContextPayload",
    "Number",
    "Priority",
    "ReadingPayload",
    "RejectionPayload",
    "Seq",
    "StatusAlert",
    "StatusValue",
    "WaveformPayload",
    "WireTime",
    "dump",
]

#: A JSON number, never a string or a boolean. NaN/Infinity parse, so that the codec can
#: reject them as ``non_finite`` rather than as a schema error.
Number = Annotated[float, Strict()]
#: A device's message number: fits a signed 64-bit integer, as on the devices that send it.
Seq = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
#: Epoch seconds, or ISO 8601 with an explicit offset.
WireTime = Number | AwareDatetime

Priority = Literal["high", "medium", "low"]  # IEC 60601-1-8 alarm priorities
AlertKind = Literal["physiological", "technical", "advisory"]
AlertEventName = Literal["raised", "updated", "escalated", "acknowledged", "cleared", "latched"]
AlertState = Literal["active", "acknowledged", "latched", "cleared"]

#: Unknown keys are kept (``model_extra``) but never used, except by the codec to spot a
#: payload meant for another topic kind without searching the raw bytes of every message.
_INBOUND = ConfigDict(extra="allow", allow_inf_nan=True, frozen=True)
_OUTBOUND = ConfigDict(extra="forbid", frozen=True)

_Ident = Annotated[str, Field(min_length=1, max_length=128)]


class ReadingPayload(BaseModel):
    """``icu/{ward}/{bed}/vitals`` (design §3.1)."""

    model_config = _INBOUND
    ts: WireTime
    values: dict[str, Number] = Field(min_length=1)
    device: _Ident | None = None
    seq: Seq | None = None
    units: dict[str, str] | None = None


class WaveformPayload(BaseModel):
    """``icu/{ward}/{bed}/waveform/abp`` (design §3.2)."""

    model_config = _INBOUND
    t0: WireTime
    fs: Annotated[Number, Field(gt=0)]
    unit: str = "mmHg"
    seq: Seq | None = None
    device: _Ident | None = None
    samples: list[Number] = Field(min_length=1)


class ContextPayload(BaseModel):
    """``icu/{ward}/{bed}/context``, retained (design §3.3)."""

    model_config = _INBOUND
    patient: _Ident | None = None
    protocol: _Ident | None = None
    chronic_hypertension: bool = False
    weight_kg: Annotated[Number, Field(gt=0)] | None = None
    protocol_started: WireTime | None = None
    map_trial_until: WireTime | None = None


class AckPayload(BaseModel):
    """``icu/{ward}/{bed}/ack`` (design §3.4)."""

    model_config = _INBOUND
    alert_id: _Ident
    by: _Ident


class AlertEventPayload(BaseModel):
    """``icu/{ward}/{bed}/alerts`` (design §3.4). Times are ISO 8601 strings."""

    model_config = _OUTBOUND
    alert_id: str
    event: AlertEventName
    state: AlertState
    ward: str
    bed: str
    patient: str | None
    rule: str
    protocol: str
    priority: Priority
    kind: AlertKind
    message: str
    onset: str
    at: str
    observed: dict[str, Any]
    target: dict[str, Any]
    secondary: Literal[True] = True
    seq: int


class StatusAlert(BaseModel):
    model_config = _OUTBOUND
    alert_id: str
    rule: str
    priority: Priority
    kind: AlertKind
    state: AlertState
    onset: str
    message: str


class StatusValue(BaseModel):
    model_config = _OUTBOUND
    value: float
    ts: str


class BedStatusPayload(BaseModel):
    """``icu/{ward}/{bed}/status``, retained (design §3.4)."""

    model_config = _OUTBOUND
    ward: str
    bed: str
    patient: str | None
    protocol: str
    context: Literal["configured", "default"]  # "default": readings but no context message
    at: str
    targets: dict[str, Any]
    latest: dict[str, StatusValue]
    active_alerts: list[StatusAlert]
    secondary: Literal[True] = True


class RejectionPayload(BaseModel):
    """``streamproc/{instance}/rejected`` (design §3.5)."""

    model_config = _OUTBOUND
    topic: str
    reason: str
    detail: str
    payload: str  # at most the first 512 bytes, decoded with replacement characters
    at: str


def dump(model: BaseModel) -> bytes:
    """Compact UTF-8 JSON for the wire, fields in declaration order (deterministic)."""
    return model.__pydantic_serializer__.to_json(model)
