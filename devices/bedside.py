"""One simulated bed: a patient, its monitor and its chart, as a stream of wire messages.

:func:`bed_messages` runs a scenario for one bed and yields the messages of the wire
contract (design §3) in event-time order: the retained context first, then MAP numerics
(1 Hz), temperatures, the ABP waveform in 1-s chunks (if asked), and the charted CRT and
mottling, lactate and urine output. Faults from the scenario and ``--fault`` options are
applied on the way. Everything random comes from generators seeded with ``(seed, ward,
bed)``, so a bed's payloads are byte-identical for the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.faults import Artefacts, Message, apply_message_faults
from devices.physiology import Patient, physiology
from devices.scenario import FaultSpec, Scenario
from streamproc.timestamps import format_ts

__all__ = ["BedPlan", "bed_messages", "context_payload", "encode_json"]


@dataclass(frozen=True, slots=True)
class BedPlan:
    """What one bed runs: scenario, identity, timeline and faults."""

    scenario: Scenario
    ward: str
    bed: str
    seed: int
    start_ts: float  # epoch seconds of event offset 0
    duration_s: float
    waveform: bool = False
    extra_faults: Sequence[FaultSpec] = ()  # from --fault, on top of the scenario's own

    @property
    def faults(self) -> list[FaultSpec]:
        return [*self.scenario.faults, *self.extra_faults]

    @property
    def topic(self) -> str:
        return f"icu/{self.ward}/{self.bed}"

    @property
    def patient_id(self) -> str:
        """An opaque id (design §7): a hash, never anything readable."""
        raw = f"{self.seed}/{self.ward}/{self.bed}/{self.scenario.name}".encode()
        return "pt-" + hashlib.sha256(raw).hexdigest()[:16]


def encode_json(obj: dict[str, Any]) -> bytes:
    """Compact, deterministic JSON bytes."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def context_payload(plan: BedPlan) -> bytes:
    ctx = plan.scenario.context
    trial = ctx.map_trial_until_min
    return encode_json(
        {
            "patient": plan.patient_id,
            "protocol": ctx.protocol,
            "chronic_hypertension": ctx.chronic_hypertension,
            "weight_kg": ctx.weight_kg,
            "protocol_started": format_ts(plan.start_ts + ctx.protocol_started_min * 60.0),
            "map_trial_until": None if trial is None else format_ts(plan.start_ts + trial * 60.0),
        }
    )


def _generators(plan: BedPlan) -> list[np.random.Generator]:
    """Independent streams for physiology, waveform, charting and faults (in that order)."""
    bed_key = zlib.crc32(f"{plan.ward}/{plan.bed}".encode())
    children = np.random.SeedSequence([plan.seed, bed_key]).spawn(4)
    return [np.random.Generator(np.random.PCG64(child)) for child in children]


def _chart_times(
    first: float, period: float, jitter: float, end: float, rng: np.random.Generator
) -> list[float]:
    times: list[float] = []
    k = 0
    while (t := first + k * period) < end:
        times.append(float(round(t + float(rng.uniform(0.0, jitter)))))
        k += 1
    return times


class _Device:
    """A sender with its own ``seq`` and (possibly skewed) clock."""

    def __init__(self, name: str, plan: BedPlan, skew: float) -> None:
        self.name = name
        self.plan = plan
        self.skew = skew
        self.seq = 0

    def _stamp(self, offset: float) -> str:
        return format_ts(self.plan.start_ts + offset + self.skew)

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def vitals(self, offset: float, values: dict[str, float], *, monitor: bool = True) -> Message:
        body = {
            "ts": self._stamp(offset),
            "device": self.name,
            "seq": self._next_seq(),
            "values": values,
        }
        return Message(offset, f"{self.plan.topic}/vitals", encode_json(body), monitor=monitor)

    def waveform(self, offset: float, start: float, fs: float, samples: list[float]) -> Message:
        """A chunk whose first sample is at ``start``, sent at ``offset`` (once complete)."""
        body = {
            "t0": self._stamp(start),
            "fs": fs,
            "unit": "mmHg",
            "seq": self._next_seq(),
            "device": self.name,
            "samples": samples,
        }
        return Message(offset, f"{self.plan.topic}/waveform/abp", encode_json(body))


