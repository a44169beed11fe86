"""The MQTT adapter: the only module that imports aiomqtt (and paho underneath it).

What the service needs from the broker, and how it gets it (design §6):

* **A persistent session.** MQTT 5, clean start off, a session expiry: readings published
  while streamproc restarts wait in the broker and arrive after the reconnect.
* **Back-pressure.** Inbound messages are acknowledged (PUBACK) only after the pipeline has
  processed them, and the CONNECT packet announces a *Receive Maximum*: a broker that
  honours it never has more unacknowledged QoS 1 messages in flight to us. Mosquitto
  2.0.11 does not always (see :class:`Inbox`), so the adapter also stops reading the socket
  while the :class:`Inbox` is full; either way, when the pipeline falls behind, the broker
  keeps the readings in our session instead of us buffering them.
* **Alerts without waiting.** :meth:`Session.publish_tracked` hands a message to the client
  and writes it at once; a callback runs on its PUBACK.
* **Speed.** aiomqtt's ``messages`` iterator costs a task per message; the adapter takes
  paho's ``on_message`` callback instead and puts a small :class:`Inbound` straight into
  the bounded queue, stamped with the arrival time. TCP_NODELAY is set on the socket (with
  Nagle's algorithm a QoS 1 round trip on loopback takes tens of milliseconds).
* **Liveness.** A retained ``online`` on ``streamproc/{instance}/state`` and a Last Will
  ``offline``; :func:`stay_connected` reconnects with capped exponential backoff and jitter.

``aiomqtt.MqttError`` is translated to :class:`~streamproc.errors.BrokerError` here and
nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.client import Client as PahoClient
from paho.mqtt.client import MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamproc.codec import INBOUND_KINDS
from streamproc.errors import BrokerError, ConfigError

__all__ = [
    "Backoff",
    "BrokerLink",
    "Inbound",
    "Inbox",
    "Session",
    "count_messages",
    "create_session",
    "inbound_filters",
    "open_publisher",
    "state_topic",
    "stay_connected",
]

logger = logging.getLogger(__name__)

#: aiomqtt warns on every publish once more than this many are pending; alerts, statuses
#: and rejections may legitimately be in flight together by the thousand.
_PENDING_CALLS_THRESHOLD: Final = 100_000
#: QoS 1 publishes paho keeps in flight before it queues (paho's default is 20).
_MAX_INFLIGHT: Final = 1000
#: Room in the inbound queue above its high-water mark (TLS may decode a few packets at once).
_HEADROOM: Final = 1000
_NODELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


@dataclass(slots=True)
class Inbound:
    """One received message; ``received`` is the wall clock at arrival (epoch seconds)."""

    topic: str
    payload: bytes
    received: float
    mid: int
    qos: int
    session: int  # which connection delivered it: acknowledgements go back on that one


class _ReadGate:
    """Stops and restarts reading one client's socket (the back-pressure of last resort)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho: PahoClient = client._client
        self._loop = asyncio.get_running_loop()
        sock = self._paho.socket()
        self._fd = -1 if sock is None else sock.fileno()
        self.paused = False

    def pause(self) -> None:
        if not self.paused and self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self.paused = True

    def resume(self) -> None:
        if not self.paused:
            return
        self.paused = False
        sock = self._paho.socket()
        if sock is not None and sock.fileno() == self._fd:  # not a closed (or reused) fd
            self._loop.add_reader(self._fd, self._read)

    def _read(self) -> None:
        # what aiomqtt's own reader does: read packets, and report a broken connection
        disconnected = self._client._disconnected
        try:
            self._paho.loop_read()
            sock = self._paho.socket()
            while isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
                self._paho.loop_read()
        except Exception as exc:
            if not disconnected.done():
                disconnected.set_exception(exc)


