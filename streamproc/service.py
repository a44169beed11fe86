"""``streamproc run``: the live service around the pure evaluator.

::

    broker ─▶ [mqtt on_message] ─▶ inbox (bounded; socket reads pause when full)
      ─▶ consumer: ingest() ─▶ evaluator ─┬─▶ outbox (SQLite) ─▶ client ─▶ …/alerts
             │                            ├─▶ dirty beds ─▶ status loop ─▶ …/status
             └─▶ PUBACK                   └─▶ rejections ─▶ publisher ─▶ …/rejected
    ticker (1 s) ─▶ evaluator.advance()       checkpoint loop ─▶ state_dir/checkpoint.json

All long-lived tasks run in one ``asyncio.TaskGroup``. The consumer never awaits a
publish: it writes an alert event to the outbox and hands it to the client, which writes
it at once; the broker's PUBACK later deletes it from the outbox. Statuses (coalesced, at
most one per bed per ``status_interval``) and rejection notices go out from a publisher
task. A message is acknowledged to the broker only after it has been processed, so the
bounded inbox applies back-pressure to the broker (see :mod:`streamproc.mqtt`).

SIGTERM or SIGINT: stop reading, publish what is pending (outbox, statuses, rejections),
write a checkpoint, publish ``offline``, disconnect, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry

from streamproc.checkpoint import CheckpointStore
from streamproc.codec import encode_rejection
from streamproc.errors import BrokerError, ConfigError
from streamproc.evaluator import Evaluator
from streamproc.events import BedKey, Reading, Rejection
from streamproc.health import HealthServer
from streamproc.ingest import Outcome, ingest
from streamproc.metrics import PRIORITIES, Metrics
from streamproc.models import AlertEventPayload, dump
from streamproc.mqtt import (
    Backoff,
    BrokerLink,
    Inbound,
    Inbox,
    Session,
    inbound_filters,
    stay_connected,
)
from streamproc.outbox import Outbox, OutboxEntry
from streamproc.protocol import load_protocol
from streamproc.settings import Settings, add_setting_flags, settings_from_args

__all__ = ["Service", "configure_parser", "open_service", "run_service", "serve"]

logger = logging.getLogger(__name__)

#: Seconds between wall-clock ticks (design §5: staleness runs on a 1-s tick).
TICK_INTERVAL: Final = 1.0
#: How often the status loop looks for beds whose coalesced status is due.
_STATUS_POLL: Final = 0.1
#: Messages the consumer processes before it lets the publisher and the socket run.
_CONSUMER_BATCH: Final = 64
#: Bound of the queue of best-effort publishes (statuses and rejections).
_PUBLISH_QUEUE: Final = 10_000
#: Longest wait for the outbox to drain on shutdown.
_DRAIN_TIMEOUT: Final = 5.0
#: At most one WARNING per rejection reason in this many seconds; the rest go to DEBUG.
_REJECTION_LOG_INTERVAL: Final = 10.0


@dataclass(slots=True)
class _Unacked:
    """An outbox entry in memory: which session it was last sent on, and its receipt time."""

    entry: OutboxEntry
    received: float | None
    sent_on: int = 0


@dataclass(slots=True)
class _Message:
    """A best-effort publish: a retained status or a rejection notice (both QoS 1, design §3.4)."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


