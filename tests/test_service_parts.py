"""Unit tests of the service's parts: outbox, checkpoint, metrics, HTTP, backoff, filters."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamproc.checkpoint import CheckpointStore
from streamproc.errors import REJECTION_REASONS, ConfigError
from streamproc.health import HealthServer
from streamproc.metrics import METRIC_NAMES, Metrics
from streamproc.mqtt import Backoff, inbound_filters
from streamproc.outbox import Outbox


def test_outbox_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path) as outbox:
        first = outbox.add("icu/w1/b1/alerts", b"one")
        second = outbox.add("icu/w1/b1/alerts", b"two")
        outbox.add("icu/w1/b2/alerts", b"three")
        outbox.remove(second.id)
        assert len(outbox) == 2
        outbox.remove(second.id)  # a second PUBACK for the same entry changes nothing
        assert len(outbox) == 2
    with Outbox(path) as reopened:
        assert [e.payload for e in reopened.pending()] == [b"one", b"three"]
        assert reopened.pending()[0].id == first.id
        assert len(reopened) == 2
        later = reopened.add("icu/w1/b1/alerts", b"four")
        assert later.id > first.id


def test_checkpoint_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoint.json")
    assert store.load() is None
    store.save({"beds": {"w1/b1": {"map": [1, 2]}}}, saved_at=1.0)
    store.save({"beds": {}}, saved_at=2.0)
    assert store.load() == {"beds": {}}
    assert not (tmp_path / "checkpoint.json.tmp").exists()


def test_corrupt_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text("{half", encoding="utf-8")
    with pytest.raises(ConfigError, match="move it away"):
        CheckpointStore(path).load()
    path.write_text('{"format": 99, "evaluator": {}}', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown format"):
        CheckpointStore(path).load()


def test_metrics_use_the_injected_registry() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.messages.labels("rejected", "schema").inc()
    metrics.latency.observe(0.0007)
    assert (
        registry.get_sample_value(
            "streamproc_messages_received_total", {"outcome": "rejected", "reason": "schema"}
        )
        == 1.0
    )
    assert (
        registry.get_sample_value("streamproc_processing_latency_seconds_bucket", {"le": "0.001"})
        == 1.0
    )
    for reason in REJECTION_REASONS:  # every reason is exposed from the start, at 0
        labels = {"outcome": "rejected", "reason": reason}
        assert registry.get_sample_value("streamproc_messages_received_total", labels) in {
            0.0,
            1.0,
        }
    other = CollectorRegistry()
    Metrics(other)  # a second instance on its own registry does not clash
    assert other.get_sample_value("streamproc_reconnects_total") == 0.0


async def _http_get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.asyncio
async def test_health_server_routes() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    ready = {"now": False}
    scrapes: list[int] = []
    server = HealthServer(
        registry=registry,
        ready=lambda: ready["now"],
        before_scrape=lambda: scrapes.append(1),
        port=0,
    )
    await server.start()
    try:
        status, body = await _http_get(server.port, "/metrics")
        assert status == 200
        for name in METRIC_NAMES:
            assert name.encode() in body
        assert scrapes == [1]
        assert (await _http_get(server.port, "/healthz"))[0] == 200
        assert (await _http_get(server.port, "/readyz"))[0] == 503
        ready["now"] = True
        assert (await _http_get(server.port, "/readyz"))[0] == 200
        assert (await _http_get(server.port, "/nope"))[0] == 404
        assert server.respond("POST", "/metrics")[0] == 405
    finally:
        await server.stop()


def test_backoff_grows_capped_with_jitter() -> None:
    backoff = Backoff(base=0.5, cap=4.0, rng=random.Random(7))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    backoff.reset()
    assert backoff.next_delay() <= 0.5


@pytest.mark.parametrize(
    ("owned", "expected"),
    [
        ("icu/#", "icu/+/+/"),
        ("icu/w1/#", "icu/w1/+/"),
        ("icu/w1/b07/#", "icu/w1/b07/"),
    ],
)
def test_inbound_filters_never_include_our_own_topics(owned: str, expected: str) -> None:
    filters = inbound_filters([owned])
    assert filters == [f"{expected}{kind}" for kind in ("vitals", "waveform/abp", "context", "ack")]
    assert not any(f.endswith(("alerts", "status", "#")) for f in filters)


@pytest.mark.parametrize("owned", ["#", "icu/+/+/alerts", "ward/#", "icu/#/x/#", "icu/a/b/c/#"])
def test_inbound_filters_reject_what_they_cannot_own(owned: str) -> None:
    with pytest.raises(ConfigError, match="topic filter"):
        inbound_filters([owned])


@pytest.mark.asyncio
async def test_checkpoint_encoded_piecewise_equals_the_plain_encoding(tmp_path: Path) -> None:
    snapshot = {"version": 1, "beds": [{"bed": f"b{n}", "map": [n, 1.5]} for n in range(40)]}
    plain = CheckpointStore(tmp_path / "plain.json")
    plain.save(snapshot, saved_at=5.0)
    piecewise = CheckpointStore(tmp_path / "piecewise.json")
    await piecewise.save_async(snapshot)
    assert piecewise.load() == plain.load() == snapshot
    assert json.loads((tmp_path / "plain.json").read_bytes())["saved_at"] == 5.0
