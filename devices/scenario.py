"""Scenarios as data: ``devices/scenarios/*.toml``, validated with pydantic.

A scenario describes one patient course: the bed context, the patient's parameters (over
``physiology.toml``), timed events (hypotension, vasopressor steps, fluids, recovery...),
device faults, and the alerts streamproc is expected to raise, each with the rule, the
priority and the approximate event time of its ``raised`` event.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devices.physiology import PatientParams, physiology
from streamproc.errors import ConfigError

__all__ = [
    "MIX",
    "ContextSpec",
    "Expectation",
    "FaultKind",
    "FaultSpec",
    "Scenario",
    "ScenarioEvent",
    "load_scenario",
    "scenario_names",
    "scenarios_for_beds",
]

#: ``--scenario mix``: the beds take every shipped scenario in turn.
MIX = "mix"

_STRICT = ConfigDict(extra="forbid", frozen=True)

FaultKind = Literal[
    "flush",  # arterial-line flush: ABP saturates high for a few seconds
    "zeroing",  # transducer zeroing: ABP near 0
    "disconnect",  # line disconnected: a flat trace
    "probe_off",  # fingertip probe detached: drifts to room temperature
    "dropout",  # the monitor is silent
    "duplicate",  # messages sent twice (same device and seq)
    "reorder",  # a message overtaken by the next one on the same topic
    "skew",  # the device clock is off by `seconds`
    "malformed",  # payloads broken in one of several ways
]
#: Faults that hold over a time window; the others apply at a rate or for the whole run.
WINDOW_FAULTS: frozenset[str] = frozenset(
    {"flush", "zeroing", "disconnect", "probe_off", "dropout"}
)


class ContextSpec(BaseModel):
    """The retained bed context (design §3.3); times are minutes from the scenario start."""

    model_config = _STRICT
    protocol: str = "tartare2s-ttp"
    chronic_hypertension: bool = False
    weight_kg: float = 70.0
    # The TTP protocol starts with the scenario: streamproc schedules the hourly assessments
    # from then, and the simulated chart has no values from before the start.
    protocol_started_min: float = 0.0
    map_trial_until_min: float | None = None


class ScenarioEvent(BaseModel):
    """A clinical event at ``at_min``; fields override the kind's defaults."""

    model_config = _STRICT
    at_min: float
    kind: str
    tau_s: float | None = None
    map: float | None = None
    map_delta: float | None = None
    perfusion: float | None = None
    perfusion_delta: float | None = None
    lactate_extra: float | None = None
    lactate_clearance: float | None = None

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude={"at_min", "kind"}, exclude_none=True)


class FaultSpec(BaseModel):
    """A device fault: a window (`at_min`, `duration_s`) or a rate/offset for the whole run."""

    model_config = _STRICT
    kind: FaultKind
    at_min: float = 0.0
    duration_s: float | None = None  # windows: default from physiology.toml [artefacts]
    rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0  # duplicate / reorder / malformed
    seconds: float = 0.0  # skew
    level: float | None = None  # flush / zeroing / disconnect: the flat level in mmHg


class Expectation(BaseModel):
    """An alert the scenario must raise: ``raised`` at about ``at_min`` ± ``tolerance_min``.

    ``clock = "arrival"`` marks alerts that run on the receiver's clock (``signal.lost``,
    ``device.offline``: design §5): offline replay raises them at event time, a live
    service only when the silence lasts that long on the wall clock too.
    """

    model_config = _STRICT
    rule: str
    priority: Literal["high", "medium", "low"]
    at_min: float
    tolerance_min: float = 2.0
    kind: Literal["physiological", "technical", "advisory"] = "physiological"
    clock: Literal["event", "arrival"] = "event"
    #: may fire, need not (a borderline value): matched if present, never missing
    optional: bool = False
    why: str = ""


class Scenario(BaseModel):
    model_config = _STRICT
    name: str
    description: str
    duration_min: Annotated[float, Field(gt=0)]
    numerics: bool = True  # the monitor sends MAP numerics
    waveform: bool = False  # the monitor sends the ABP waveform (also when --waveform)
    context: ContextSpec = ContextSpec()
    patient: dict[str, float] = {}
    events: list[ScenarioEvent] = []
    faults: list[FaultSpec] = []
    expect: list[Expectation] = []

    def patient_params(self) -> PatientParams:
        base = physiology().patient.model_dump()
        unknown = set(self.patient) - set(base)
        if unknown:
            raise ConfigError(f"scenario {self.name}: unknown [patient] keys {sorted(unknown)}")
        return PatientParams.model_validate({**base, **self.patient})

    @property
    def duration_s(self) -> float:
        return self.duration_min * 60.0


def _scenario_dir() -> Any:
    return resources.files("devices").joinpath("scenarios")


@cache
def scenario_names() -> tuple[str, ...]:
    """The shipped scenarios, sorted by name."""
    files = (f.name for f in _scenario_dir().iterdir() if f.name.endswith(".toml"))
    return tuple(sorted(name.removesuffix(".toml") for name in files))


@cache
def load_scenario(name: str) -> Scenario:
    """A shipped scenario by name; `ConfigError` (naming the choices) when there is none."""
    if name not in scenario_names():
        raise ConfigError(
            f"no scenario {name!r}: choose one of {', '.join(scenario_names())} or {MIX!r}"
        )
    text = _scenario_dir().joinpath(f"{name}.toml").read_text("utf-8")
    try:
        scenario = Scenario.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        raise ConfigError(f"scenario {name}: {exc}") from exc
    scenario.patient_params()  # unknown patient keys fail at load, not mid-run
    for event in scenario.events:
        if event.kind not in physiology().events:
            raise ConfigError(f"scenario {name}: unknown event kind {event.kind!r}")
    return scenario


def scenarios_for_beds(name: str, beds: int) -> list[Scenario]:
    """One scenario per bed: ``name`` for all, or every scenario in turn for ``mix``."""
    if name == MIX:
        names = scenario_names()
        return [load_scenario(names[i % len(names)]) for i in range(beds)]
    scenario = load_scenario(name)
    return [scenario] * beds
