"""Prometheus metrics of the service, built on a registry that is passed in.

No metric is a module-level global: ``Metrics(CollectorRegistry())`` in a test gives fresh
counters that the test reads back with ``registry.get_sample_value``. The names are part
of the deployment contract (dashboards and alerting rules in ``deploy/`` use them).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streamproc.errors import REJECTION_REASONS

__all__ = [
    "LATENCY_BUCKETS",
    "METRIC_NAMES",
    "PRIORITIES",
    "QUEUES",
    "READING_AGE_BUCKETS",
    "Metrics",
]

#: IEC 60601-1-8 alarm priorities, the label values of ``streamproc_active_alerts``.
PRIORITIES: Final = ("high", "medium", "low")
#: The service's internal queues, the label values of ``streamproc_queue_depth``.
QUEUES: Final = ("inbound", "publish")

#: Receipt → alert publish, in seconds: the goal is p99 under 5 ms.
LATENCY_BUCKETS: Final = (
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
#: Wall clock − reading ``ts``: sub-second live, minutes when a gateway replays a backlog.
READING_AGE_BUCKETS: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 3600.0)

#: Every metric name, as exposed (counters with their ``_total`` suffix).
METRIC_NAMES: Final = (
    "streamproc_messages_received_total",
    "streamproc_unknown_signals_total",
    "streamproc_alert_events_total",
    "streamproc_processing_latency_seconds",
    "streamproc_reading_age_seconds",
    "streamproc_queue_depth",
    "streamproc_active_beds",
    "streamproc_active_alerts",
    "streamproc_broker_connected",
    "streamproc_reconnects_total",
    "streamproc_outbox_depth",
    "streamproc_silent_beds",
)


class Metrics:
    """Every metric the service exposes, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "streamproc_messages_received",
            "Messages received, by outcome (accepted, rejected, dropped) and rejection reason",
            ["outcome", "reason"],
            registry=registry,
        )
        self.unknown_signals = Counter(
            "streamproc_unknown_signals",
            "Signal names in readings that the contract does not know (ignored)",
            ["signal"],
            registry=registry,
        )
        self.alert_events = Counter(
            "streamproc_alert_events",
            "Alert events produced, by rule, priority and event",
            ["rule", "priority", "event"],
            registry=registry,
        )
        self.latency = Histogram(
            "streamproc_processing_latency_seconds",
            "Seconds from receipt of a message to the broker's PUBACK of the alert it caused",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.reading_age = Histogram(
            "streamproc_reading_age_seconds",
            "Wall clock minus the reading's ts when it is evaluated",
            buckets=READING_AGE_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "streamproc_queue_depth",
            "Messages waiting in each internal queue",
            ["queue"],
            registry=registry,
        )
        self.active_beds = Gauge(
            "streamproc_active_beds", "Beds the evaluator holds state for", registry=registry
        )
        self.active_alerts = Gauge(
            "streamproc_active_alerts",
            "Alerts not cleared (active, acknowledged or latched), by priority",
            ["priority"],
            registry=registry,
        )
        self.broker_connected = Gauge(
            "streamproc_broker_connected",
            "1 while connected and subscribed to the broker, else 0",
            registry=registry,
        )
        self.reconnects = Counter(
            "streamproc_reconnects",
            "Connections to the broker after the first one",
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "streamproc_outbox_depth",
            "Alert events written to the outbox and not yet acknowledged by the broker",
            registry=registry,
        )
        self.alerts_refused = Counter(
            "streamproc_alerts_refused",
            "Alert events the broker refused (a PUBACK with a failure reason, e.g. an ACL)",
            registry=registry,
        )
        self.silent_beds = Gauge(
            "streamproc_silent_beds",
            "Beds without any reading for the silent_after setting (60 s by default)",
            registry=registry,
        )
        self._zero_known_series()

    def _zero_known_series(self) -> None:
        """Expose every known series from the start, so that rates and alerts see a 0."""
        self.messages.labels("accepted", "")
        for reason in REJECTION_REASONS:
            self.messages.labels("rejected", reason)
        for priority in PRIORITIES:
            self.active_alerts.labels(priority)
        for queue in QUEUES:
            self.queue_depth.labels(queue)
