"""The rule families: each turns a bed's state into alert events (design §4).

Rules on readings (``check``) run in :meth:`Evaluator.feed` at the reading's event time and
are the only ones that judge physiology. Rules on the clock (``tick``) run in
:meth:`Evaluator.advance`: ``signal.lost``, ``device.offline`` and overdue assessments;
their alerts clear in ``feed`` when the missing reading arrives (``seen``).

    family               rules                                          state
    SustainedRule        map.below_floor, svo2.low, cvp.*               SustainedCondition
    BandRule             map.below_target, map.above_target             SustainedCondition
    LatestRule           crt.abnormal, lactate.high, mottling.present,  SustainedCondition
                         urine.low, urine.map_trial                     (no delays)
    SkinColdRule         skin.cold (gradients, absolute fallback)       SustainedCondition
    PerfusionRule        perfusion.inadequate (lists failing parts)     SustainedCondition
    ArtefactRule         signal.artefact                                ArtefactWindow
    SignalLostRule       signal.lost (tick, arrival time)               BedState.map_arrival
    DeviceOfflineRule    device.offline (tick, arrival time)            BedState.arrivals
    AssessmentRule       assessment.overdue.{signal} (tick)             BedState.latest
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamproc.alerts import rounded
from streamproc.bed import BedState
from streamproc.models import AlertEventPayload
from streamproc.protocol import (
    ArtefactSpec,
    AssessmentSpec,
    Band,
    BandSpec,
    LatestSpec,
    PerfusionSpec,
    Protocol,
    RuleSpec,
    SilenceSpec,
    SkinColdSpec,
    SustainedSpec,
    TrialHintSpec,
)
from streamproc.timestamps import format_ts
from streamproc.windows import CLEAR, RAISE

__all__ = ["ReadingRule", "RuleSet", "TickRule", "build_rules"]

Out = list[AlertEventPayload]
_INF = math.inf
_PERFUSION = "perfusion.inadequate"
_OVERDUE = "assessment.overdue"


class ReadingRule:
    """A rule judged on readings, through a :class:`SustainedCondition` per bed."""

    name: str
    spec: RuleSpec
    triggers: frozenset[str]
    onset_s: float = 0.0
    clear_s: float = 0.0
    max_gap_s: float = _INF

    def __init__(self, name: str, spec: RuleSpec, protocol: Protocol) -> None:
        self.name, self.spec, self.protocol = name, spec, protocol
        self.message = spec.text()

    def check(self, bed: BedState, ts: float, out: Out) -> None:
        bad, good = self.condition(bed, ts)
        tracker = bed.trackers.get(self.name)
        if not bad and (tracker is None or tracker.phase == "idle"):
            return  # the common case; an idle tracker needs no bookkeeping
        if tracker is None:
            tracker = bed.tracker(self.name)
        move = tracker.update(
            ts, bad, good, onset_s=self.onset_s, clear_s=self.clear_s, max_gap_s=self.max_gap_s
        )
        if tracker.phase == "idle":  # an idle tracker holds nothing worth keeping
            del bed.trackers[self.name]
        self.settle(bed, move, ts, out)

    def settle(self, bed: BedState, move: str | None, ts: float, out: Out) -> None:
        if move == RAISE:
            found = Finding(
                bed.trackers[self.name].start, self.observe(bed, ts), self.target(bed, ts)
            )
            out.append(
                raise_alert(bed, found, rule=self.name, spec=self.spec, message=self.message, at=ts)
            )
        elif move == CLEAR:
            _append(out, bed.alerts.close(bed.header(), self.name, ts))
        elif bed.failing(self.name):
            change = self.protocol.updates.min_relative_change
            _append(
                out, bed.alerts.update(bed.header(), self.name, ts, self.observe(bed, ts), change)
            )

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        """``(bad, good)``: the alert condition and the clear condition at ``ts``."""
        raise NotImplementedError

    def fine(self, *, hypertensive: bool) -> tuple[float, float] | None:
        """Values of the trigger signal that can neither raise nor move this rule while it
        is idle, for a bed without a running MAP trial; None if no such range exists."""
        del hypertensive
        return None

    def observe(self, bed: BedState, ts: float) -> dict[str, Any]:
        raise NotImplementedError

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(slots=True)
class Finding:
    """A condition that has held long enough: when it began, and what to publish."""

    onset: float
    observed: dict[str, Any]
    target: dict[str, Any] = field(default_factory=dict)


def raise_alert(
    bed: BedState, found: Finding, *, rule: str, spec: RuleSpec, message: str, at: float
) -> AlertEventPayload:
    """Raise (or re-activate) the alert of ``rule`` on ``bed``."""
    return bed.alerts.open(
        bed.header(),
        spec,
        rule=rule,
        message=message,
        onset=found.onset,
        at=at,
        clock=bed.clock,
        observed=found.observed,
        target=found.target,
    )


def _append(out: Out, event: AlertEventPayload | None) -> None:
    if event is not None:
        out.append(event)


def _map_observed(bed: BedState) -> dict[str, Any]:
    window = bed.map_window
    return {"map_mean_60s": rounded(window.mean()), "map_min_60s": rounded(window.minimum())}


class SustainedRule(ReadingRule):
    """``signal`` outside ``low``/``high`` for ``onset_s``; back inside by a margin to clear."""

    spec: SustainedSpec

    def __init__(self, name: str, spec: SustainedSpec, protocol: Protocol) -> None:
        super().__init__(name, spec, protocol)
        self.signal = spec.signal
        self.triggers = frozenset({spec.signal})
        self.low = -_INF if spec.low is None else spec.low
        if spec.low_inclusive:  # "> low": the next float up is the lowest value in target
            self.low = math.nextafter(self.low, _INF)
        self.high = _INF if spec.high is None else spec.high
        self.clear_low = self.low + spec.clear_margin
        self.clear_high = self.high - spec.clear_margin
        self.onset_s, self.clear_s, self.max_gap_s = spec.onset_s, spec.clear_s, spec.max_gap_s

    def check(self, bed: BedState, ts: float, out: Out) -> None:
        # fast path: not bad, and nothing to clear (only non-idle trackers are kept)
        if self.low <= bed.latest[self.signal][0] <= self.high and self.name not in bed.trackers:
            return
        super().check(bed, ts, out)

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        value = bed.latest[self.signal][0]
        bad = value < self.low or value > self.high
        return bad, self.clear_low <= value <= self.clear_high

    def fine(self, *, hypertensive: bool) -> tuple[float, float]:
        return self.low, self.high

    def observe(self, bed: BedState, ts: float) -> dict[str, Any]:
        if self.signal == "map":
            return _map_observed(bed)
        return {self.signal: rounded(bed.latest[self.signal][0])}

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.spec.low is not None:
            out[f"{self.signal}_min"] = self.spec.low
        if self.spec.high is not None:
            out[f"{self.signal}_max"] = self.spec.high
        return out


class BandRule(ReadingRule):
    """MAP below or above the band in force (which depends on the context and event time)."""

    spec: BandSpec
    triggers = frozenset({"map"})

    def __init__(self, name: str, spec: BandSpec, protocol: Protocol) -> None:
        super().__init__(name, spec, protocol)
        self.below = spec.side == "below"
        self.only_when_perfused = spec.only_when_perfused
        self.floor = protocol.floor
        self.onset_s, self.clear_s, self.max_gap_s = spec.onset_s, spec.clear_s, spec.max_gap_s
        bands = protocol.bands
        # the MAP values that are fine under the two bands that hold at any event time
        self.fine_standard = self._fine(bands.standard)
        self.fine_hypertension = self._fine(bands.chronic_hypertension)

    def _fine(self, band: Band) -> tuple[float, float]:
        if self.below:
            return (band.low if band.low > self.floor else -_INF, _INF)
        return (-_INF, band.high)

    def fine(self, *, hypertensive: bool) -> tuple[float, float]:
        return self.fine_hypertension if hypertensive else self.fine_standard

    def check(self, bed: BedState, ts: float, out: Out) -> None:
        context = bed.context
        if context is None:
            low, high = self.fine_standard
        elif context.map_trial_until is not None:  # the band depends on the time: no shortcut
            super().check(bed, ts, out)
            return
        elif context.chronic_hypertension:
            low, high = self.fine_hypertension
        else:
            low, high = self.fine_standard
        if not low <= bed.latest["map"][0] <= high or self.name in bed.trackers:
            super().check(bed, ts, out)

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        value = bed.latest["map"][0]
        context = bed.context
        if context is None:
            band = self.protocol.bands.standard
        else:
            band = self.protocol.band_at(context, ts, bed.trial_start)
        margin = self.spec.clear_margin
        if self.below:
            if band.low <= self.floor:  # design §4: map.below_floor covers this band
                return False, True
            return value < band.low, value >= band.low + margin
        if value <= band.high:
            return False, value <= band.high - margin
        unperfused = self.only_when_perfused and bed.failing(_PERFUSION)
        return not unperfused, unperfused

    def observe(self, bed: BedState, ts: float) -> dict[str, Any]:
        return _map_observed(bed)

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        name = self.protocol.band_name_at(bed.context, ts, bed.trial_start)
        band = self.protocol.band_at(bed.context, ts, bed.trial_start)
        return {"map_min": band.low, "map_max": band.high, "band": name}


class LatestRule(ReadingRule):
    """The latest measurement is abnormal: raises and clears with each new measurement."""

    spec: LatestSpec

    def __init__(self, name: str, spec: LatestSpec, protocol: Protocol) -> None:
        super().__init__(name, spec, protocol)
        self.signal = spec.signal
        self.triggers = frozenset({spec.signal})
        self.at_or_above = _INF if spec.at_or_above is None else spec.at_or_above
        self.below = -_INF if spec.below is None else spec.below

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        value = bed.latest[self.signal][0]
        bad = value >= self.at_or_above or value < self.below
        return bad, not bad

    def observe(self, bed: BedState, ts: float) -> dict[str, Any]:
        return {self.signal: rounded(bed.latest[self.signal][0])}

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        if self.spec.at_or_above is not None:
            return {f"{self.signal}_below": self.spec.at_or_above}
        return {f"{self.signal}_min": self.spec.below}


class TrialHintRule(LatestRule):
    """Advisory: oliguria suggests the MAP trial, unless one is already running."""

    spec: TrialHintSpec

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        bad, _ = super().condition(bed, ts)
        context = bed.context
        if (
            bad
            and context is not None
            and self.protocol.trial_running(context, ts, bed.trial_start)
        ):
            bad = False
        return bad, not bad

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        trial = self.protocol.bands.map_trial
        return {
            "urine_output_min": self.spec.below,
            "trial_map_min": trial.low,
            "trial_map_max": trial.high,
            "trial_s": self.protocol.trial.max_duration_s,
        }


class SkinColdRule(ReadingRule):
    """Cold periphery from gradients to fresh reference probes, else from skin temperature."""

    spec: SkinColdSpec
    triggers = frozenset({"skin_temp", "core_temp", "skin_temp_ref"})

    def __init__(self, name: str, spec: SkinColdSpec, protocol: Protocol) -> None:
        super().__init__(name, spec, protocol)
        self.onset_s, self.clear_s, self.max_gap_s = spec.onset_s, spec.clear_s, spec.max_gap_s

    def check(self, bed: BedState, ts: float, out: Out) -> None:
        # fast path (most skin readings): idle, no reference probe ever seen, so only the
        # absolute fallback applies, and the skin is warm enough for it
        latest = bed.latest
        if (
            "core_temp" not in latest
            and "skin_temp_ref" not in latest
            and self.name not in bed.trackers
            and latest["skin_temp"][0] >= self.spec.fallback_skin_below
        ):
            return
        super().check(bed, ts, out)

    def _gradients(self, bed: BedState, ts: float) -> dict[str, float]:
        """Gradients to the reference probes that are fresh at ``ts``: name → °C."""
        skin = bed.latest["skin_temp"][0]
        out = {}
        for ref, name in (("core_temp", "core_skin"), ("skin_temp_ref", "forearm_fingertip")):
            found = bed.latest.get(ref)
            if found is not None and abs(ts - found[1]) <= self.spec.reference_max_age_s:
                out[name] = found[0] - skin
        return out

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        if "skin_temp" not in bed.latest:
            return False, True
        spec, margin = self.spec, self.spec.clear_margin
        if ts - bed.latest["skin_temp"][1] > spec.reference_max_age_s:
            return False, False  # a stale skin temperature (probe off) is no evidence
        gradients = self._gradients(bed, ts)
        if not gradients:
            skin = bed.latest["skin_temp"][0]
            return skin < spec.fallback_skin_below, skin >= spec.fallback_skin_below + margin
        limits = {
            "core_skin": spec.core_skin_gradient,
            "forearm_fingertip": spec.forearm_fingertip_gradient,
        }
        bad = any(g >= limits[n] for n, g in gradients.items())
        good = all(g < limits[n] - margin for n, g in gradients.items())
        return bad, good

    def observe(self, bed: BedState, ts: float) -> dict[str, Any]:
        observed: dict[str, Any] = {"skin_temp": rounded(bed.latest["skin_temp"][0])}
        gradients = self._gradients(bed, ts)
        for name, value in gradients.items():
            observed[f"{name}_gradient"] = rounded(value)
        observed["mode"] = "gradient" if gradients else "absolute"
        return observed

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        spec = self.spec
        return {
            "core_skin_gradient_below": spec.core_skin_gradient,
            "forearm_fingertip_gradient_below": spec.forearm_fingertip_gradient,
            "skin_temp_min_without_reference": spec.fallback_skin_below,
        }


class PerfusionRule(ReadingRule):
    """``perfusion.inadequate`` while any component rule is raised; lists the failing ones."""

    spec: PerfusionSpec

    def __init__(
        self, name: str, spec: PerfusionSpec, triggers: Iterable[str], protocol: Protocol
    ) -> None:
        super().__init__(name, spec, protocol)
        self.triggers = frozenset(triggers)

    def check(self, bed: BedState, ts: float, out: Out) -> None:
        if not bed.trackers:  # no rule is pending or raised: nothing fails, nothing to clear
            return
        super().check(bed, ts, out)

    def _failing(self, bed: BedState) -> list[str]:
        return [c for c in self.spec.components if bed.failing(c)]

    def condition(self, bed: BedState, ts: float) -> tuple[bool, bool]:
        bad = any(bed.failing(c) for c in self.spec.components)
        return bad, not bad

    def observe(self, bed: BedState, ts: float) -> dict[str, Any]:
        return {"failing": self._failing(bed)}

    def target(self, bed: BedState, ts: float) -> dict[str, Any]:
        return {"components": list(self.spec.components)}


class ArtefactRule:
    """``signal.artefact``: artefacts are most of the bed's readings of the last minute."""

    name = "signal.artefact"

    def __init__(self, spec: ArtefactSpec, protocol: Protocol) -> None:
        self.spec, self.protocol = spec, protocol
        self.message = spec.text()

    def check(self, bed: BedState, ts: float, signals: Iterable[str], out: Out) -> None:
        """After ``bed.artefacts`` took the reading at ``ts`` (``signals``: the artefact ones)."""
        is_open = bed.alerts.is_open(self.name)
        if not is_open and not bed.artefacts.recently_seen(ts):
            return
        artefacts, clean = bed.artefacts.counts()
        total = artefacts + clean
        spec = self.spec
        bad = artefacts >= spec.min_artefacts and artefacts > spec.dominant_fraction * total
        observed = {"artefacts": artefacts, "readings": total, "signals": sorted(signals)}
        if bad and not is_open:
            found = Finding(ts, observed, {"artefact_fraction_max": spec.dominant_fraction})
            out.append(
                raise_alert(bed, found, rule=self.name, spec=spec, message=self.message, at=ts)
            )
        elif not bad and is_open:
            _append(out, bed.alerts.close(bed.header(), self.name, ts))


