"""Resuscitation protocols as data: pydantic models of a protocol file, and the loader.

A protocol file is TOML (``streamproc/presets/<name>.toml``). Every clinical number lives in
such a file with a comment citing its source; this module holds none. The file names each
rule by its alert name (``[rules."map.below_floor"]``); a rule that is absent is off.

The MAP band in force depends on the bed's context at an event time (:meth:`Protocol.band_at`):

    oliguria MAP trial running  →  bands.map_trial
    chronic hypertension        →  bands.chronic_hypertension
    otherwise                   →  bands.standard

How the oliguria 2-h MAP trial is read: ``context.map_trial_until`` is the time the clinician
set for the end of the trial. The trial starts at ``trial_start``, the event time of the
bed's first reading evaluated under that context value (the evaluator records it), and is in
force for readings with ``trial_start <= ts < min(map_trial_until, trial_start +
trial.max_duration_s)``. So it ends by itself at ``map_trial_until`` and never lasts longer
than the protocol's two hours, even if ``map_trial_until`` was set too far ahead.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamproc.errors import ProtocolError
from streamproc.events import BedContext
from streamproc.models import AlertKind, Priority

__all__ = [
    "ArtefactSpec",
    "AssessmentSpec",
    "Band",
    "BandName",
    "BandSpec",
    "Bands",
    "EscalationSpec",
    "LatestSpec",
    "PerfusionSpec",
    "Protocol",
    "SilenceSpec",
    "SkinColdSpec",
    "SustainedSpec",
    "TrialHintSpec",
    "UpdateSpec",
    "load_protocol",
    "preset_names",
]

_STRICT = ConfigDict(extra="forbid", frozen=True)
BandName = Literal["standard", "chronic_hypertension", "map_trial"]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class Band(BaseModel):
    """A MAP target band in mmHg."""

    model_config = _STRICT
    low: float
    high: float
    source: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class Bands(BaseModel):
    model_config = _STRICT
    standard: Band
    chronic_hypertension: Band
    map_trial: Band


class Trial(BaseModel):
    """The oliguria MAP trial (see the module docstring for how it starts and ends)."""

    model_config = _STRICT
    max_duration_s: PositiveSeconds
    source: str


class RuleSpec(BaseModel):
    """What every rule has: who is alerted how urgently, and where the numbers come from."""

    model_config = _STRICT
    priority: Priority
    kind: AlertKind = "physiological"
    latching: bool = False
    message: str  # str.format template over the spec's own fields
    source: str

    def text(self) -> str:
        return self.message.format(**self.model_dump())


class SustainedSpec(RuleSpec):
    """``signal`` below ``low`` (or above ``high``) at every reading for ``onset_s``.

    Clears when every reading is back inside by ``clear_margin`` for ``clear_s``
    (hysteresis). A gap over ``max_gap_s`` between readings restarts the count.
    """

    signal: str
    low: float | None = None
    high: float | None = None
    #: the target is "> low": ``low`` itself is a breach too
    low_inclusive: bool = False
    clear_margin: Annotated[float, Field(ge=0)] = 0.0
    onset_s: Seconds
    clear_s: Seconds
    max_gap_s: PositiveSeconds

    @model_validator(mode="after")
    def _one_side(self) -> SustainedSpec:
        if self.low is None and self.high is None:
            raise ValueError("give low, high or both")
        return self


class BandSpec(RuleSpec):
    """MAP outside the band in force (below ``low`` or above ``high``), sustained."""

    side: Literal["below", "above"]
    clear_margin: Annotated[float, Field(ge=0)]
    onset_s: Seconds
    clear_s: Seconds
    max_gap_s: PositiveSeconds
    #: ``map.above_target`` holds only while no perfusion target is missed
    only_when_perfused: bool = False


class LatestSpec(RuleSpec):
    """The latest measurement of ``signal`` is abnormal: ``>= at_or_above`` or ``< below``."""

    signal: str
    at_or_above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_side(self) -> LatestSpec:
        if (self.at_or_above is None) == (self.below is None):
            raise ValueError("give exactly one of at_or_above, below")
        return self


class TrialHintSpec(LatestSpec):
    """Advisory: the latest value suggests the oliguria MAP trial (when none is running)."""

    kind: AlertKind = "advisory"


class SkinColdSpec(RuleSpec):
    """Cold periphery: temperature gradients, or absolute skin temperature without a reference."""

    core_skin_gradient: float  # core − skin, °C
    forearm_fingertip_gradient: float  # skin_temp_ref − skin_temp, °C
    fallback_skin_below: float  # °C, used without a fresh reference probe
    clear_margin: Annotated[float, Field(ge=0)]
    reference_max_age_s: PositiveSeconds
    onset_s: Seconds
    clear_s: Seconds
    max_gap_s: PositiveSeconds


class PerfusionSpec(RuleSpec):
    """Any listed perfusion rule active ⇒ ``perfusion.inadequate``, naming the failing ones."""

    components: list[str] = Field(min_length=1)


class AssessmentSpec(RuleSpec):
    """``assessment.overdue.{signal}``: no value within the interval in force."""

    kind: AlertKind = "advisory"
    signals: list[str] = Field(min_length=1)
    early_period_s: Seconds  # from protocol_started
    early_interval_s: PositiveSeconds
    late_interval_s: PositiveSeconds
    fixed_interval_s: dict[str, PositiveSeconds] = Field(default_factory=dict)

    def interval(self, signal: str, since_start: float) -> float:
        fixed = self.fixed_interval_s.get(signal)
        if fixed is not None:
            return fixed
        return self.early_interval_s if since_start < self.early_period_s else self.late_interval_s


class SilenceSpec(RuleSpec):
    """A technical rule on the clock: nothing arrived for ``after_s`` (``signal.lost``, …)."""

    kind: AlertKind = "technical"
    after_s: PositiveSeconds
    signal: str | None = None


class ArtefactSpec(RuleSpec):
    """Artefacts are more than ``dominant_fraction`` of the bed's readings in ``window_s``."""

    kind: AlertKind = "technical"
    window_s: Annotated[float, Field(ge=1)]  # counted in whole-second buckets: at least one
    dominant_fraction: Annotated[float, Field(gt=0, lt=1)]
    min_artefacts: Annotated[int, Field(ge=1)]


