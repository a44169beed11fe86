"""The simulated patient: a small, seeded model of one septic-shock patient's signals.

Every parameter lives in ``physiology.toml`` (with its source or the assumption it makes);
this module only integrates the model. State advances in steps of event time:

* MAP settles towards a target with a first-order lag, plus a slow Ornstein–Uhlenbeck
  drift, a respiratory swing and beat-to-beat noise. Scenario events move the target.
* Peripheral perfusion (0–1) settles towards its own target and is capped by MAP below the
  autoregulation range. It drives fingertip temperature (a first-order lag with a half-time
  of minutes), CRT, mottling, lactate (rise within an hour, clearance over hours) and, with
  MAP, urine output.

The model draws its noise from a ``numpy.random.Generator`` handed in by the caller, so the
same seed gives the same numbers.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = [
    "ArtefactParams",
    "EventEffect",
    "LoadParams",
    "Patient",
    "PatientParams",
    "Physiology",
    "TimingParams",
    "physiology",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)


class PatientParams(BaseModel):
    """The ``[patient]`` table: initial state and constants of one patient."""

    model_config = _STRICT
    map: float
    map_noise_sd: float
    map_drift_sd: float
    map_drift_tau_s: float
    map_resp_amp: float
    map_resp_period_s: float
    vasopressor_response: float
    perfusion: float
    map_perfusion_full: float
    map_perfusion_zero: float
    core_temp: float
    core_tau_s: float
    skin_gradient_warm: float
    skin_gradient_cold: float
    ref_gradient_warm: float
    ref_gradient_cold: float
    skin_cooling_half_time_s: float
    skin_rewarming_half_time_s: float
    temp_noise_sd: float
    crt_warm: float
    crt_cold: float
    crt_noise_sd: float
    mottling_per_lost_perfusion: float
    lactate: float
    lactate_basal: float
    lactate_hypoperfusion: float
    lactate_extra: float
    lactate_rise_half_time_s: float
    lactate_clear_half_time_s: float
    lactate_noise_sd: float
    urine_max: float
    renal_map_threshold: float
    renal_map_width: float
    urine_noise_sd: float
    heart_rate: float
    heart_rate_sd: float
    pulse_pressure: float


class TimingParams(BaseModel):
    """The ``[timing]`` table: when each signal is measured or charted (seconds)."""

    model_config = _STRICT
    map_period_s: float
    temp_period_s: float
    waveform_fs: float
    waveform_chunk_s: float
    crt_first_s: float
    crt_period_s: float
    crt_jitter_s: float
    lactate_first_s: float
    lactate_period_s: float
    lactate_jitter_s: float
    urine_first_s: float
    urine_period_s: float
    urine_jitter_s: float


class ArtefactParams(BaseModel):
    """The ``[artefacts]`` table: how arterial-line and probe artefacts look."""

    model_config = _STRICT
    flush_level: float
    flush_duration_s: float
    zeroing_level: float
    zeroing_duration_s: float
    disconnect_level: float
    level_noise_sd: float
    probe_off_ambient: float
    probe_off_tau_s: float


class EventEffect(BaseModel):
    """What a scenario event does; unset fields leave that part of the patient alone."""

    model_config = _STRICT
    tau_s: float = 300.0
    map: float | None = None
    map_delta: float | None = None
    perfusion: float | None = None
    perfusion_delta: float | None = None
    lactate_extra: float | None = None
    lactate_clearance: float | None = None  # multiplier on the clearance rate

    def merged(self, overrides: dict[str, Any]) -> EventEffect:
        """These defaults under a scenario event's fields; an absolute ``map`` or
        ``perfusion`` in the event replaces the default step (``map_delta``...)."""
        fields = self.model_dump(exclude_unset=True)
        for absolute, step in (("map", "map_delta"), ("perfusion", "perfusion_delta")):
            if absolute in overrides:
                fields.pop(step, None)
        return self.model_validate({**fields, **overrides})


class LoadParams(BaseModel):
    """The ``[loadtest]`` table: the load generator's fixture values."""

    model_config = _STRICT
    map_normal: float
    map_normal_spread: float
    map_breach: float
    core_temp: float
    skin_temp: float
    skin_temp_ref: float
    crt_normal: float
    crt_breach: float
    lactate: float
    urine_output: float
    map_period_s: float
    temp_period_s: float
    chart_period_s: float


