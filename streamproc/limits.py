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
    fs_min: float  # Hz: the lowest sampling rate of a waveform chunk
    fs_max: float  # Hz: the highest
    max_chunk_s: float  # seconds: the longest span of one waveform chunk


@cache
def wire_limits() -> WireLimits:
    """The shipped limits, loaded once."""
    text = resources.files("streamproc.presets").joinpath("wire", "limits.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    earliest: datetime = raw["time"]["earliest"]
    latest: datetime = raw["time"]["latest"]
    waveform = raw["waveform"]
    return WireLimits(
        earliest=earliest.timestamp(),
        latest=latest.timestamp(),
        fs_min=float(waveform["fs_min"]),
        fs_max=float(waveform["fs_max"]),
        max_chunk_s=float(waveform["max_chunk_s"]),
    )
