"""Limits on inbound messages that are not physiology, from ``presets/wire/limits.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

__all__ = ["WireLimits", "wire_limits"]


@dataclass(frozen=True, slots=True)
class WireLimits:
    earliest: float  # epoch seconds: the earliest time a message may carry
    latest: float  # epoch seconds: the latest time a message may carry


@cache
def wire_limits() -> WireLimits:
    """The shipped limits, loaded once."""
    text = resources.files("streamproc.presets").joinpath("wire", "limits.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    earliest: datetime = raw["time"]["earliest"]
    latest: datetime = raw["time"]["latest"]
    return WireLimits(earliest=earliest.timestamp(), latest=latest.timestamp())