class Inbox(asyncio.Queue[Inbound]):
    """The bounded inbound queue between the client and the pipeline.

    Two mechanisms keep it bounded. The broker should never have more than Receive Maximum
    unacknowledged QoS 1 messages in flight to us; but Mosquitto 2.0.11, resuming a session
    with a backlog, was measured sending thousands more once acknowledgements flow. So when
    the queue reaches ``high_water`` the adapter also stops reading the socket (TCP then
    pushes back on the broker) and starts again once the pipeline has taken it down to
    half. paho decodes one packet per read, so the queue never exceeds ``high_water + 1``.
    """

    def __init__(self, *, high_water: int) -> None:
        super().__init__(maxsize=high_water + _HEADROOM)
        self.high_water = high_water
        self.closed = False
        self._gate: _ReadGate | None = None

    def attach(self, gate: _ReadGate | None) -> None:
        self._gate = gate
        if gate is not None and self.closed:
            gate.resume()

    def close(self) -> None:
        """Take no more messages, but keep reading the socket (for PUBACKs on shutdown).

        Messages that arrive from now on are not acknowledged, so the broker delivers them
        again on the next session.
        """
        self.closed = True
        if self._gate is not None:
            self._gate.resume()

    def offer(self, item: Inbound) -> bool:
        """Queue ``item`` without waiting; ``False`` only if the queue was full."""
        if self.closed:
            return True  # left unacknowledged: redelivered after the restart
        try:
            self.put_nowait(item)
        except asyncio.QueueFull:
            return False
        if self._gate is not None and self.qsize() >= self.high_water:
            self._gate.pause()
        return True

    def get_nowait(self) -> Inbound:
        item = super().get_nowait()
        gate = self._gate
        if gate is not None and gate.paused and self.qsize() <= self.high_water // 2:
            gate.resume()
        return item


def state_topic(instance: str) -> str:
    return f"streamproc/{instance}/state"


def inbound_filters(owned: Iterable[str]) -> list[str]:
    """Subscription filters for the inbound kinds within each owned filter.

    ``icu/#`` becomes ``icu/+/+/vitals``, ``icu/+/+/waveform/abp``, ``icu/+/+/context`` and
    ``icu/+/+/ack``: subscribing to ``icu/#`` itself would deliver our own alerts and
    statuses back to us.
    """
    filters: list[str] = []
    for owned_filter in owned:
        for kind_filter in _expand(owned_filter):
            if kind_filter not in filters:
                filters.append(kind_filter)
    return filters


def _expand(owned: str) -> list[str]:
    levels = owned.split("/")
    if levels[0] != "icu" or not 2 <= len(levels) <= 4 or levels[-1] != "#":
        raise ConfigError(
            f"topic filter {owned!r}: use icu/#, icu/{{ward}}/# or icu/{{ward}}/{{bed}}/#"
        )
    prefix = levels[:-1] + ["+"] * (4 - len(levels))
    if any(level in {"#", ""} for level in prefix):
        raise ConfigError(f"topic filter {owned!r}: only a final # is allowed")
    return ["/".join([*prefix, kind]) for kind in INBOUND_KINDS]


class Backoff:
    """Capped exponential backoff with jitter: ``uniform(c/2, c)``, ``c = min(cap, base*2**n)``."""

    def __init__(
        self, *, base: float = 0.25, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * 2**self.failures)
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0


