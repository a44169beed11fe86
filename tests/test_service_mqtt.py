"""The MQTT adapter against a real Mosquitto: state topic, persistent session, back-pressure."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import pytest

from streamproc.broker import LocalBroker, free_port
from streamproc.errors import BrokerError
from streamproc.mqtt import BrokerLink, Inbox, inbound_filters
from streamproc.settings import load_settings

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]


def _link(broker: LocalBroker, inbox: Inbox, **options: int) -> BrokerLink:
    return BrokerLink(url=broker.url, instance="adapter-test", inbox=inbox, **options)


@asynccontextmanager
async def _client(broker: LocalBroker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        yield c


async def _retained(broker: LocalBroker, topic: str) -> bytes:
    async with _client(broker) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(5):
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError("unreachable")


async def test_online_then_offline_on_state_topic(broker: LocalBroker) -> None:
    inbox = Inbox(high_water=10)
    async with _link(broker, inbox).connect():
        assert await _retained(broker, "streamproc/adapter-test/state") == b"online"
    assert await _retained(broker, "streamproc/adapter-test/state") == b"offline"


async def test_persistent_session_keeps_readings_while_down(broker: LocalBroker) -> None:
    inbox = Inbox(high_water=10)
    link = _link(broker, inbox)
    async with link.connect() as session:
        await session.subscribe(inbound_filters(["icu/#"]))
    async with _client(broker) as publisher:
        await publisher.publish("icu/w1/b1/vitals", b'{"while": "down"}', qos=1)
        await publisher.publish("icu/w1/b1/alerts", b'{"ours": true}', qos=1)
    async with link.connect() as session:
        item = await asyncio.wait_for(inbox.get(), 5)
        assert (item.topic, item.payload, item.qos) == ("icu/w1/b1/vitals", b'{"while": "down"}', 1)
        session.ack(item)
        await asyncio.sleep(0.2)
        assert inbox.empty()  # our own alerts topic is not consumed


async def test_receive_maximum_applies_back_pressure(broker: LocalBroker) -> None:
    inbox = Inbox(high_water=100)
    async with _link(broker, inbox, receive_maximum=3).connect() as session:
        await session.subscribe(["icu/+/+/vitals"])
        async with _client(broker) as publisher:
            for n in range(10):
                await publisher.publish("icu/w1/b1/vitals", str(n).encode(), qos=1)
        await asyncio.sleep(0.3)
        assert inbox.qsize() == 3  # the broker holds the rest until we acknowledge
        received = []
        async with asyncio.timeout(5):
            while len(received) < 10:
                item = await inbox.get()
                received.append(int(item.payload))
                session.ack(item)
        assert received == list(range(10))


async def test_unreachable_broker_is_a_broker_error() -> None:
    inbox = Inbox(high_water=1)
    link = BrokerLink(url="mqtt://127.0.0.1:1", instance="nobody", inbox=inbox)
    with pytest.raises(BrokerError, match="cannot connect"):
        async with link.connect():
            pass


async def test_socket_reads_pause_at_the_high_water_mark(broker: LocalBroker) -> None:
    """A resumed session with a backlog: the queue never grows past its high-water mark.

    (Mosquitto 2.0.11 over-sends Receive Maximum here once acknowledgements flow, so the
    adapter also stops reading the socket.)
    """
    inbox = Inbox(high_water=100)
    link = _link(broker, inbox, receive_maximum=1000)
    async with link.connect() as session:
        await session.subscribe(["icu/+/+/vitals"])
    async with _client(broker) as publisher:
        for start in range(0, 3000, 500):
            await asyncio.gather(
                *(
                    publisher.publish(f"icu/w1/b{n % 50}/vitals", str(n).encode(), qos=1)
                    for n in range(start, start + 500)
                )
            )
    received: list[int] = []
    deepest = 0
    async with link.connect() as session, asyncio.timeout(20):
        while len(received) < 3000:
            deepest = max(deepest, inbox.qsize())
            item = await inbox.get()
            received.append(int(item.payload))
            session.ack(item)
            if len(received) % 50 == 0:
                await asyncio.sleep(0.001)  # a slow pipeline
    assert deepest <= 101
    assert sorted(received) == list(range(3000))


async def test_mqtts_with_ca_and_client_certificate(tmp_path: Path) -> None:
    """``mqtts://`` with the CA file and a client certificate, against a TLS listener."""
    certs = tmp_path / "certs"
    script = Path(__file__).parent.parent / "deploy" / "mosquitto" / "make-certs.sh"
    for args in (["ca"], ["server", "broker", "127.0.0.1"], ["client", "streamproc"]):
        subprocess.run(  # noqa: ASYNC221 - set-up before anything async runs
            ["bash", str(script), str(certs), *args], check=True, capture_output=True
        )
    tls_port = free_port()
    listener = (
        f"listener {tls_port} 127.0.0.1\ncafile {certs}/ca.crt\ncertfile {certs}/broker.crt\n"
        f"keyfile {certs}/broker.key\nrequire_certificate true\n"
    )
    with LocalBroker(workdir=tmp_path / "broker", extra_config=listener) as broker:
        inbox = Inbox(high_water=10)
        link = BrokerLink(
            url=f"mqtts://127.0.0.1:{tls_port}",
            instance="tls-test",
            inbox=inbox,
            ca_file=certs / "ca.crt",
            client_cert=certs / "streamproc.crt",
            client_key=certs / "streamproc.key",
        )
        assert link.tls
        async with link.connect() as session:
            await session.subscribe(["icu/+/+/vitals"])
            async with _client(broker) as publisher:  # plain listener, same broker
                await publisher.publish("icu/w1/b1/vitals", b"over TLS", qos=1)
            item = await asyncio.wait_for(inbox.get(), 5)
            assert item.payload == b"over TLS"
            session.ack(item)


async def test_username_and_password_from_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password reaches the broker from STREAMPROC_PASSWORD; a wrong one is refused."""
    passwords = tmp_path / "passwords"
    subprocess.run(  # noqa: ASYNC221 - set-up before anything async runs
        ["mosquitto_passwd", "-c", "-b", str(passwords), "streamproc", "s3cret"], check=True
    )
    with LocalBroker(
        workdir=tmp_path / "broker", extra_config=f"password_file {passwords}\n"
    ) as broker:
        for password, works in (("s3cret", True), ("wrong", False)):
            monkeypatch.setenv("STREAMPROC_PASSWORD", password)
            settings = load_settings(broker=broker.url, username="streamproc")
            link = BrokerLink(
                url=settings.broker, instance="auth-test", inbox=Inbox(high_water=10),
                username=settings.username, password=settings.password_value(),
            )  # fmt: skip
            if works:
                async with link.connect():
                    pass
            else:
                with pytest.raises(BrokerError, match="cannot connect"):
                    async with link.connect():
                        pass
