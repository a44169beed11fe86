"""The table of known signals: canonical units, plausible ranges and unit conversions.

The numbers live in ``presets/signals.toml`` (design §3.1); this module only loads them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = ["Conversion", "Signal", "signal_table"]


@dataclass(frozen=True, slots=True)
class Conversion:
    """canonical = value * scale + offset."""

    scale: float
    offset: float = 0.0

    def apply(self, value: float) -> float:
        return value * self.scale + self.offset


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    description: str
    unit: str
    low: float
    high: float
    aliases: frozenset[str] = frozenset()
    conversions: MappingProxyType[str, Conversion] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def plausible(self, value: float) -> bool:
        return self.low <= value <= self.high

    def converter(self, unit: str) -> Conversion | None:
        """The conversion to the canonical unit; identity for the unit itself; None if unknown."""
        if unit == self.unit or unit in self.aliases:
            return _IDENTITY
        return self.conversions.get(unit)


_IDENTITY = Conversion(scale=1.0)


def _signal(name: str, raw: dict[str, Any]) -> Signal:
    low, high = raw["plausible"]
    convert = {unit: Conversion(**c) for unit, c in raw.get("convert", {}).items()}
    return Signal(
        name=name,
        description=raw["description"],
        unit=raw["unit"],
        low=float(low),
        high=float(high),
        aliases=frozenset(raw.get("aliases", ())),
        conversions=MappingProxyType(convert),
    )


@cache
def signal_table() -> MappingProxyType[str, Signal]:
    """Every known signal by name, loaded once from the shipped preset."""
    text = resources.files("streamproc.presets").joinpath("signals.toml").read_text("utf-8")
    raw = tomllib.loads(text)["signals"]
    return MappingProxyType({name: _signal(name, spec) for name, spec in raw.items()})