class Session:
    """One live connection: publish, acknowledge, and wait for its end."""

    def __init__(self, client: aiomqtt.Client, number: int) -> None:
        self._client = client
        self._paho: PahoClient = client._client
        self.number = number
        self._on_puback: dict[int, Callable[[str | None], None]] = {}
        aiomqtt_on_publish = self._paho.on_publish

        def on_publish(*args: Any) -> None:
            if aiomqtt_on_publish is not None:
                aiomqtt_on_publish(*args)
            callback = self._on_puback.pop(args[2], None)  # (client, userdata, mid, reason, …)
            if callback is not None:
                callback(_refusal(args[3] if len(args) > 3 else None))

        self._paho.on_publish = on_publish

    async def subscribe(self, filters: Iterable[str]) -> None:
        try:
            for topic_filter in filters:
                await self._client.subscribe(topic_filter, qos=1)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"subscribe failed: {exc}") from exc

    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Publish and wait for the broker's PUBACK (QoS 1)."""
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"publish to {topic} failed: {exc}") from exc

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None:
        """Hand a message to the client without waiting for its acknowledgement."""
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc != 0:
            raise BrokerError(f"publish to {topic} failed: paho code {info.rc}")

    def publish_tracked(
        self, topic: str, payload: bytes, on_puback: Callable[[str | None], None]
    ) -> None:
        """Hand a QoS 1 message to the client now; ``on_puback`` runs on the broker's PUBACK.

        ``on_puback`` gets ``None`` when the broker took the message, or the MQTT 5 reason
        it gave for refusing it (e.g. ``"Not authorized"`` from an ACL): a refused PUBACK is
        not a delivery. Nothing is awaited, so the receive path can publish an alert the
        moment it is raised. If the connection is lost first, ``on_puback`` never runs.
        """
        info = self._paho.publish(topic, payload, 1, False)
        if info.rc != 0:
            raise BrokerError(f"publish to {topic} failed: paho code {info.rc}")
        self._on_puback[info.mid] = on_puback
        # write now rather than on the loop's next turn (what aiomqtt's writer would do)
        self._paho.loop_write()

    def ack(self, message: Inbound) -> None:
        """PUBACK a processed QoS 1 message (no-op for QoS 0 or an older connection)."""
        if message.qos and message.session == self.number:
            self._paho.ack(message.mid, message.qos)

    async def closed(self) -> None:
        """Return when the connection ends; raise :class:`BrokerError` if it was lost."""
        disconnected = self._client._disconnected
        try:
            await asyncio.shield(disconnected)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"connection lost: {exc}") from exc
        except OSError as exc:
            raise BrokerError(f"connection lost: {exc}") from exc


def _refusal(reason_code: Any) -> str | None:
    """The broker's reason for refusing a publish, or ``None`` when it accepted it."""
    if reason_code is not None and getattr(reason_code, "is_failure", False):
        return str(reason_code)
    return None


class BrokerLink:
    """How to reach the broker; :meth:`connect` opens one :class:`Session`."""

    def __init__(
        self,
        *,
        url: str,
        instance: str,
        inbox: Inbox,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        session_expiry: int = 3600,
        receive_maximum: int = 1000,
        keepalive: int = 15,
        clean_start: bool = False,
    ) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.instance = instance
        self.inbox = inbox
        self._auth = (username, password)
        self._tls_files = (ca_file, client_cert, client_key)
        self._session_expiry = session_expiry
        self._receive_maximum = receive_maximum
        self._keepalive = keepalive
        self._clean_start = clean_start
        self._sessions = 0
        #: called with a message dropped because the queue was full (should never happen)
        self.on_overflow: Callable[[Inbound], None] = lambda _item: None

    def _client(self) -> aiomqtt.Client:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry
        properties.ReceiveMaximum = self._receive_maximum
        username, password = self._auth
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.instance,
            username=username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=self._clean_start,
            properties=properties,
            keepalive=self._keepalive,
            will=aiomqtt.Will(state_topic(self.instance), b"offline", qos=1, retain=True),
            max_inflight_messages=_MAX_INFLIGHT,
            socket_options=_NODELAY,
            tls_context=self._tls_context(),
        )
        client.pending_calls_threshold = _PENDING_CALLS_THRESHOLD
        return client

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ca_file, cert, key = self._tls_files
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if cert is not None:
                context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS files cannot be loaded: {exc}") from exc
        return context

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Session]:
        """Connect; on leaving, publish ``offline`` and disconnect cleanly (no Last Will)."""
        client = self._client()
        self._sessions += 1
        number = self._sessions
        paho: PahoClient = client._client
        paho.manual_ack_set(True)
        paho.on_message = self._receiver(number)
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        session = Session(client, number)
        self.inbox.attach(_ReadGate(client))
        try:
            # not awaited: with a backlog the socket may pause before the PUBACK is read
            session.publish_nowait(state_topic(self.instance), b"online", qos=1, retain=True)
            yield session
            with suppress(BrokerError):
                await session.publish(state_topic(self.instance), b"offline", qos=1, retain=True)
        finally:
            self.inbox.attach(None)
            with suppress(aiomqtt.MqttError):
                await client.__aexit__(None, None, None)

    def _receiver(self, number: int) -> Callable[[PahoClient, Any, MQTTMessage], None]:
        inbox = self.inbox

        def on_message(_client: PahoClient, _userdata: Any, message: MQTTMessage) -> None:
            item = Inbound(
                message.topic, bytes(message.payload), time.time(), message.mid, message.qos, number
            )
            if not inbox.offer(item):
                self.on_overflow(item)

        return on_message