class EscalationSpec(BaseModel):
    model_config = _STRICT
    from_priority: Priority
    to_priority: Priority
    after_s: PositiveSeconds
    source: str


class UpdateSpec(BaseModel):
    """When an active alert's observed values have changed "materially" (design §5)."""

    model_config = _STRICT
    min_relative_change: Annotated[float, Field(gt=0)]
    source: str


class Rules(BaseModel):
    """Every rule a protocol can switch on, by alert name; ``None`` = off."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    map_below_floor: SustainedSpec = Field(alias="map.below_floor")
    map_below_target: BandSpec | None = Field(None, alias="map.below_target")
    map_above_target: BandSpec | None = Field(None, alias="map.above_target")
    crt_abnormal: LatestSpec | None = Field(None, alias="crt.abnormal")
    skin_cold: SkinColdSpec | None = Field(None, alias="skin.cold")
    lactate_high: LatestSpec | None = Field(None, alias="lactate.high")
    mottling_present: LatestSpec | None = Field(None, alias="mottling.present")
    urine_low: LatestSpec | None = Field(None, alias="urine.low")
    urine_map_trial: TrialHintSpec | None = Field(None, alias="urine.map_trial")
    svo2_low: SustainedSpec | None = Field(None, alias="svo2.low")
    cvp_below_target: SustainedSpec | None = Field(None, alias="cvp.below_target")
    cvp_above_target: SustainedSpec | None = Field(None, alias="cvp.above_target")
    perfusion_inadequate: PerfusionSpec | None = Field(None, alias="perfusion.inadequate")
    assessment_overdue: AssessmentSpec | None = Field(None, alias="assessment.overdue")
    signal_lost: SilenceSpec = Field(alias="signal.lost")
    signal_artefact: ArtefactSpec = Field(alias="signal.artefact")
    device_offline: SilenceSpec = Field(alias="device.offline")

    @model_validator(mode="after")
    def _floor_is_low(self) -> Rules:
        if self.map_below_floor.low is None or self.map_below_floor.signal != "map":
            raise ValueError("map.below_floor needs signal = 'map' and a low threshold")
        return self

    def enabled(self) -> dict[str, RuleSpec]:
        """The rules that are on, by alert name, in file order."""
        out: dict[str, RuleSpec] = {}
        for name, info in type(self).model_fields.items():
            spec = getattr(self, name)
            if spec is not None:
                out[info.alias or name] = spec
        return out


class Protocol(BaseModel):
    """One protocol file."""

    model_config = _STRICT
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    title: str
    description: str
    source: str
    bands: Bands
    trial: Trial
    escalation: EscalationSpec
    updates: UpdateSpec
    rules: Rules

    @model_validator(mode="after")
    def _components_exist(self) -> Protocol:
        perfusion = self.rules.perfusion_inadequate
        if perfusion is not None:
            unknown = set(perfusion.components) - set(self.rules.enabled())
            if unknown:
                raise ValueError(
                    f"rules.perfusion.inadequate.components names rules that are off: "
                    f"{', '.join(sorted(unknown))}"
                )
        return self

    @property
    def floor(self) -> float:
        """The MAP safety floor in mmHg (``map.below_floor``)."""
        low = self.rules.map_below_floor.low
        if low is None:  # pragma: no cover - the presets and _floor_is_low guarantee it
            raise ProtocolError("rules.map.below_floor.low is required")
        return low

    def band_name_at(
        self, context: BedContext | None, ts: float, trial_start: float | None
    ) -> BandName:
        """Which band is in force for ``context`` at event time ``ts`` (module docstring)."""
        if context is None:
            return "standard"
        if self.trial_running(context, ts, trial_start):
            return "map_trial"
        return "chronic_hypertension" if context.chronic_hypertension else "standard"

    def band_at(self, context: BedContext | None, ts: float, trial_start: float | None) -> Band:
        """The MAP band in force for ``context`` at event time ``ts`` (module docstring)."""
        band: Band = getattr(self.bands, self.band_name_at(context, ts, trial_start))
        return band

    def trial_running(self, context: BedContext, ts: float, trial_start: float | None) -> bool:
        until = context.map_trial_until
        if until is None or trial_start is None:
            return False
        return trial_start <= ts < min(until, trial_start + self.trial.max_duration_s)


def _error_text(exc: ValidationError, where: str) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {err['msg']}"
        for err in exc.errors(include_url=False)
    ]
    return f"{where}: " + "; ".join(problems)


def parse_protocol(text: str, *, where: str) -> Protocol:
    """Validate the TOML text of a protocol file; ``where`` names it in errors."""
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(f"{where}: not valid TOML: {exc}") from exc
    try:
        return Protocol.model_validate(raw)
    except ValidationError as exc:
        raise ProtocolError(_error_text(exc, where)) from exc


def preset_names() -> list[str]:
    """The names of the shipped protocol presets, sorted."""
    files = resources.files("streamproc.presets").iterdir()
    return sorted(
        f.name.removesuffix(".toml")
        for f in files
        if f.name.endswith(".toml") and f.name != "signals.toml"
    )


@cache
def _preset(name: str) -> Protocol:
    path = resources.files("streamproc.presets").joinpath(f"{name}.toml")
    return parse_protocol(path.read_text("utf-8"), where=f"preset {name}")


def load_protocol(name_or_path: str | Path) -> Protocol:
    """A preset by name (``tartare2s-ttp``) or a protocol file by path."""
    text = str(name_or_path)
    if text in preset_names():
        return _preset(text)
    path = Path(name_or_path)
    if not path.is_file():
        raise ProtocolError(
            f"{text}: neither a preset ({', '.join(preset_names())}) nor a protocol file"
        )
    try:
        content = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: cannot read: {exc}") from exc
    return parse_protocol(content, where=str(path))
