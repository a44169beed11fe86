"""The pure core: events in, alert events out (design §2, §5).

No I/O, no asyncio, no wall clock. Two entry points move time forward:

* ``feed(event)`` judges readings at their **event time**. Every physiological rule
  raises, updates and clears only here, so the same input sequence gives the same alerts
  live and offline, byte for byte.
* ``advance(now)`` is the tick: the wall clock live, event time offline. It drives only
  the rules on the clock (``signal.lost``, ``device.offline``, overdue assessments) and
  escalation. Their alerts clear in ``feed`` when the missing reading arrives.

Order and rejection (design §5), checked in this order for a reading:

* ``future``: ``ts > arrival + future_skew``; only live, where ``arrival`` is known.
* ``duplicate``: a ``(device, seq)`` already accepted for the bed (a bounded window of
  1,024 numbers per device, :class:`~streamproc.windows.DedupWindow`), unless its ``ts`` is
  newer than any of the device's: then the device restarted its numbering (a reboot).
* ``late``: for any of its signals, ``ts`` is not newer than the newest reading of that
  signal already evaluated for the bed. *Equal* timestamps are late too: a second value for
  an instant already judged would be counted twice. One late signal rejects the message.

A bed without a context message is evaluated with the default protocol and flagged
``context: "default"`` in its status; an empty context message discharges the bed (its
open alerts are cleared and its state forgotten).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Final

from streamproc.bed import DEDUP_WIDTH, BedState
from streamproc.errors import ProtocolError, RejectedReading
from streamproc.events import (
    Ack,
    ArtefactReading,
    BedKey,
    ContextUpdate,
    Event,
    Reading,
    WaveformChunk,
)
from streamproc.models import AlertEventPayload, BedStatusPayload, Priority, StatusValue
from streamproc.protocol import Band, Protocol, load_protocol, preset_names
from streamproc.rules import RuleSet, build_rules
from streamproc.timestamps import format_ts
from streamproc.waveform import WaveformState, derive_events
from streamproc.windows import ArtefactWindow, DedupWindow

__all__ = ["DEFAULT_MAX_BEDS", "SNAPSHOT_VERSION", "Evaluator", "report_unexpected"]

logger = logging.getLogger(__name__)

SNAPSHOT_VERSION: Final = 1
#: Beds evaluated at once. streamproc choice: far above a gateway's wards (tens of beds
#: each), low enough that a flood of made-up bed topics cannot exhaust memory.
DEFAULT_MAX_BEDS: Final = 10_000
_PRIORITIES: Final[tuple[Priority, ...]] = ("high", "medium", "low")
_OVERDUE_PREFIX: Final = "assessment.overdue."


class Evaluator:
    """Per-bed protocol state and the alert lifecycle; see the module docstring."""

    def __init__(
        self,
        *,
        default_protocol: str = "tartare2s-ttp",
        protocols: Mapping[str, Protocol] | None = None,
        future_skew: float = 5.0,
        max_beds: int = DEFAULT_MAX_BEDS,
    ) -> None:
        self._extra: dict[str, Protocol] = dict(protocols or {})
        self.max_beds = max_beds
        self._rulesets: dict[str, RuleSet] = {}
        self.future_skew = future_skew
        default = self._protocol(default_protocol)
        if default is None:
            raise ProtocolError(
                f"default protocol {default_protocol!r} is unknown; "
                f"presets: {', '.join(preset_names())}"
            )
        self.default_protocol = default
        self._beds: dict[BedKey, BedState] = {}
        #: ABP chunks received; see :meth:`_feed_waveform`
        self.waveform_chunks = 0
        #: acknowledgements for an unknown bed or alert (already cleared, or a typo)
        self.ignored_acks = 0

    # -- protocols -----------------------------------------------------------------------

    def _protocol(self, name: str) -> Protocol | None:
        if name in self._extra:
            return self._extra[name]
        if name in preset_names():
            return load_protocol(name)
        return None

    def _rules(self, protocol: Protocol) -> RuleSet:
        rules = self._rulesets.get(protocol.name)
        if rules is None or rules.protocol is not protocol:
            rules = self._rulesets[protocol.name] = build_rules(protocol)
        return rules

    # -- feed ----------------------------------------------------------------------------

    def feed(self, event: Event) -> list[AlertEventPayload]:
        """Evaluate one event; raises :class:`RejectedReading` for late/future/duplicate."""
        if isinstance(event, Reading):
            return self._feed_reading(event)
        alerts = self._feed_other(event)
        bed = self._beds.get((event.ward, event.bed))
        if bed is not None:
            bed.tick_due = None  # alerts or context changed: work out the next tick again
        return alerts

    def _feed_other(
        self, event: ArtefactReading | WaveformChunk | ContextUpdate | Ack
    ) -> list[AlertEventPayload]:
        if isinstance(event, ArtefactReading):
            return self._feed_artefact(event)
        if isinstance(event, WaveformChunk):
            return self._feed_waveform(event)
        if isinstance(event, ContextUpdate):
            return self._feed_context(event)
        return self._feed_ack(event)

    def _bed(self, ward: str, bed: str) -> BedState:
        state = self._beds.get((ward, bed))
        if state is None:
            if len(self._beds) >= self.max_beds:
                raise RejectedReading(
                    "topic",
                    f"bed {ward}/{bed} would be bed {len(self._beds) + 1}; the limit is "
                    f"{self.max_beds} (max_beds): discharge beds or raise the limit",
                )
            rules = self._rules(self.default_protocol)
            state = self._beds[ward, bed] = BedState(ward, bed, self.default_protocol, rules)
        return state

    def _first_bed(self, event: Reading) -> BedState:
        """The bed of a reading for a bed not known yet; a future reading creates none."""
        self._check_future(event.ts, event.arrival)
        return self._bed(event.ward, event.bed)

    def _check_future(self, ts: float, arrival: float | None) -> None:
        if arrival is not None and ts > arrival + self.future_skew:
            raise RejectedReading(
                "future",
                f"ts is {ts - arrival:.3f} s ahead of the receiver's clock "
                f"(allowed {self.future_skew:g} s): check the device's clock",
            )

    @staticmethod
    def _reject_late(latest: dict[str, tuple[float, float]], event: Reading) -> None:
        ts = event.ts
        late = [s for s in event.values if s in latest and ts <= latest[s][1]]
        newest = max(latest[s][1] for s in late)
        raise RejectedReading(
            "late", f"{', '.join(late)} at {format_ts(ts)} is not newer than {format_ts(newest)}"
        )

    def _accept(self, bed: BedState, event: Reading) -> float:
        """Reject a future, duplicate or late reading, else note it; returns the arrival time."""
        ts, arrival, device, seq = event.ts, event.arrival, event.device, event.seq
        if arrival is not None:
            self._check_future(ts, arrival)
        else:
            arrival = ts
        seen = None
        if device is not None and seq is not None:
            seen = bed.seen.get(device)
            if seen is not None and seen.seen(seq) and not seen.restarted(ts):
                raise RejectedReading("duplicate", f"device {device} seq {seq} already seen")
        latest = bed.latest
        for signal in event.values:  # equal time counts as late: module docstring
            found = latest.get(signal)
            if found is not None and ts <= found[1]:
                self._reject_late(latest, event)
        newest = bed.newest_ts
        if newest is None or ts > newest:
            bed.newest_ts = ts
        if newest is None:
            bed.first_ts = ts
        context = bed.context
        if context is not None and bed.trial_start is None and context.map_trial_until is not None:
            bed.trial_start = ts  # protocol.py: the trial starts with its first reading
        if device is not None:
            self._note_device(bed, device, arrival, seq, seen, ts=ts)
        return arrival

    @staticmethod
    def _note_device(
        bed: BedState,
        device: str,
        arrival: float,
        seq: int | None,
        seen: DedupWindow | None,
        *,
        ts: float,
    ) -> None:
        arrivals = bed.arrivals
        if device not in arrivals:
            bed.tick_due = None  # device.offline starts watching this device
        arrivals[device] = arrival
        if seq is not None:
            if seen is None:
                seen = bed.seen[device] = DedupWindow(DEDUP_WIDTH)
            seen.record(seq, ts)

    def _feed_reading(self, event: Reading) -> list[AlertEventPayload]:
        # The hot path (a few µs per reading): kept flat on purpose, see `streamproc bench`.
        bed = self._beds.get((event.ward, event.bed))
        if bed is None:
            bed = self._first_bed(event)
        arrival = bed.clock = self._accept(bed, event)
        ts, values = event.ts, event.values
        rules = bed.rules
        out: list[AlertEventPayload] = []
        alerts_open = bool(bed.alerts.alerts)
        latest = bed.latest
        for signal, value in values.items():
            latest[signal] = (value, ts)
        bed.artefacts.add_clean(ts)
        if "map" in values:
            bed.map_window.add(ts, values["map"])
            # a first MAP: signal.lost starts watching this bed, so work out the next tick again
            bed.tick_due = None if bed.map_arrival is None else bed.tick_due
            bed.map_arrival = arrival
        if alerts_open:  # the clock rules clear when what they missed arrives
            self._seen(bed, rules, event, arrival, out)
        if len(values) == 1:
            for signal, value in values.items():
                if not bed.trackers and self._quiet(bed, rules, signal, value):
                    continue
                for rule in rules.by_signal.get(signal, ()):
                    rule.check(bed, ts, out)
        else:
            self._judge(bed, rules, values, ts, out)
        if alerts_open or bed.artefacts.last_artefact is not None:
            rules.artefact.check(bed, ts, (), out)
        assessment = rules.assessment
        if assessment is not None and not assessment.rule_names.keys().isdisjoint(values):
            assessment.seen(bed, values, ts, out)
        if out:
            bed.tick_due = None  # alerts changed: work out the next tick again
        return out

    @staticmethod
    def _quiet(bed: BedState, rules: RuleSet, signal: str, value: float) -> bool:
        """Whether ``value`` can move none of ``signal``'s rules (none is pending or raised)."""
        ranges = rules.quiet.get(signal)
        context = bed.context
        if ranges is None or (context is not None and context.map_trial_until is not None):
            return False  # a MAP trial makes the band depend on the time: judge in full
        low, high = ranges[context is not None and context.chronic_hypertension]
        return low <= value <= high

    @staticmethod
    def _seen(
        bed: BedState, rules: RuleSet, event: Reading, arrival: float, out: list[Any]
    ) -> None:
        if event.device is not None:
            rules.device_offline.seen(bed, event.ts, arrival, out)
        if "map" in event.values:
            rules.signal_lost.seen(bed, event.ts, out)

    @staticmethod
    def _judge(
        bed: BedState, rules: RuleSet, values: Mapping[str, float], ts: float, out: list[Any]
    ) -> None:
        # Every rule the message triggers, once, in the protocol's order: the composite
        # perfusion rule last, after its components have seen the message (not in the
        # order of the JSON keys).
        for rule in rules.reading_rules.values():
            if not rule.triggers.isdisjoint(values):
                rule.check(bed, ts, out)

    def _feed_artefact(self, event: ArtefactReading) -> list[AlertEventPayload]:
        self._check_future(event.ts, event.arrival)
        bed = self._bed(event.ward, event.bed)
        bed.clock = event.ts if event.arrival is None else event.arrival
        bed.artefacts.add(event.ts, artefact=True)
        out: list[AlertEventPayload] = []
        bed.rules.artefact.check(bed, event.ts, event.signals, out)
        return out

    def _feed_waveform(self, event: WaveformChunk) -> list[AlertEventPayload]:
        """ABP samples → 1-s MAP readings or MAP artefacts (design §3.2), judged like numerics.

        ``streamproc.waveform`` derives them deterministically from the samples, so a replay
        gives the same readings as live. A derived MAP older than a numeric MAP already
        evaluated for the bed is dropped: the monitor's own numeric came first.
        """
        self._check_future(event.t0 + len(event.samples) / event.fs, event.arrival)
        bed = self._bed(event.ward, event.bed)
        if bed.waveform is None:
            bed.waveform = WaveformState()
        self.waveform_chunks += 1
        out: list[AlertEventPayload] = []
        for derived in derive_events(bed.waveform, event):
            try:
                out += self.feed(derived)
            except RejectedReading:
                continue
        return out

    def _feed_context(self, event: ContextUpdate) -> list[AlertEventPayload]:
        key = (event.ward, event.bed)
        if event.context is None:
            return self._discharge(key, event.arrival)
        name = event.context.protocol or self.default_protocol.name
        protocol = self._protocol(name)
        if protocol is None:
            known = sorted({*preset_names(), *self._extra})
            raise RejectedReading("schema", f"unknown protocol {name!r}; known: {', '.join(known)}")
        bed = self._bed(*key)
        previous = bed.context
        if previous is None or previous.map_trial_until != event.context.map_trial_until:
            bed.trial_start = None
        bed.context = event.context
        bed.overdue_next = None  # protocol_started may have moved
        out: list[AlertEventPayload] = []
        if protocol is not bed.protocol:
            out = self._switch_protocol(bed, protocol, event.arrival)
        return out

    def _switch_protocol(
        self, bed: BedState, protocol: Protocol, arrival: float | None
    ) -> list[AlertEventPayload]:
        """Clear the alerts of rules the new protocol does not have; keep the others."""
        bed.protocol = protocol
        rules = bed.rules = self._rules(protocol)
        enabled = set(protocol.rules.enabled())
        overdue = set() if rules.assessment is None else set(rules.assessment.spec.signals)
        at = _event_time(bed, arrival)
        out = []
        for rule in list(bed.alerts.alerts):
            signal = rule.removeprefix(_OVERDUE_PREFIX)
            if rule in enabled or (rule.startswith(_OVERDUE_PREFIX) and signal in overdue):
                continue
            out.append(bed.alerts.clear_one(bed.header(), rule, at))
        for rule in list(bed.trackers):  # pending conditions of rules that are now off
            if rule not in rules.reading_rules:
                del bed.trackers[rule]
        if bed.artefacts.span != protocol.rules.signal_artefact.window_s:
            bed.artefacts = ArtefactWindow(protocol.rules.signal_artefact.window_s)
        return out

    def _discharge(self, key: BedKey, arrival: float | None) -> list[AlertEventPayload]:
        bed = self._beds.pop(key, None)
        if bed is None:
            return []
        return bed.alerts.clear_all(bed.header(), _event_time(bed, arrival))

    def _feed_ack(self, event: Ack) -> list[AlertEventPayload]:
        bed = self._beds.get((event.ward, event.bed))
        events = (
            []
            if bed is None
            else bed.alerts.acknowledge(
                bed.header(), event.alert_id, _event_time(bed, event.arrival)
            )
        )
        if not events:
            self.ignored_acks += 1
            logger.info(
                "ack for %s/%s ignored: no open alert %s", event.ward, event.bed, event.alert_id
            )
        return events

    # -- ticks ---------------------------------------------------------------------------

    def advance(self, now: float) -> list[AlertEventPayload]:
        """The tick: rules on the clock and escalation, at ``now``.

        Each bed caches the earliest time one of them can fire (``tick_due``); until then
        the bed is skipped, which changes nothing but the cost. Arrivals only ever move
        that time later; anything else that could move it earlier (an alert event, an
        acknowledgement, a context) drops the cache.
        """
        out: list[AlertEventPayload] = []
        for bed in self._beds.values():
            due = bed.tick_due
            if due is not None and now < due:
                continue
            try:
                self._tick(bed, now, out)
            except Exception as exc:  # one bed's bug must not stop the others
                report_unexpected("a bed's tick", f"{bed.ward}/{bed.bed}", exc)
        return out

    def _tick(self, bed: BedState, now: float, out: list[AlertEventPayload]) -> None:
        bed.clock = now
        rules = bed.rules
        rules.signal_lost.tick(bed, now, out)
        rules.device_offline.tick(bed, now, out)
        if rules.assessment is not None:
            rules.assessment.tick(bed, now, out)
        if bed.alerts.alerts:
            out.extend(bed.alerts.escalate(bed.header(), now, bed.protocol.escalation))
        bed.tick_due = self._next_tick(bed, rules)

    @staticmethod
    def _next_tick(bed: BedState, rules: RuleSet) -> float | None:
        """The earliest time a clock rule or escalation of ``bed`` can fire (None: next tick)."""
        open_ = bed.alerts.alerts
        dues = []
        if bed.map_arrival is not None and rules.signal_lost.name not in open_:
            dues.append(bed.map_arrival + rules.signal_lost.spec.after_s)
        if bed.arrivals:
            if rules.device_offline.name in open_:
                return None  # the set of silent devices may grow at any tick
            dues.append(min(bed.arrivals.values()) + rules.device_offline.spec.after_s)
        if rules.assessment is not None:
            if bed.overdue_next is None:
                return None
            dues.append(bed.overdue_next)
        escalation = bed.protocol.escalation
        dues += [
            alert.raised_at + escalation.after_s
            for alert in open_.values()
            if alert.state == "active" and alert.priority == escalation.from_priority
        ]
        return min(dues, default=math.inf)

    # -- views ---------------------------------------------------------------------------

    def status(self, ward: str, bed: str) -> BedStatusPayload | None:
        """The retained status document of a bed, or ``None`` for a bed we do not know."""
        state = self._beds.get((ward, bed))
        if state is None:
            return None
        ts = state.newest_ts if state.newest_ts is not None else 0.0
        head = state.header()
        return BedStatusPayload(
            ward=ward,
            bed=bed,
            patient=head.patient,
            protocol=head.protocol,
            context="default" if state.context is None else "configured",
            at=format_ts(ts),
            targets=state.rules.targets(state, ts),
            latest={s: StatusValue(value=v, ts=format_ts(t)) for s, (v, t) in state.latest.items()},
            active_alerts=state.alerts.status(),
        )

    def band_in_force(self, ward: str, bed: str, ts: float) -> Band | None:
        """The MAP band in force for a known bed at event time ``ts`` (its context and trial)."""
        state = self._beds.get((ward, bed))
        if state is None:
            return None
        return state.protocol.band_at(state.context, ts, state.trial_start)

    def beds(self) -> list[tuple[str, str]]:
        return list(self._beds)

    def active_alerts_by_priority(self) -> dict[str, int]:
        """Open alerts (active, acknowledged or latched) over all beds, by priority."""
        counts: dict[str, int] = dict.fromkeys(_PRIORITIES, 0)
        for bed in self._beds.values():
            for alert in bed.alerts.alerts.values():
                counts[alert.priority] += 1
        return counts

    # -- checkpoints ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole state as plain JSON-able data (see :meth:`restore`)."""
        return {
            "version": SNAPSHOT_VERSION,
            "default_protocol": self.default_protocol.name,
            "waveform_chunks": self.waveform_chunks,
            "ignored_acks": self.ignored_acks,
            "beds": [bed.snapshot() for bed in self._beds.values()],
        }

    @classmethod
    def restore(
        cls,
        data: Mapping[str, Any],
        *,
        protocols: Mapping[str, Protocol] | None = None,
        default_protocol: str | None = None,
        future_skew: float = 5.0,
        max_beds: int = DEFAULT_MAX_BEDS,
    ) -> Evaluator:
        """An evaluator that continues exactly where ``snapshot()`` was taken.

        ``default_protocol`` (the snapshot's when None) is the one configured now: beds
        without a context move to it, as if it had been the default all along; alerts of
        rules it does not have are cleared (logged, like a context's protocol switch).
        """
        if data.get("version") != SNAPSHOT_VERSION:
            raise ProtocolError(
                f"snapshot version {data.get('version')!r} is not {SNAPSHOT_VERSION}"
            )
        evaluator = cls(
            default_protocol=default_protocol or data["default_protocol"],
            protocols=protocols,
            future_skew=future_skew,
            max_beds=max_beds,
        )
        evaluator.waveform_chunks = data["waveform_chunks"]
        evaluator.ignored_acks = data["ignored_acks"]
        for raw in data["beds"]:
            protocol = evaluator._protocol(raw["protocol"])
            if protocol is None:
                raise ProtocolError(
                    f"snapshot names protocol {raw['protocol']!r}, which is unknown"
                )
            bed = BedState.restore(raw, protocol, evaluator._rules(protocol))
            evaluator._beds[bed.ward, bed.bed] = bed
            if bed.context is None and protocol is not evaluator.default_protocol:
                for event in evaluator._switch_protocol(bed, evaluator.default_protocol, None):
                    logger.warning(
                        "restore: %s/%s follows the default protocol %s now; %s cleared",
                        bed.ward,
                        bed.bed,
                        evaluator.default_protocol.name,
                        event.rule,
                    )
        return evaluator


#: the kinds of bug already logged with their traceback (see :func:`report_unexpected`)
_reported: set[tuple[str, str]] = set()


def report_unexpected(where: str, subject: str, exc: Exception) -> None:
    """Log a bug met in ``where`` (about ``subject``) at ERROR; the traceback once per kind.

    The caller goes on: a message becomes a rejection, a bed's tick is skipped.
    """
    kind = (where, type(exc).__name__)
    if kind in _reported:
        logger.error("%s failed again for %s: %s: %s", where, subject, type(exc).__name__, exc)
        return
    _reported.add(kind)
    logger.error("%s failed for %s; going on", where, subject, exc_info=exc)


def _event_time(bed: BedState, arrival: float | None) -> float:
    """When a message without a timestamp (context, ack) happened: arrival, else the bed's time."""
    if arrival is not None:
        return arrival
    return bed.newest_ts if bed.newest_ts is not None else 0.0
