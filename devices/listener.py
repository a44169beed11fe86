"""The load test's ward consumer: a separate process that subscribes to alerts and rejections.

It runs in its own process (its own interpreter and event loop), so the time it stamps on
an arriving alert is not delayed by the load generator's publishing work. It talks to the
parent over a pipe:

It also receives the generator's echo probes (``echo_topic``): the same broker round trip
without streamproc, a same-run baseline for the alert latency.

    child → parent   ("ready",)                          once subscribed
                     ("progress", alerts, rejections)     about once a second
                     ("done", records, cpu_seconds)       after ("stop",)
                     ("error", message)                   the broker failed us
    parent → child   ("stop",)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import aiomqtt

from devices.publisher import connect
from streamproc.errors import BrokerError

__all__ = ["AlertRecord", "echo_topic", "listen"]

logger = logging.getLogger(__name__)

#: How often the listener reports its counters to the parent (wall seconds).
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert event or a rejection as it arrived (``received``: wall clock, epoch s)."""

    received: float
    topic: str
    bed: str | None = None
    rule: str | None = None
    event: str | None = None
    kind: str | None = None
    priority: str | None = None
    at: str | None = None
    reason: str | None = None  # rejections only
    rejected_topic: str | None = None


def echo_topic(ward: str) -> str:
    """Where the generator publishes its baseline probes (a broker round trip, no streamproc)."""
    return f"devices/loadtest/{ward}/echo"


def _record(message: aiomqtt.Message, received: float) -> AlertRecord:
    topic = str(message.topic)
    payload = message.payload if isinstance(message.payload, bytes) else b""
    if topic.endswith("/echo"):
        return AlertRecord(received, topic, rule="echo", at=payload.decode("ascii", "replace"))
    try:
        body = json.loads(payload)
    except ValueError:
        return AlertRecord(received, topic, reason="unparseable")
    if topic.endswith("/rejected"):
        return AlertRecord(
            received, topic, reason=body.get("reason"), rejected_topic=body.get("topic")
        )
    return AlertRecord(
        received,
        topic,
        bed=body.get("bed"),
        rule=body.get("rule"),
        event=body.get("event"),
        kind=body.get("kind"),
        priority=body.get("priority"),
        at=body.get("at"),
    )


def listen(conn: Connection, broker: str, ward: str) -> None:
    """Process entry point: subscribe, collect until told to stop, send the records."""
    started_cpu = time.process_time()
    try:
        records = asyncio.run(_listen(conn, broker, ward))
    except BrokerError as exc:
        conn.send(("error", str(exc)))
    else:
        conn.send(("done", records, time.process_time() - started_cpu))
    finally:
        conn.close()


async def _listen(conn: Connection, broker: str, ward: str) -> list[AlertRecord]:
    records: list[AlertRecord] = []
    async with connect(broker, identifier=f"devices-loadtest-listener-{ward}") as client:
        await client.subscribe(f"icu/{ward}/+/alerts", qos=1)
        await client.subscribe("streamproc/+/rejected", qos=1)
        await client.subscribe(echo_topic(ward), qos=1)
        conn.send(("ready",))
        counts = {"alerts": 0, "rejections": 0}
        async with asyncio.TaskGroup() as group:
            collector = group.create_task(_collect(client, records, counts))
            await _until_stopped(conn, counts)
            collector.cancel()
    return records


async def _collect(
    client: aiomqtt.Client, records: list[AlertRecord], counts: dict[str, int]
) -> None:
    async for message in client.messages:
        record = _record(message, time.time())
        records.append(record)
        if record.rule != "echo":
            counts["alerts" if record.reason is None else "rejections"] += 1


async def _until_stopped(conn: Connection, counts: dict[str, int]) -> None:
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while not (conn.poll() and conn.recv() == ("stop",)):
        if time.monotonic() >= next_report:
            next_report += PROGRESS_EVERY_S
            conn.send(("progress", counts["alerts"], counts["rejections"]))
        await asyncio.sleep(0.02)
