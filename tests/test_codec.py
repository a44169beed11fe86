"""decode(topic, payload): every message becomes an event or a rejection with one reason."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.codec import (
    DEFAULT_MAX_PAYLOAD,
    _check_topic_matches,
    _Reject,
    decode,
    encode_rejection,
)
from streamproc.events import Ack, ContextUpdate, Reading, Rejection, WaveformChunk

VITALS = "icu/w1/b07/vitals"


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_reading_in_canonical_units() -> None:
    payload = _json(
        {
            "ts": "2026-11-25T12:00:00.250Z",
            "device": "mon-07",
            "seq": 1042,
            "values": {"map": 63.0, "skin_temp": 31.2},
        }
    )
    event = decode(VITALS, payload, received=1.0)
    assert isinstance(event, Reading)
    assert (event.ward, event.bed, event.device, event.seq) == ("w1", "b07", "mon-07", 1042)
    assert event.ts == pytest.approx(1795608000.25)
    assert event.values == {"map": 63.0, "skin_temp": 31.2}
    assert event.arrival == 1.0


def test_epoch_and_offset_timestamps_agree() -> None:
    iso = decode(VITALS, _json({"ts": "2026-11-25T13:00:00+01:00", "values": {"map": 60}}))
    num = decode(VITALS, _json({"ts": 1795608000, "values": {"map": 60}}))
    assert isinstance(iso, Reading)
    assert isinstance(num, Reading)
    assert iso.ts == num.ts


def test_known_units_are_converted() -> None:
    payload = _json(
        {
            "ts": 0,
            "values": {"lactate": 18.016, "crt": 2500},
            "units": {"lactate": "mg/dL", "crt": "ms"},
        }
    )
    event = decode(VITALS, payload)
    assert isinstance(event, Reading)
    assert event.values["lactate"] == pytest.approx(2.0)
    assert event.values["crt"] == pytest.approx(2.5)


def test_unknown_signals_are_ignored_and_reported() -> None:
    event = decode(VITALS, _json({"ts": 0, "values": {"map": 70, "etco2": 35}}))
    assert isinstance(event, Reading)
    assert event.values == {"map": 70}
    assert event.unknown == ("etco2",)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        (VITALS, b"{not json", "malformed_json"),
        (VITALS, b"\xff\xfe\x00", "malformed_json"),
        (VITALS, b"[1, 2]", "malformed_json"),
        (VITALS, _json({"values": {"map": 60}}), "schema"),
        (VITALS, _json({"ts": 0, "values": {"map": "60"}}), "schema"),
        (VITALS, _json({"ts": 0, "values": {"map": True}}), "schema"),
        (VITALS, _json({"ts": "2026-11-25T12:00:00", "values": {"map": 60}}), "schema"),
        (VITALS, _json({"ts": 0, "values": {}}), "schema"),
        (VITALS, b'{"ts": 0, "values": {"map": NaN}}', "non_finite"),
        (VITALS, b'{"ts": 0, "values": {"map": Infinity}}', "non_finite"),
        (VITALS, b'{"ts": 1e999, "values": {"map": 60}}', "non_finite"),
        (VITALS, _json({"ts": 0, "values": {"map": 300}}), "implausible"),
        (VITALS, _json({"ts": 0, "values": {"map": 60}, "units": {"map": "psi"}}), "unit"),
        (
            VITALS,
            b'{"ts": 0, "values": {"map": 60}, "pad": "' + b"x" * DEFAULT_MAX_PAYLOAD + b'"}',
            "too_large",
        ),
        ("icu/w1/b07/unknown", _json({"ts": 0, "values": {"map": 60}}), "topic"),
        ("icu/w 1/b07/vitals", _json({"ts": 0, "values": {"map": 60}}), "topic"),
        (
            VITALS,
            _json({"t0": 0, "fs": 125, "samples": [80.0], "values": {"map": 60}, "ts": 0}),
            "topic",
        ),
        (
            "icu/w1/b07/waveform/abp",
            _json({"t0": 0, "fs": 125, "samples": [1.0], "unit": "cmH2O"}),
            "unit",
        ),
        ("icu/w1/b07/ack", _json({"alert_id": "a"}), "schema"),
    ],
)
def test_rejections_carry_their_reason(topic: str, payload: bytes, reason: str) -> None:
    result = decode(topic, payload)
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    assert result.detail
    assert result.payload == payload[:512]


def test_implausible_reading_still_reports_the_artefact() -> None:
    result = decode(VITALS, _json({"ts": 5, "values": {"map": 5, "skin_temp": 31}}), received=6.0)
    assert isinstance(result, Rejection)
    assert result.artefact is not None
    assert (result.artefact.ts, result.artefact.signals, result.artefact.arrival) == (
        5,
        ("map",),
        6.0,
    )


def test_other_kinds() -> None:
    assert decode("icu/w1/b07/context", b"") == ContextUpdate("w1", "b07", None)
    ack = decode("icu/w1/b07/ack", _json({"alert_id": "abc", "by": "nurse-1"}))
    assert ack == Ack("w1", "b07", "abc", "nurse-1")
    chunk = decode(
        "icu/w1/b07/waveform/abp", _json({"t0": 0, "fs": 125.0, "unit": "kPa", "samples": [10.0]})
    )
    assert isinstance(chunk, WaveformChunk)
    assert chunk.samples == (pytest.approx(75.00617),)
    context = decode(
        "icu/w1/b07/context",
        _json(
            {
                "patient": "p",
                "protocol": "tartare2s-ttp",
                "protocol_started": "2026-11-25T08:00:00Z",
            }
        ),
    )
    assert isinstance(context, ContextUpdate)
    assert context.context is not None
    assert context.context.protocol_started == 1795593600.0


def test_rejection_payload_is_truncated_and_valid_json() -> None:
    rejection = decode(VITALS, b"\xff" * 2000)
    assert isinstance(rejection, Rejection)
    body = json.loads(encode_rejection(rejection, at=0.0))
    assert body["reason"] == "malformed_json"
    assert body["topic"] == VITALS
    assert body["at"] == "1970-01-01T00:00:00.000Z"
    assert len(body["payload"]) == 512


@given(
    topic=st.sampled_from([VITALS, "icu/w/b/context", "icu/w/b/ack", "icu/w/b/waveform/abp", "x"]),
    payload=st.binary(max_size=300),
)
def test_decode_never_raises_on_bytes(topic: str, payload: bytes) -> None:
    decode(topic, payload)


_json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(suppress_health_check=[HealthCheck.too_slow])  # recursive JSON warms up slowly
@given(
    topic=st.sampled_from([VITALS, "icu/w/b/context", "icu/w/b/ack", "icu/w/b/waveform/abp"]),
    body=st.dictionaries(
        st.sampled_from(
            [
                "ts",
                "t0",
                "fs",
                "values",
                "samples",
                "units",
                "seq",
                "device",
                "alert_id",
                "by",
                "protocol",
                "weight_kg",
            ]
        ),
        _json_values,
    ),
)
def test_decode_never_raises_on_json_objects(topic: str, body: dict[str, object]) -> None:
    decode(topic, json.dumps(body).encode())


_VALID_BODIES = {
    VITALS: {"ts": 1795608000, "device": "samples", "values": {"map": 60, "protocol": 1}},
    "icu/w/b/waveform/abp": {"t0": 1795608000, "fs": 125, "samples": [80.0, 81.0]},
    "icu/w/b/context": {"patient": "values", "protocol": "tartare2s-ttp"},
    "icu/w/b/ack": {"alert_id": "a1", "by": "samples"},
}


@given(
    topic=st.sampled_from(sorted(_VALID_BODIES)),
    extra=st.dictionaries(
        st.sampled_from(["values", "samples", "alert_id", "protocol", "note", "sam\\u0070les"]),
        st.sampled_from([1, "values", None]),
        max_size=3,
    ),
)
def test_topic_check_agrees_with_a_search_of_the_bytes(
    topic: str, extra: dict[str, object]
) -> None:
    """The codec looks for foreign keys among the model's extras first; the verdict must be
    the one a search of every payload's bytes gives (even for a key spelled with escapes)."""
    body = json.dumps({**extra, **_VALID_BODIES[topic]}).replace("\\\\u", "\\u").encode()
    kind = topic.split("/", 3)[3]
    try:
        _check_topic_matches(body, kind)
        expected = None
    except _Reject as rejected:
        expected = rejected.detail
    decoded = decode(topic, body)
    topic_rejection = decoded.detail if isinstance(decoded, Rejection) else None
    assert topic_rejection == expected