async def stay_connected(
    link: BrokerLink,
    *,
    on_connect: Callable[[Session], Awaitable[None]],
    on_disconnect: Callable[[], None],
    stop: asyncio.Event,
    backoff: Backoff,
) -> None:
    """Keep one session open until ``stop`` is set, reconnecting after every failure."""
    while not stop.is_set():
        try:
            async with link.connect() as session:
                backoff.reset()
                await on_connect(session)
                await _until_closed_or_stopped(session, stop)
        except BrokerError as exc:
            delay = backoff.next_delay()
            logger.warning("broker: %s; reconnecting in %.1f s", exc, delay)
            on_disconnect()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        else:
            on_disconnect()


async def _until_closed_or_stopped(session: Session, stop: asyncio.Event) -> None:
    closed = asyncio.ensure_future(session.closed())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((closed, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (closed, stopping):
            task.cancel()
    if closed.done() and not closed.cancelled():
        closed.result()  # raises BrokerError when the connection was lost


class Publisher:
    """A plain MQTT 5 publisher for simulated monitors and benchmarks (no session state)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"publish to {topic} failed: {exc}") from exc


def _plain_client(url: str, identifier: str | None, *, persistent: bool = False) -> aiomqtt.Client:
    parts = urlsplit(url)
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 600
    client = aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent,
        properties=properties,
        max_inflight_messages=_MAX_INFLIGHT,
        socket_options=_NODELAY,
    )
    client.pending_calls_threshold = _PENDING_CALLS_THRESHOLD
    return client


@asynccontextmanager
async def open_publisher(url: str, *, identifier: str | None = None) -> AsyncIterator[Publisher]:
    """Connect a :class:`Publisher` to a plain ``mqtt://`` broker."""
    client = _plain_client(url, identifier)
    try:
        async with client:
            yield Publisher(client)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"publisher lost {url}: {exc}") from exc


async def create_session(url: str, *, identifier: str, topic_filter: str) -> None:
    """Leave a persistent session subscribed to ``topic_filter`` (QoS 1) on the broker."""
    async with _plain_client(url, identifier, persistent=True) as client:
        await client.subscribe(topic_filter, qos=1)


async def count_messages(
    url: str, *, identifier: str, expected: int, give_up_after: float
) -> tuple[int, float]:
    """A bare aiomqtt subscriber that only counts: ``(count, seconds first → last)``.

    The benchmark's baseline: the fastest a Python consumer on aiomqtt's own message
    iterator drains the persistent session :func:`create_session` left, at QoS 1.
    """
    count, first, last = 0, 0.0, 0.0
    async with _plain_client(url, identifier, persistent=True) as client:
        with suppress(TimeoutError):
            async with asyncio.timeout(give_up_after):
                async for _message in client.messages:
                    last = time.perf_counter()
                    if count == 0:
                        first = last
                    count += 1
                    if count >= expected:
                        break
    return count, last - first
