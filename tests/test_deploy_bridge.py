"""Edge-to-central bridging with the shipped ``deploy/mosquitto/bridge.conf`` (design §8).

Two real Mosquittos on loopback, both running ``deploy/mosquitto/mosquitto.conf`` over TLS:
a ward (edge) broker with ``ward.acl`` and the bridge in its ``conf.d``, and a central
broker with ``central.acl`` and the ward's bridge account. Alerts, status and
streamproc's state go up, acknowledgements come down, readings stay on the ward.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from deploy_support import (
    CENTRAL_ACCOUNTS,
    MOSQUITTO,
    WAIT,
    DeployBroker,
    Pki,
    client,
    password,
    received_until,
    render,
)

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

ALERT = b'{"alert_id": "4f0c2a9e71b3d5c8", "event": "raised", "secondary": true}'
CONNECTION_STATE = "$SYS/broker/connection/bridge-icu1/state"


def bridge_config(central: DeployBroker) -> str:
    return render(
        (MOSQUITTO / "bridge.conf").read_text(encoding="utf-8"),
        {
            "address mqtt-central.hospital.example:8883": f"address 127.0.0.1:{central.port}",
            "remote_password CHANGE-ME": f"remote_password {password('bridge-icu1')}",
            "bridge_cafile /etc/mosquitto/certs/ca.crt": f"bridge_cafile {central.pki.ca}",
        },
    )


@pytest.fixture
def brokers(tmp_path: Path, deploy_pki: Pki) -> Iterator[tuple[DeployBroker, DeployBroker]]:
    central = DeployBroker(
        workdir=tmp_path / "central",
        pki=deploy_pki,
        acl="central.acl",
        accounts=CENTRAL_ACCOUNTS,
        server="central",
    )
    with central:
        bridge = {"bridge.conf": bridge_config(central)}
        edge = DeployBroker(workdir=tmp_path / "edge", pki=deploy_pki, conf_d=bridge)
        with edge:
            yield edge, central


async def wait_bridge_connected(edge: DeployBroker) -> None:
    """The edge announces the bridge's state locally (notifications_local_only)."""
    async with client(edge, "observer") as observer:
        await observer.subscribe(CONNECTION_STATE, qos=1)
        async with asyncio.timeout(WAIT):
            async for message in observer.messages:
                if message.payload == b"1":
                    return


def topics(messages: list[aiomqtt.Message]) -> list[str]:
    return [message.topic.value for message in messages]


async def test_alerts_status_and_state_reach_the_central_broker_and_readings_stay(
    brokers: tuple[DeployBroker, DeployBroker],
) -> None:
    edge, central = brokers
    await wait_bridge_connected(edge)
    async with client(central, "observer") as everything:
        await everything.subscribe("#", qos=1)
        async with client(edge, "streamproc") as processor, client(edge, "icu1/b07") as device:
            await device.publish("icu/icu1/b07/vitals", b'{"values": {"map": 44}}', qos=1)
            await processor.publish("streamproc/streamproc/state", b"online", qos=1, retain=True)
            await processor.publish("icu/icu1/b07/status", b'{"bed": "b07"}', qos=1, retain=True)
            await processor.publish("icu/icu1/b07/alerts", ALERT, qos=1)
            seen = await received_until(everything, "icu/icu1/b07/alerts")
    assert topics(seen) == [
        "streamproc/streamproc/state",
        "icu/icu1/b07/status",
        "icu/icu1/b07/alerts",
    ]
    assert seen[-1].payload == ALERT
    # the bed status stays retained centrally: a dashboard that starts later sees it
    async with client(central, "central-desk") as dashboard:
        await dashboard.subscribe("icu/+/+/status", qos=1)
        status = await received_until(dashboard, "icu/icu1/b07/status")
    assert status[0].retain
    assert status[0].payload == b'{"bed": "b07"}'


async def test_a_central_ack_reaches_the_ward_and_other_wards_acks_do_not(
    brokers: tuple[DeployBroker, DeployBroker],
) -> None:
    edge, central = brokers
    await wait_bridge_connected(edge)
    async with client(edge, "streamproc") as processor:
        await processor.subscribe("icu/#", qos=1)
        async with client(central, "central-desk") as dashboard:
            await dashboard.publish("icu/icu2/b01/ack", b'{"alert_id": "other"}', qos=1)
            await dashboard.publish("icu/icu1/b07/ack", b'{"alert_id": "4f0c"}', qos=1)
            seen = await received_until(processor, "icu/icu1/b07/ack")
    assert topics(seen) == ["icu/icu1/b07/ack"]
    assert seen[0].payload == b'{"alert_id": "4f0c"}'


async def test_the_bridge_account_cannot_forge_another_wards_alerts(
    brokers: tuple[DeployBroker, DeployBroker],
) -> None:
    _, central = brokers
    async with client(central, "observer") as everything:
        await everything.subscribe("icu/#", qos=1)
        async with client(central, "bridge-icu1", identifier="forger") as bridge_account:
            await bridge_account.publish("icu/icu2/b01/alerts", ALERT, qos=1)
            await bridge_account.publish("icu/icu1/b01/vitals", b"{}", qos=1)
            await bridge_account.publish("icu/icu1/b01/alerts", ALERT, qos=1)
            seen = await received_until(everything, "icu/icu1/b01/alerts")
    assert topics(seen) == ["icu/icu1/b01/alerts"]