class TickRule:
    """A rule on the clock: raises in ``tick(now)``, clears when the reading arrives."""

    name: str
    spec: RuleSpec

    def __init__(self, spec: RuleSpec, protocol: Protocol) -> None:
        self.spec, self.protocol = spec, protocol
        self.message = spec.text()

    def raise_silent(self, bed: BedState, rule: str, found: Finding, now: float, out: Out) -> None:
        out.append(raise_alert(bed, found, rule=rule, spec=self.spec, message=self.message, at=now))

    def tick(self, bed: BedState, now: float, out: Out) -> None:
        raise NotImplementedError


class SignalLostRule(TickRule):
    """``signal.lost``: no MAP arrived for ``after_s`` (compared with the arrival time)."""

    spec: SilenceSpec
    name = "signal.lost"

    def tick(self, bed: BedState, now: float, out: Out) -> None:
        last = bed.map_arrival
        if last is None or now - last < self.spec.after_s or bed.alerts.is_open(self.name):
            return
        found = Finding(
            last + self.spec.after_s,
            {"last_map_arrival": format_ts(last), "silent_s": rounded(now - last, 1)},
            {"map_every_s_max": self.spec.after_s},
        )
        self.raise_silent(bed, self.name, found, now, out)

    def seen(self, bed: BedState, ts: float, out: Out) -> None:
        if bed.alerts.is_open(self.name):
            _append(out, bed.alerts.close(bed.header(), self.name, ts))