class Service:
    """The pipeline; ``await run()`` until :meth:`request_stop`."""

    def __init__(
        self,
        *,
        settings: Settings,
        evaluator: Evaluator,
        metrics: Metrics,
        outbox: Outbox,
        checkpoints: CheckpointStore,
        clock: Callable[[], float] = time.time,
        on_alert: Callable[[AlertEventPayload], None] = lambda _alert: None,
        on_latency: Callable[[str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        #: a probe for benchmarks: ``(stage, seconds since receipt)`` of each alert event, at
        #: "written" (handed to the socket) and "acknowledged" (the broker's PUBACK)
        self.on_latency = on_latency
        self.evaluator = evaluator
        self.metrics = metrics
        self.outbox = outbox
        self.checkpoints = checkpoints
        self.clock = clock
        self.on_alert = on_alert
        self.inbox = Inbox(high_water=settings.receive_maximum)
        self.link = BrokerLink(
            url=settings.broker,
            instance=settings.instance,
            inbox=self.inbox,
            username=settings.username,
            password=settings.password_value(),
            ca_file=settings.ca_file,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
            session_expiry=settings.session_expiry,
            receive_maximum=settings.receive_maximum,
            keepalive=settings.keepalive,
        )
        self.link.on_overflow = self._dropped
        self.rejected_topic = f"streamproc/{settings.instance}/rejected"
        self.ready = False
        #: the HTTP server of /metrics and the probes, once :func:`serve` has started it
        self.health: HealthServer | None = None
        self._session: Session | None = None
        self._session_changed = asyncio.Condition()
        self._connections = 0
        self._stop = asyncio.Event()
        self._disconnect = asyncio.Event()
        self._wake_publisher = asyncio.Event()
        self._checkpoint_soon = asyncio.Event()
        self._changed = False
        self._unacked: dict[int, _Unacked] = {
            entry.id: _Unacked(entry, None) for entry in outbox.pending()
        }
        self._best_effort: deque[_Message] = deque()
        self._dirty: dict[BedKey, None] = {}
        self._status_sent: dict[BedKey, float] = {}
        self._last_arrival: dict[BedKey, float] = {}
        self._rejection_logged: dict[str, float] = {}
        self._accepted = metrics.messages.labels("accepted", "")

    # ---------------------------------------------------------------- lifecycle

    def request_stop(self) -> None:
        """Begin a graceful stop (signal handlers call this)."""
        if not self._stop.is_set():
            logger.info("stopping: no more reading, flushing what is pending")
            self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`request_stop`, then drain and disconnect."""
        # Everything alive now (modules, schemas, the restored evaluator) lives as long as
        # the process: keep it out of the cyclic collector's full passes, which otherwise
        # stall the event loop for tens of milliseconds (measured: 54 ms at 200 beds).
        gc.freeze()
        async with asyncio.TaskGroup() as group:
            group.create_task(
                stay_connected(
                    self.link,
                    on_connect=self._on_connect,
                    on_disconnect=self._on_disconnect,
                    stop=self._disconnect,
                    backoff=Backoff(cap=self.settings.reconnect_max),
                )
            )
            consumer = group.create_task(self._consume())
            workers = [
                group.create_task(loop())
                for loop in (self._publish_loop, self._tick_loop, self._status_loop)
            ]
            workers.append(group.create_task(self._checkpoint_loop()))
            await self._stop.wait()
            consumer.cancel()
            self.inbox.close()
            await self._drain()
            for worker in workers:
                worker.cancel()
            self.save_checkpoint()
            self._disconnect.set()
        gc.unfreeze()
        logger.info("stopped")

    async def _drain(self) -> None:
        self._publish_due_statuses(force=True)
        self._wake_publisher.set()
        deadline = time.monotonic() + _DRAIN_TIMEOUT
        while (self._unacked or self._best_effort) and time.monotonic() < deadline:
            if self._session is None:
                logger.warning(
                    "stopping while disconnected: %d alerts stay in the outbox", len(self._unacked)
                )
                return
            await asyncio.sleep(0.01)
        if self._unacked:
            logger.warning(
                "%d alert events stay in the outbox for the next start", len(self._unacked)
            )

    async def _on_connect(self, session: Session) -> None:
        async with self._session_changed:
            self._session = session
            self._resend_outbox(session)  # before any new alert can overtake an older one
            self._session_changed.notify_all()
        await session.subscribe(inbound_filters(self.settings.topics))
        self._connections += 1
        if self._connections > 1:
            self.metrics.reconnects.inc()
        self.metrics.broker_connected.set(1)
        self.ready = True
        logger.info(
            "connected to %s:%d and subscribed (session %d)",
            self.link.host,
            self.link.port,
            session.number,
        )
        self._wake_publisher.set()

    def _on_disconnect(self) -> None:
        self._session = None
        self.ready = False
        self.metrics.broker_connected.set(0)

    # ---------------------------------------------------------------- receive path

    async def _consume(self) -> None:
        while True:
            await self._take(await self.inbox.get())
            for _ in range(_CONSUMER_BATCH - 1):
                if self.inbox.empty():
                    break
                await self._take(self.inbox.get_nowait())
            await asyncio.sleep(0)  # let the socket, acks and the publisher run

    async def _take(self, item: Inbound) -> None:
        session = self._session
        if session is None or session.number != item.session:
            session = await self._session_for(item)  # around a reconnect only
        if session is not None:
            outcome = self.process(item.topic, item.payload, received=item.received)
            session.ack(item)
            if outcome.alerts:
                await asyncio.sleep(0)  # let the loop read the PUBACK soon

    async def _session_for(self, item: Inbound) -> Session | None:
        """The session to acknowledge ``item`` on; ``None`` if the broker will redeliver it."""
        async with self._session_changed:
            await self._session_changed.wait_for(
                lambda: self._session is not None and self._session.number >= item.session
            )
        session = self._session
        if session is not None and session.number > item.session and item.qos > 0:
            return None  # from a lost connection: the broker redelivers it on this one
        return session

    def process(self, topic: str, payload: bytes, *, received: float) -> Outcome:
        """Ingest one message and route everything that comes out of it (no awaiting)."""
        outcome = ingest(
            self.evaluator, topic, payload, received=received, max_bytes=self.settings.max_payload
        )
        self._changed = True
        if outcome.rejection is not None:
            self._reject(outcome.rejection, received)
        else:
            self._accepted.inc()
            self._observe(outcome, received)
        for alert in outcome.alerts:
            self._emit(alert, received)
        return outcome

    def _observe(self, outcome: Outcome, received: float) -> None:
        event = outcome.event
        if event is None:
            return
        bed = (event.ward, event.bed)
        self._dirty[bed] = None
        if isinstance(event, Reading):
            self._last_arrival[bed] = received
            self.metrics.reading_age.observe(max(0.0, received - event.ts))
            for name in event.unknown:
                self.metrics.unknown_signals.labels(name).inc()

    def _reject(self, rejection: Rejection, received: float) -> None:
        self.metrics.messages.labels("rejected", rejection.reason).inc()
        self._log_rejection(rejection, received)
        payload = encode_rejection(rejection, at=received)
        self._queue_best_effort(_Message(self.rejected_topic, payload, retain=False, qos=1))
        if rejection.ward is not None and rejection.bed is not None:
            self._dirty[(rejection.ward, rejection.bed)] = None

    def _log_rejection(self, rejection: Rejection, now: float) -> None:
        last = self._rejection_logged.get(rejection.reason, -_REJECTION_LOG_INTERVAL)
        level = logging.DEBUG
        if now - last >= _REJECTION_LOG_INTERVAL:
            self._rejection_logged[rejection.reason] = now
            level = logging.WARNING
        # the topic names ward and bed only; payloads may hold a patient id and are not logged
        logger.log(level, "rejected %s: %s", rejection.topic, rejection.reason)

    def _dropped(self, item: Inbound) -> None:
        self.metrics.messages.labels("dropped", "queue_full").inc()
        logger.warning("inbound queue full: dropped a QoS %d message on %s", item.qos, item.topic)

    def _emit(self, alert: AlertEventPayload, received: float | None) -> None:
        """Outbox first, then straight to the client: the alert survives a crash from here on.

        Handing the alert to the client awaits nothing; its PUBACK removes it from the
        outbox later. Without a connection it waits in the outbox for the next session.
        """
        unacked = _Unacked(self.outbox.add(f"icu/{alert.ward}/{alert.bed}/alerts", dump(alert)),
                           received)  # fmt: skip
        self._unacked[unacked.entry.id] = unacked
        self.metrics.alert_events.labels(alert.rule, alert.priority, alert.event).inc()
        self._dirty[(alert.ward, alert.bed)] = None
        self._checkpoint_soon.set()
        if self._session is not None:
            self._send(self._session, unacked)
        self.on_alert(alert)

    # ---------------------------------------------------------------- publish path

    def _queue_best_effort(self, message: _Message) -> None:
        if len(self._best_effort) >= _PUBLISH_QUEUE:
            dropped = self._best_effort.popleft()
            logger.warning("publish queue full: dropped a message for %s", dropped.topic)
        self._best_effort.append(message)
        self._wake_publisher.set()

    async def _publish_loop(self) -> None:
        """Statuses and rejection notices, handed to the client in batches."""
        while True:
            await self._wake_publisher.wait()
            self._wake_publisher.clear()
            if self._session is not None:
                self._publish_best_effort(self._session)

    def _resend_outbox(self, session: Session) -> None:
        """Every alert not yet acknowledged, oldest first, on a new session."""
        for unacked in list(self._unacked.values()):
            if unacked.sent_on != session.number:
                self._send(session, unacked)

    def _send(self, session: Session, unacked: _Unacked) -> None:
        entry = unacked.entry
        try:
            session.publish_tracked(
                entry.topic, entry.payload, lambda refusal: self._acked(unacked, refusal)
            )
        except BrokerError as exc:
            logger.debug("alert %d not sent (%s); it stays in the outbox", entry.id, exc)
            return
        unacked.sent_on = session.number
        if self.on_latency is not None and unacked.received is not None:
            self.on_latency("written", self.clock() - unacked.received)

    def _acked(self, unacked: _Unacked, refusal: str | None) -> None:
        """The broker has the alert: it leaves the outbox — unless the broker refused it."""
        if refusal is not None:
            self._refused(unacked, refusal)
            return
        if self._unacked.pop(unacked.entry.id, None) is None:
            return  # acknowledged on an earlier session already
        self.outbox.remove(unacked.entry.id)
        if unacked.received is not None:
            latency = self.clock() - unacked.received
            self.metrics.latency.observe(latency)
            if self.on_latency is not None:
                self.on_latency("acknowledged", latency)

    def _refused(self, unacked: _Unacked, refusal: str) -> None:
        """A PUBACK with a failure reason: the alert stays in the outbox, to go again on the
        next connection, and the refusal is loud (an ACL mistake must not lose alerts)."""
        self.metrics.alerts_refused.inc()
        unacked.sent_on = 0  # never sent on a live session: the next one sends it
        logger.error(
            "the broker refused alert event %d on %s (%s): it stays in the outbox and is sent "
            "again on the next connection; check the broker's ACL for this account",
            unacked.entry.id,
            unacked.entry.topic,
            refusal,
        )

    def _publish_best_effort(self, session: Session) -> None:
        while self._best_effort:
            message = self._best_effort[0]
            try:
                session.publish_nowait(
                    message.topic, message.payload, qos=message.qos, retain=message.retain
                )
            except BrokerError as exc:
                logger.debug("best-effort publish deferred: %s", exc)
                return
            self._best_effort.popleft()

    # ---------------------------------------------------------------- timers

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            for alert in self.evaluator.advance(self.clock()):
                self._emit(alert, None)
            self._changed = True

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(_STATUS_POLL)
            self._publish_due_statuses(force=False)

    def _publish_due_statuses(self, *, force: bool) -> None:
        """Each changed bed's retained status, at most once per ``status_interval``."""
        now = self.clock()
        interval = self.settings.status_interval
        for bed in list(self._dirty):
            if not force and now - self._status_sent.get(bed, -interval) < interval:
                continue
            del self._dirty[bed]
            self._status_sent[bed] = now
            status = self.evaluator.status(*bed)
            payload = b"" if status is None else dump(status)  # empty: the bed was discharged
            # QoS 1 as the contract says (design §3.4); not in the outbox: a newer status
            # follows on the next change, and the broker retains the last one
            topic = f"icu/{bed[0]}/{bed[1]}/status"
            self._queue_best_effort(_Message(topic, payload, retain=True, qos=1))

    async def _checkpoint_loop(self) -> None:
        """A checkpoint every ``checkpoint_interval`` when something changed, sooner after an
        alert event, but never two within one interval: a snapshot of a few hundred beds
        costs tens of milliseconds of the event loop."""
        interval = self.settings.checkpoint_interval
        last = -interval
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._checkpoint_soon.wait(), interval)
            self._checkpoint_soon.clear()
            await asyncio.sleep(max(0.0, last + interval - time.monotonic()))
            if self._changed:
                self._changed = False
                await self.checkpoints.save_async(self.evaluator.snapshot())
                last = time.monotonic()

    def save_checkpoint(self) -> None:
        self.checkpoints.save(self.evaluator.snapshot())
        self._changed = False

    # ---------------------------------------------------------------- gauges

    def refresh_gauges(self) -> None:
        """Set the gauges that are cheaper to compute per scrape than per message."""
        metrics = self.metrics
        metrics.queue_depth.labels("inbound").set(self.inbox.qsize())
        metrics.queue_depth.labels("publish").set(len(self._best_effort) + len(self._unacked))
        metrics.outbox_depth.set(len(self.outbox))
        metrics.active_beds.set(len(self.evaluator.beds()))
        by_priority = self.evaluator.active_alerts_by_priority()
        for priority in PRIORITIES:
            metrics.active_alerts.labels(priority).set(by_priority.get(priority, 0))
        metrics.silent_beds.set(self.silent_beds(self.clock()))

    def silent_beds(self, now: float) -> int:
        """Beds held by the evaluator with no reading received for ``silent_after`` s."""
        limit = now - self.settings.silent_after
        return sum(1 for bed in self.evaluator.beds() if self._last_arrival.get(bed, -1.0) < limit)


# -------------------------------------------------------------------- assembly


def open_service(
    settings: Settings,
    *,
    registry: CollectorRegistry,
    on_alert: Callable[[AlertEventPayload], None] = lambda _alert: None,
    on_latency: Callable[[str, float], None] | None = None,
) -> Service:
    """A service with its outbox and checkpoint in ``settings.state_dir``."""
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    checkpoints = CheckpointStore(state / "checkpoint.json")
    return Service(
        settings=settings,
        evaluator=_evaluator(settings, checkpoints),
        metrics=Metrics(registry),
        outbox=Outbox(state / "outbox.sqlite3"),
        checkpoints=checkpoints,
        on_alert=on_alert,
        on_latency=on_latency,
    )


def _evaluator(settings: Settings, checkpoints: CheckpointStore) -> Evaluator:
    protocols = {p.name: p for p in map(load_protocol, settings.protocol_files)}
    snapshot = checkpoints.load()
    default, skew, max_beds = settings.protocol, settings.future_skew, settings.max_beds
    if snapshot is not None:  # the configured default protocol wins over the snapshot's
        return Evaluator.restore(
            snapshot,
            protocols=protocols,
            default_protocol=default,
            future_skew=skew,
            max_beds=max_beds,
        )
    return Evaluator(
        default_protocol=default, protocols=protocols, future_skew=skew, max_beds=max_beds
    )


async def run_service(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Run the service with its HTTP server until SIGTERM/SIGINT."""
    service = open_service(settings, registry=registry or CollectorRegistry())
    await serve(service, signals=signals)


async def serve(service: Service, *, signals: Iterable[signal.Signals] = ()) -> None:
    """Run an opened service and its /metrics, /healthz and /readyz server until stopped."""
    settings = service.settings
    health = HealthServer(
        registry=service.metrics.registry,
        ready=lambda: service.ready,
        before_scrape=service.refresh_gauges,
        host=settings.metrics_host,
        port=settings.metrics_port,
    )
    loop = asyncio.get_running_loop()
    signals = tuple(signals)
    for signum in signals:
        loop.add_signal_handler(signum, service.request_stop)
    await health.start()
    service.health = health
    try:
        await service.run()
    finally:
        await health.stop()
        service.outbox.close()
        for signum in signals:
            loop.remove_signal_handler(signum)


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        allow_abbrev=False,  # "--password x" must not pass for "--password-file x"
        help="run the live service: readings in over MQTT, alerts out to the ward bus",
        description=(
            "Run the live service. Every setting below can also come from the environment "
            "(STREAMPROC_<NAME>) or a TOML file (--config); flags win over the environment, "
            "the environment over the file. The password comes only from STREAMPROC_PASSWORD "
            "or password_file. Stops cleanly on SIGTERM or Ctrl-C."
        ),
    )
    add_setting_flags(parser)
    parser.set_defaults(handler=_run_command)


def _run_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise ConfigError("event_loop uvloop: pip install 'streamproc[fast]'") from exc
        uvloop.run(run_service(settings))
    else:
        asyncio.run(run_service(settings))
    return 0
