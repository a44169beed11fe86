"""``streamproc protocols [NAME]`` and ``streamproc check FILE``: protocols for people.

``protocols`` lists the presets, or explains one protocol's targets in plain words;
``check`` validates a protocol file (or a service configuration file) and names the field
that is wrong.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamproc.protocol import (
    ArtefactSpec,
    AssessmentSpec,
    BandSpec,
    LatestSpec,
    PerfusionSpec,
    Protocol,
    RuleSpec,
    SilenceSpec,
    SkinColdSpec,
    SustainedSpec,
    TrialHintSpec,
    load_protocol,
    preset_names,
)

__all__ = ["configure_parser", "explain", "explain_rule"]

_SIGNAL_WORDS = {
    "map": ("MAP", "mmHg"),
    "svo2": ("SvO2", "%"),
    "cvp": ("CVP", "mmHg"),
    "crt": ("capillary refill time", "s"),
    "lactate": ("lactate", "mmol/L"),
    "mottling": ("the mottling score", ""),
    "urine_output": ("urine output", "mL/kg/h"),
}


def _words(signal: str) -> tuple[str, str]:
    return _SIGNAL_WORDS.get(signal, (signal, ""))


def _qty(value: float, unit: str) -> str:
    return f"{value:g} {unit}".rstrip()


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _sustained(spec: SustainedSpec) -> str:
    name, unit = _words(spec.signal)
    parts = []
    if spec.low is not None:
        parts.append(f"below {_qty(spec.low, unit)}")
    if spec.high is not None:
        parts.append(f"above {_qty(spec.high, unit)}")
    back = []
    if spec.low is not None:
        back.append(f"at or above {_qty(spec.low + spec.clear_margin, unit)}")
    if spec.high is not None:
        back.append(f"at or below {_qty(spec.high - spec.clear_margin, unit)}")
    return (
        f"{name} stays {' or '.join(parts)} for {_duration(spec.onset_s)}. It clears when "
        f"{name} is back {' and '.join(back)} for {_duration(spec.clear_s)}."
    )


def _band(spec: BandSpec) -> str:
    if spec.side == "below":
        text = (
            f"MAP stays below the lower bound of the band in force for {_duration(spec.onset_s)} "
            "(only where that bound is above the safety floor)."
        )
    else:
        text = f"MAP stays above the upper bound of the band in force for {_duration(spec.onset_s)}"
        text += " while the perfusion targets are met." if spec.only_when_perfused else "."
    return text + (
        f" It clears {spec.clear_margin:g} mmHg back inside the band for {_duration(spec.clear_s)}."
    )


def _latest(spec: LatestSpec) -> str:
    name, unit = _words(spec.signal)
    if spec.at_or_above is not None:
        limit = f"at or above {_qty(spec.at_or_above, unit)}"
    else:
        limit = f"below {_qty(spec.below or 0.0, unit)}"
    if isinstance(spec, TrialHintSpec):
        limit += " and no oliguria MAP trial is running (it suggests one)"
    return f"the latest {name} is {limit}. The next normal value clears it."


def _skin(spec: SkinColdSpec) -> str:
    return (
        f"core − skin temperature is {spec.core_skin_gradient:g} °C or more, or forearm − "
        f"fingertip {spec.forearm_fingertip_gradient:g} °C or more, for "
        f"{_duration(spec.onset_s)}. Without a reference probe fresher than "
        f"{_duration(spec.reference_max_age_s)}, skin temperature below "
        f"{spec.fallback_skin_below:g} °C counts instead. It clears "
        f"{spec.clear_margin:g} °C back inside for {_duration(spec.clear_s)}."
    )


def _perfusion(spec: PerfusionSpec) -> str:
    return f"any of {', '.join(spec.components)} is raised; the alert lists which."


def _assessment(spec: AssessmentSpec) -> str:
    fixed = "".join(
        f"; {signal} every {_duration(every)}" for signal, every in spec.fixed_interval_s.items()
    )
    return (
        f"no new value of {', '.join(spec.signals)} within the interval: every "
        f"{_duration(spec.early_interval_s)} for the first {_duration(spec.early_period_s)} "
        f"after the protocol started, every {_duration(spec.late_interval_s)} after that{fixed}."
    )


def _silence(spec: SilenceSpec) -> str:
    what = f"no {_words(spec.signal)[0]}" if spec.signal else "nothing from a device"
    return f"{what} has arrived for {_duration(spec.after_s)} (on the clock)."


def _artefact(spec: ArtefactSpec) -> str:
    return (
        f"more than {spec.dominant_fraction:.0%} of the bed's readings in the last "
        f"{_duration(spec.window_s)} are artefacts (at least {spec.min_artefacts})."
    )


_EXPLAINERS: dict[type[Any], Callable[[Any], str]] = {
    SustainedSpec: _sustained,
    BandSpec: _band,
    LatestSpec: _latest,
    SkinColdSpec: _skin,
    PerfusionSpec: _perfusion,
    AssessmentSpec: _assessment,
    SilenceSpec: _silence,
    ArtefactSpec: _artefact,
}


def explain_rule(name: str, spec: RuleSpec) -> str:
    """One rule in plain words: when it fires, how urgent, where the numbers come from."""
    family = next(f for t, f in _EXPLAINERS.items() if isinstance(spec, t))
    latch = " Latches until acknowledged." if spec.latching else ""
    return (
        f"{name} ({spec.priority} priority, {spec.kind}): alerts when {family(spec)}{latch}\n"
        f"    source: {spec.source}"
    )


def explain(protocol: Protocol) -> str:
    """A protocol in plain words."""
    bands = protocol.bands
    lines = [
        f"{protocol.name}: {protocol.title}",
        "",
        protocol.description,
        "",
        f"Source: {protocol.source}",
        "",
        "MAP target bands (mmHg), by the bed's context:",
        f"  standard              {bands.standard.low:g}–{bands.standard.high:g}",
        (
            f"  chronic hypertension  {bands.chronic_hypertension.low:g}–"
            f"{bands.chronic_hypertension.high:g}"
        ),
        (
            f"  oliguria MAP trial    {bands.map_trial.low:g}–{bands.map_trial.high:g} "
            f"(ends at map_trial_until, at most {_duration(protocol.trial.max_duration_s)} "
            "after its first reading)"
        ),
        f"  safety floor          {protocol.floor:g}",
        "",
        "Rules:",
    ]
    lines += [f"  {explain_rule(n, s)}" for n, s in protocol.rules.enabled().items()]
    esc = protocol.escalation
    lines += [
        "",
        (
            f"Unacknowledged {esc.from_priority}-priority alerts escalate to "
            f"{esc.to_priority} after {_duration(esc.after_s)} ({esc.source})."
        ),
    ]
    return "\n".join(lines)


def _list_presets() -> str:
    rows = [(name, load_protocol(name).title) for name in preset_names()]
    width = max(len(name) for name, _ in rows)
    body = "\n".join(f"  {name:<{width}}  {title}" for name, title in rows)
    return f"Protocol presets:\n{body}\n\n`streamproc protocols NAME` explains one."


def _protocols(args: argparse.Namespace) -> int:
    print(explain(load_protocol(args.name)) if args.name else _list_presets())
    return 0


def _check(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if _is_protocol_file(path):
        protocol = load_protocol(path)
        rules = protocol.rules.enabled()
        print(f"{path}: valid protocol {protocol.name!r} with {len(rules)} rules")
        return 0
    from streamproc.settings import load_settings  # the service's settings, read as it would

    settings = load_settings(config_file=path)
    extra = {load_protocol(file).name for file in settings.protocol_files}
    if settings.protocol not in extra:
        load_protocol(settings.protocol)  # the default protocol must exist too
    print(
        f"{path}: valid service configuration (with the STREAMPROC_* environment): broker "
        f"{settings.broker}, instance {settings.instance!r}, default protocol "
        f"{settings.protocol!r}, {len(extra)} extra protocol file(s)"
    )
    return 0


def _is_protocol_file(path: Path) -> bool:
    """A file with any protocol field is a protocol; anything else a service config."""
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # let the protocol loader say what is wrong with it
    return not raw or not raw.keys().isdisjoint(Protocol.model_fields)


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = subparsers.add_parser(
        "protocols",
        help="list the protocol presets, or explain one",
        description="Without NAME, list the protocol presets. With NAME (a preset or a "
        "protocol file), explain every target and rule in plain words, with its source.",
    )
    listing.add_argument("name", nargs="?", metavar="NAME", help="a preset name or a file")
    listing.set_defaults(handler=_protocols)
    check = subparsers.add_parser(
        "check",
        help="validate a protocol file or a service configuration file",
        description="Validate a protocol TOML file (one with protocol fields such as name, "
        "[bands], [rules]; see streamproc/presets/) or a service configuration TOML file (as "
        "`streamproc run --config FILE` reads it, with the STREAMPROC_* environment). Exit "
        "status 0 if valid; otherwise the error names the field that is wrong.",
    )
    check.add_argument("file", metavar="FILE", help="a protocol or configuration file (TOML)")
    check.set_defaults(handler=_check)