class DeviceOfflineRule(TickRule):
    """``device.offline``: a device that sent readings has been silent for ``after_s``."""

    spec: SilenceSpec
    name = "device.offline"

    def _silent(self, bed: BedState, now: float) -> list[str]:
        return sorted(d for d, t in bed.arrivals.items() if now - t >= self.spec.after_s)

    def tick(self, bed: BedState, now: float, out: Out) -> None:
        if not bed.arrivals or now - min(bed.arrivals.values()) < self.spec.after_s:
            return
        silent = self._silent(bed, now)
        if not silent:
            return
        observed = {"devices": silent}
        if bed.alerts.is_open(self.name):
            change = self.protocol.updates.min_relative_change
            _append(out, bed.alerts.update(bed.header(), self.name, now, observed, change))
            return
        onset = min(bed.arrivals[d] for d in silent) + self.spec.after_s
        found = Finding(onset, observed, {"device_every_s_max": self.spec.after_s})
        self.raise_silent(bed, self.name, found, now, out)

    def seen(self, bed: BedState, ts: float, arrival: float, out: Out) -> None:
        if bed.alerts.is_open(self.name) and not self._silent(bed, arrival):
            _append(out, bed.alerts.close(bed.header(), self.name, ts))


class AssessmentRule(TickRule):
    """``assessment.overdue.{signal}``: no value within the interval in force.

    The schedule starts at ``context.protocol_started``, or at the bed's first reading
    when no context gives it; a signal never measured is due one interval after the start.
    """

    spec: AssessmentSpec
    name = _OVERDUE

    def schedule(self, bed: BedState, signal: str) -> tuple[float, float] | None:
        """``(last, due)``: when ``signal`` was last assessed (or the start) and is due next."""
        start = bed.context.protocol_started if bed.context is not None else None
        start = bed.first_ts if start is None else start
        if start is None:
            return None
        found = bed.latest.get(signal)
        last = start if found is None else found[1]
        return last, last + self.spec.interval(signal, last - start)

    def __init__(self, spec: AssessmentSpec, protocol: Protocol) -> None:
        super().__init__(spec, protocol)
        self.rule_names = {signal: f"{_OVERDUE}.{signal}" for signal in spec.signals}

    def tick(self, bed: BedState, now: float, out: Out) -> None:
        if bed.overdue_next is not None and now < bed.overdue_next:
            return  # a cache of the earliest due time: nothing can be due before it
        upcoming = math.inf
        for signal, rule in self.rule_names.items():
            schedule = self.schedule(bed, signal)
            if schedule is None or bed.alerts.is_open(rule):
                continue
            last, due = schedule
            if now < due:
                upcoming = min(upcoming, due)
                continue
            found = Finding(
                due, {"signal": signal, "since": format_ts(last)}, {"interval_s": due - last}
            )
            self.raise_silent(bed, rule, found, now, out)
        bed.overdue_next = upcoming if bed.first_ts is not None else None

    def seen(self, bed: BedState, values: Iterable[str], ts: float, out: Out) -> None:
        """A reading at ``ts`` with these signals: clear what it makes no longer overdue."""
        for signal in values:
            rule = self.rule_names.get(signal)
            if rule is None:
                continue
            bed.overdue_next = None  # the schedule moved
            if bed.alerts.is_open(rule):
                _append(out, bed.alerts.close(bed.header(), rule, ts))


