"""The shipped ward broker configuration keeps everyone where they belong.

Each test starts a real Mosquitto with ``deploy/mosquitto/mosquitto.conf`` and
``ward.acl`` (TLS listener, password file and ACL blocks made by ``add-account.sh``) and
certificates from ``make-certs.sh``. A denied publish is silently dropped by MQTT 3.1.1,
so each test shows it went nowhere: a subscriber allowed to read it gets a later marker
message from the same publisher, and not the denied one.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from deploy_support import WAIT, DeployBroker, Pki, client, received_until

pytestmark = pytest.mark.broker

READING = b'{"ts": "2026-11-25T12:00:00Z", "values": {"map": 63.0}}'


@pytest.fixture
def ward(tmp_path: Path, deploy_pki: Pki) -> Iterator[DeployBroker]:
    with DeployBroker(workdir=tmp_path / "ward", pki=deploy_pki) as broker:
        yield broker


def topics(messages: list[aiomqtt.Message]) -> list[str]:
    return [message.topic.value for message in messages]


@pytest.mark.asyncio
async def test_a_device_writes_its_own_bed_and_nothing_else(ward: DeployBroker) -> None:
    async with client(ward, "observer") as observer, client(ward, "icu1/b07") as device:
        await observer.subscribe("#", qos=1)
        for topic in (
            "icu/icu1/b08/vitals",  # another bed
            "icu/icu1/b08/waveform/abp",
            "icu/icu2/b07/vitals",  # the same bed name in another ward
            "icu/icu1/b07/alerts",  # only streamproc raises alerts
            "icu/icu1/b07/status",
            "icu/icu1/b07/ack",  # only consumers acknowledge
            "streamproc/streamproc/state",
        ):
            await device.publish(topic, READING, qos=1)
        for topic in ("icu/icu1/b07/waveform/abp", "icu/icu1/b07/context", "icu/icu1/b07/vitals"):
            await device.publish(topic, READING, qos=1)
        seen = await received_until(observer, "icu/icu1/b07/vitals")
    own = ["icu/icu1/b07/waveform/abp", "icu/icu1/b07/context", "icu/icu1/b07/vitals"]
    assert topics(seen) == own


@pytest.mark.asyncio
async def test_streamproc_reads_readings_and_alone_writes_alerts_and_status(
    ward: DeployBroker,
) -> None:
    async with (
        client(ward, "streamproc") as processor,
        client(ward, "nurse-icu1") as consumer,
        client(ward, "icu1/b07") as device,
    ):
        await processor.subscribe("icu/#", qos=1)
        await consumer.subscribe("icu/+/+/alerts", qos=1)
        await consumer.subscribe("icu/+/+/status", qos=1)
        await device.publish("icu/icu1/b07/vitals", READING, qos=1)
        assert topics(await received_until(processor, "icu/icu1/b07/vitals")) == [
            "icu/icu1/b07/vitals"
        ]
        await processor.publish("icu/icu1/b07/status", b"{}", qos=1, retain=True)
        await processor.publish("icu/icu1/b07/alerts", b"{}", qos=1)
        seen = await received_until(consumer, "icu/icu1/b07/alerts")
    assert topics(seen) == ["icu/icu1/b07/status", "icu/icu1/b07/alerts"]


@pytest.mark.asyncio
async def test_a_ward_consumer_acknowledges_but_cannot_publish_readings(
    ward: DeployBroker,
) -> None:
    async with client(ward, "streamproc") as processor, client(ward, "nurse-icu1") as consumer:
        await processor.subscribe("icu/#", qos=1)
        await consumer.publish("icu/icu1/b07/vitals", READING, qos=1)
        await consumer.publish("icu/icu1/b07/context", b"{}", qos=1)
        await consumer.publish("icu/icu1/b07/alerts", b"{}", qos=1)
        await consumer.publish("icu/icu1/b07/ack", b'{"alert_id": "x", "by": "n1"}', qos=1)
        seen = await received_until(processor, "icu/icu1/b07/ack")
    assert topics(seen) == ["icu/icu1/b07/ack"]


@pytest.mark.asyncio
async def test_a_consumer_cannot_read_readings_or_rejections(ward: DeployBroker) -> None:
    async with (
        client(ward, "nurse-icu1") as consumer,
        client(ward, "icu1/b07") as device,
        client(ward, "streamproc") as processor,
    ):
        await consumer.subscribe("#", qos=1)
        await device.publish("icu/icu1/b07/vitals", READING, qos=1)
        await processor.publish("streamproc/streamproc/rejected", READING, qos=1)
        await processor.publish("streamproc/streamproc/state", b"online", qos=1)
        seen = await received_until(consumer, "streamproc/streamproc/state")
    assert topics(seen) == ["streamproc/streamproc/state"]


@pytest.mark.asyncio
async def test_a_ward_gateway_writes_every_bed_of_its_ward_only(ward: DeployBroker) -> None:
    async with client(ward, "observer") as observer, client(ward, "gw-icu1") as gateway:
        await observer.subscribe("#", qos=1)
        await gateway.publish("icu/icu2/b01/vitals", READING, qos=1)
        await gateway.publish("icu/icu1/b01/alerts", b"{}", qos=1)
        await gateway.publish("icu/icu1/b01/vitals", READING, qos=1)
        await gateway.publish("icu/icu1/b02/vitals", READING, qos=1)
        seen = await received_until(observer, "icu/icu1/b02/vitals")
    assert topics(seen) == ["icu/icu1/b01/vitals", "icu/icu1/b02/vitals"]


@pytest.mark.parametrize(
    ("username", "secret"),
    [(None, None), ("icu1/b07", "wrong-password"), ("nobody", "pw-nobody")],
    ids=["anonymous", "wrong-password", "unknown-user"],
)
@pytest.mark.asyncio
async def test_clients_without_valid_credentials_are_refused(
    ward: DeployBroker, username: str | None, secret: str | None
) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|[Bb]ad user"):
        async with client(ward, username, secret=secret):
            pass


def handshake(port: int, context: ssl.SSLContext) -> None:
    """A bare TLS handshake with the broker (raises ssl.SSLError when it is refused)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass


def test_the_listener_speaks_tls_only(ward: DeployBroker) -> None:
    # an MQTT 3.1.1 CONNECT in clear text: the broker closes without a CONNACK
    connect = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"
    with socket.create_connection(("127.0.0.1", ward.port), timeout=WAIT) as plain:
        plain.sendall(connect)
        try:
            answer = plain.recv(4)
        except ConnectionResetError:
            answer = b""
    assert answer == b""  # closed or reset, never a CONNACK (0x20)
    handshake(ward.port, ward.pki.tls())


@pytest.mark.asyncio
async def test_payloads_over_the_service_cap_are_dropped_by_the_broker(
    ward: DeployBroker,
) -> None:
    cap = 64 * 1024  # streamproc's max_payload (codec.DEFAULT_MAX_PAYLOAD)
    async with client(ward, "streamproc") as processor, client(ward, "icu1/b07") as device:
        await processor.subscribe("icu/#", qos=1)
        await device.publish("icu/icu1/b07/vitals", b" " * (cap + 1), qos=1)
        await device.publish("icu/icu1/b07/waveform/abp", b" " * cap, qos=1)
        seen = await received_until(processor, "icu/icu1/b07/waveform/abp")
    assert [len(message.payload) for message in seen] == [cap]  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_mutual_tls_admits_a_client_certificate_and_refuses_none(
    tmp_path: Path, deploy_pki: Pki
) -> None:
    mutual = DeployBroker(workdir=tmp_path / "mtls", pki=deploy_pki, require_certificate=True)
    with mutual as broker:
        async with client(broker, "streamproc", tls=deploy_pki.tls(client="streamproc")):
            pass
        with pytest.raises(ssl.SSLError):
            handshake(broker.port, deploy_pki.tls())


@pytest.mark.asyncio
async def test_readings_wait_in_a_persistent_session_across_a_broker_restart(
    ward: DeployBroker,
) -> None:
    async with client(ward, "streamproc", identifier="sp-icu1", clean_session=False) as processor:
        await processor.subscribe("icu/+/+/vitals", qos=1)
    async with client(ward, "icu1/b07") as device:
        for seq in range(3):
            await device.publish("icu/icu1/b07/vitals", b'{"seq": %d}' % seq, qos=1)
    ward.restart()  # SIGTERM: Mosquitto writes its persistence file, then starts from it
    async with client(ward, "streamproc", identifier="sp-icu1", clean_session=False) as processor:
        seen = await first(processor, 3)
    assert [message.payload for message in seen] == [b'{"seq": 0}', b'{"seq": 1}', b'{"seq": 2}']


async def first(subscriber: aiomqtt.Client, count: int) -> list[aiomqtt.Message]:
    seen: list[aiomqtt.Message] = []
    async with asyncio.timeout(WAIT):
        async for message in subscriber.messages:
            seen.append(message)
            if len(seen) == count:
                break
    return seen