def bed_messages(plan: BedPlan) -> Iterator[Message]:
    """Every message of one bed, in event-time order (faults applied)."""
    rng_patient, rng_wave, rng_chart, rng_faults = _generators(plan)
    faults = plan.faults
    artefacts = Artefacts(faults, physiology().artefacts)
    raw = _Run(plan, rng_patient, rng_wave, rng_chart, artefacts).messages()
    yield Message(0.0, f"{plan.topic}/context", context_payload(plan), retain=True, monitor=False)
    yield from apply_message_faults(raw, faults, artefacts, rng_faults)


class _Run:
    """The step loop of one bed: advance the patient, emit what is due at each second."""

    def __init__(
        self,
        plan: BedPlan,
        rng_patient: np.random.Generator,
        rng_wave: np.random.Generator,
        rng_chart: np.random.Generator,
        artefacts: Artefacts,
    ) -> None:
        self.plan = plan
        self.timing = physiology().timing
        self.artefacts = artefacts
        self.patient = Patient(plan.scenario.patient_params(), rng_patient)
        self.wave_rng = rng_wave
        skew = sum(f.seconds for f in plan.faults if f.kind == "skew")
        self.monitor = _Device(f"mon-{plan.bed}", plan, skew)
        # charted values (CRT, lactate, urine) reach the bus through the monitor's gateway
        self.chart = self.monitor
        self.events = sorted(plan.scenario.events, key=lambda e: e.at_min)
        t = self.timing
        end = plan.duration_s
        self.crt_at = set(
            _chart_times(t.crt_first_s, t.crt_period_s, t.crt_jitter_s, end, rng_chart)
        )
        self.lactate_at = set(
            _chart_times(t.lactate_first_s, t.lactate_period_s, t.lactate_jitter_s, end, rng_chart)
        )
        self.urine_at = set(
            _chart_times(t.urine_first_s, t.urine_period_s, t.urine_jitter_s, end, rng_chart)
        )

    def messages(self) -> Iterator[Message]:
        step = self.timing.map_period_s
        n_steps = int(self.plan.duration_s / step)
        for i in range(n_steps):
            offset = i * step
            if i:
                self.patient.advance(step)
            self._apply_events(offset)
            yield from self._monitor(offset)
            yield from self._charting(offset)

    def _apply_events(self, offset: float) -> None:
        defaults = physiology().events
        while self.events and self.events[0].at_min * 60.0 <= offset:
            event = self.events.pop(0)
            self.patient.apply(defaults[event.kind].merged(event.overrides()))

    def _line_value(self, offset: float, true_value: float) -> float:
        window = self.artefacts.line(offset)
        if window is None:
            return true_value
        noise = self.artefacts.params.level_noise_sd * float(self.patient.rng.standard_normal())
        return window.level + noise

    def _monitor(self, offset: float) -> Iterator[Message]:
        scenario = self.plan.scenario
        if offset % self.timing.temp_period_s == 0:
            core, skin, ref = self.patient.temperatures()
            skin = self.artefacts.skin_reading(offset, skin)
            values = {
                "core_temp": round(core, 1),
                "skin_temp": round(skin, 1),
                "skin_temp_ref": round(ref, 1),
            }
            yield self.monitor.vitals(offset, values)
        if scenario.numerics:
            value = self._line_value(offset, self.patient.map_numeric())
            yield self.monitor.vitals(offset, {"map": round(value, 1)})
        chunk_s = self.timing.waveform_chunk_s
        if (scenario.waveform or self.plan.waveform) and offset >= chunk_s:
            yield self._waveform(offset, offset - chunk_s)

    def _waveform(self, offset: float, start: float) -> Message:
        """The chunk of the second that just ended: a monitor sends samples once it has them
        (the numeric of ``offset`` goes first, so the monitor's own MAP wins ties)."""
        fs = self.timing.waveform_fs
        n = round(fs * self.timing.waveform_chunk_s)
        samples = self.patient.abp_samples(n, fs, self.wave_rng)
        window = self.artefacts.line(start)
        if window is not None:
            sd = self.artefacts.params.level_noise_sd
            samples = window.level + sd * self.wave_rng.standard_normal(n)
        return self.monitor.waveform(offset, start, fs, np.round(samples, 1).tolist())

    def _charting(self, offset: float) -> Iterator[Message]:
        p = self.patient
        if offset in self.crt_at:
            yield self.chart.vitals(
                offset, {"crt": round(p.crt(), 1), "mottling": p.mottling()}, monitor=False
            )
        if offset in self.lactate_at:
            yield self.chart.vitals(
                offset, {"lactate": round(p.lactate_sample(), 1)}, monitor=False
            )
        if offset in self.urine_at:
            yield self.chart.vitals(offset, {"urine_output": round(p.urine(), 2)}, monitor=False)