@dataclass(slots=True)
class RuleSet:
    """A protocol's rules, indexed for the evaluator's hot path."""

    protocol: Protocol
    #: signal → the reading rules it triggers, in the protocol's order (perfusion last)
    by_signal: dict[str, tuple[ReadingRule, ...]]
    #: signal → (standard, chronic hypertension) ranges in which none of its rules can move
    #: while idle: a bed with no pending or raised rule skips them all (the hot path)
    quiet: dict[str, tuple[tuple[float, float], tuple[float, float]]]
    reading_rules: dict[str, ReadingRule]
    artefact: ArtefactRule
    signal_lost: SignalLostRule
    device_offline: DeviceOfflineRule
    assessment: AssessmentRule | None

    def targets(self, bed: BedState, ts: float) -> dict[str, Any]:
        """The targets in force for ``bed`` at ``ts``, by rule (for the status document)."""
        return {name: rule.target(bed, ts) for name, rule in self.reading_rules.items()}


_FAMILIES: dict[type[RuleSpec], type[ReadingRule]] = {
    SustainedSpec: SustainedRule,
    BandSpec: BandRule,
    TrialHintSpec: TrialHintRule,
    LatestSpec: LatestRule,
    SkinColdSpec: SkinColdRule,
}


def _quiet_ranges(
    by_signal: dict[str, list[ReadingRule]],
) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Per signal, where every rule it triggers has a fine range: their intersection."""
    quiet = {}
    for signal, rules in by_signal.items():
        pair = []
        for hypertensive in (False, True):
            ranges = [rule.fine(hypertensive=hypertensive) for rule in rules]
            if any(r is None for r in ranges):
                break
            lows, highs = zip(*(r for r in ranges if r is not None), strict=True)
            pair.append((max(lows), min(highs)))
        if len(pair) == 2:
            quiet[signal] = (pair[0], pair[1])
    return quiet


def build_rules(protocol: Protocol) -> RuleSet:
    """Instantiate the enabled rules of ``protocol``."""
    rules = protocol.rules
    reading: dict[str, ReadingRule] = {}
    for name, spec in rules.enabled().items():
        family = _FAMILIES.get(type(spec))
        if family is not None:
            reading[name] = family(name, spec, protocol)
    if rules.perfusion_inadequate is not None:
        parts = rules.perfusion_inadequate.components
        triggers = set().union(*(reading[c].triggers for c in parts if c in reading))
        reading[_PERFUSION] = PerfusionRule(
            _PERFUSION, rules.perfusion_inadequate, triggers, protocol
        )
    by_signal: dict[str, list[ReadingRule]] = {}
    for rule in reading.values():
        for signal in sorted(rule.triggers):
            by_signal.setdefault(signal, []).append(rule)
    assessment = rules.assessment_overdue
    return RuleSet(
        protocol=protocol,
        by_signal={s: tuple(r) for s, r in by_signal.items()},
        quiet=_quiet_ranges(by_signal),
        reading_rules=reading,
        artefact=ArtefactRule(rules.signal_artefact, protocol),
        signal_lost=SignalLostRule(rules.signal_lost, protocol),
        device_offline=DeviceOfflineRule(rules.device_offline, protocol),
        assessment=None if assessment is None else AssessmentRule(assessment, protocol),
    )