class Physiology(BaseModel):
    """The whole ``physiology.toml``."""

    model_config = _STRICT
    patient: PatientParams
    timing: TimingParams
    artefacts: ArtefactParams
    events: dict[str, EventEffect]
    loadtest: LoadParams


@cache
def physiology() -> Physiology:
    """The shipped model parameters, loaded and validated once."""
    text = resources.files("devices").joinpath("physiology.toml").read_text("utf-8")
    return Physiology.model_validate(tomllib.loads(text))


def _lag(value: float, target: float, dt: float, tau: float) -> float:
    """One step of a first-order lag with time constant ``tau``."""
    return target + (value - target) * math.exp(-dt / tau)


def _half_time_tau(half_time: float) -> float:
    return half_time / math.log(2.0)


@dataclass(slots=True)
class _Targets:
    map: float
    perfusion: float
    tau_s: float
    lactate_extra: float
    lactate_clearance: float = 1.0


class Patient:
    """One patient's state in event time; ``advance`` it, then read its measurements."""

    def __init__(self, params: PatientParams, rng: np.random.Generator) -> None:
        self.p = params
        self.rng = rng
        self.t = 0.0
        self.map_level = params.map
        self.drift = 0.0
        self.perfusion = params.perfusion
        self.core = params.core_temp
        self.core_target = params.core_temp
        self.lactate = params.lactate
        self.targets = _Targets(params.map, params.perfusion, 300.0, params.lactate_extra)
        self.skin = params.core_temp - self._skin_gradient(self.effective_perfusion)
        self.ref = params.core_temp - self._ref_gradient(self.effective_perfusion)
        self.beat_phase = 0.0

    # --- scenario events ---------------------------------------------------------------------
    def apply(self, effect: EventEffect) -> None:
        """A scenario event: move the targets the state settles towards."""
        tg = self.targets
        tg.tau_s = effect.tau_s
        if effect.map is not None:
            tg.map = effect.map
        if effect.map_delta is not None:
            tg.map += effect.map_delta * self.p.vasopressor_response
        if effect.perfusion is not None:
            tg.perfusion = effect.perfusion
        if effect.perfusion_delta is not None:
            tg.perfusion = min(1.0, tg.perfusion + effect.perfusion_delta)
        if effect.lactate_extra is not None:
            tg.lactate_extra = effect.lactate_extra
        if effect.lactate_clearance is not None:
            tg.lactate_clearance = effect.lactate_clearance

    # --- dynamics ----------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        """Integrate the state over ``dt`` seconds of event time."""
        p, tg = self.p, self.targets
        self.t += dt
        self.map_level = _lag(self.map_level, tg.map, dt, tg.tau_s)
        decay = math.exp(-dt / p.map_drift_tau_s)
        shock = p.map_drift_sd * math.sqrt(1.0 - decay * decay)
        self.drift = self.drift * decay + shock * float(self.rng.standard_normal())
        self.perfusion = _lag(self.perfusion, tg.perfusion, dt, tg.tau_s)
        self.core = _lag(self.core, self.core_target, dt, p.core_tau_s)
        self._advance_skin(dt)
        self._advance_lactate(dt)

    def _advance_skin(self, dt: float) -> None:
        p, perf = self.p, self.effective_perfusion
        skin_eq = self.core - self._skin_gradient(perf)
        half = p.skin_cooling_half_time_s if skin_eq < self.skin else p.skin_rewarming_half_time_s
        self.skin = _lag(self.skin, skin_eq, dt, _half_time_tau(half))
        ref_eq = self.core - self._ref_gradient(perf)
        self.ref = _lag(self.ref, ref_eq, dt, _half_time_tau(half))

    def _advance_lactate(self, dt: float) -> None:
        p, tg = self.p, self.targets
        eq = p.lactate_basal + p.lactate_hypoperfusion * (1.0 - self.effective_perfusion)
        eq += tg.lactate_extra
        if eq > self.lactate:
            tau = _half_time_tau(p.lactate_rise_half_time_s)
        else:
            tau = _half_time_tau(p.lactate_clear_half_time_s) / tg.lactate_clearance
        self.lactate = _lag(self.lactate, eq, dt, tau)

    @property
    def map_mean(self) -> float:
        """The MAP without beat-to-beat noise: level plus drift."""
        return self.map_level + self.drift

    @property
    def effective_perfusion(self) -> float:
        """Perfusion, capped by MAP below the autoregulation range."""
        p = self.p
        span = p.map_perfusion_full - p.map_perfusion_zero
        by_pressure = (self.map_mean - p.map_perfusion_zero) / span
        return max(0.0, min(self.perfusion, by_pressure, 1.0))

    def _skin_gradient(self, perf: float) -> float:
        p = self.p
        return p.skin_gradient_warm + (p.skin_gradient_cold - p.skin_gradient_warm) * (1 - perf)

    def _ref_gradient(self, perf: float) -> float:
        p = self.p
        return p.ref_gradient_warm + (p.ref_gradient_cold - p.ref_gradient_warm) * (1 - perf)

    # --- measurements ------------------------------------------------------------------------
    def _noise(self, sd: float) -> float:
        return sd * float(self.rng.standard_normal())

    def map_numeric(self) -> float:
        p = self.p
        resp = p.map_resp_amp * math.sin(2 * math.pi * self.t / p.map_resp_period_s)
        return self.map_mean + resp + self._noise(p.map_noise_sd)

    def temperatures(self) -> tuple[float, float, float]:
        """``(core, fingertip skin, forearm reference)`` in °C."""
        sd = self.p.temp_noise_sd
        return self.core + self._noise(sd), self.skin + self._noise(sd), self.ref + self._noise(sd)

    def crt(self) -> float:
        p = self.p
        mean = p.crt_warm + (p.crt_cold - p.crt_warm) * (1.0 - self.effective_perfusion)
        return max(0.5, mean + self._noise(p.crt_noise_sd))

    def mottling(self) -> int:
        score = self.p.mottling_per_lost_perfusion * (1.0 - self.effective_perfusion) - 0.5
        return max(0, min(5, round(score)))

    def lactate_sample(self) -> float:
        return max(0.3, self.lactate + self._noise(self.p.lactate_noise_sd))

    def urine(self) -> float:
        p = self.p
        renal = 1.0 / (1.0 + math.exp(-(self.map_mean - p.renal_map_threshold) / p.renal_map_width))
        mean = p.urine_max * renal * self.effective_perfusion
        return max(0.0, mean + self._noise(p.urine_noise_sd))

    def abp_samples(
        self, n: int, fs: float, rng: np.random.Generator
    ) -> np.ndarray[Any, np.dtype[np.floating[Any]]]:
        """``n`` ABP samples at ``fs`` Hz around the current MAP (pulse shape, see below).

        ``rng`` is the waveform's own generator, so that switching the waveform on leaves
        every numeric reading unchanged.
        """
        p = self.p
        rate = (p.heart_rate + p.heart_rate_sd * float(rng.standard_normal())) / 60.0
        phase = self.beat_phase + rate / fs * np.arange(n)
        self.beat_phase = float((phase[-1] + rate / fs) % 1.0)
        return self.map_mean + p.pulse_pressure * _pulse_shape(phase % 1.0)


# Arterial pulse over one beat (phase 0–1): a systolic upstroke and peak, a dicrotic notch
# and wave, and diastolic run-off, as the sum of a few Gaussians and an exponential (a common
# parametric ABP model). Normalised to zero mean over the beat and unit peak-to-trough, so
# that MAP is the beat average and pulse pressure the scale.
_SHAPE_GRID = np.linspace(0.0, 1.0, 1000, endpoint=False)
_RAW_SHAPE = (
    np.exp(-(((_SHAPE_GRID - 0.14) / 0.065) ** 2))
    + 0.45 * np.exp(-(((_SHAPE_GRID - 0.40) / 0.09) ** 2))
    + 0.25 * np.exp(-_SHAPE_GRID / 0.6)
)
_SHAPE = (_RAW_SHAPE - _RAW_SHAPE.mean()) / (_RAW_SHAPE.max() - _RAW_SHAPE.min())


def _pulse_shape(
    phase: np.ndarray[Any, np.dtype[np.floating[Any]]],
) -> np.ndarray[Any, np.dtype[np.floating[Any]]]:
    shape: np.ndarray[Any, np.dtype[np.floating[Any]]] = np.interp(
        phase, _SHAPE_GRID, _SHAPE, period=1.0
    )
    return shape
