"""The reader mapping preset (``presets/replay/readers.toml``), loaded once."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["reader_preset"]


@cache
def reader_preset() -> dict[str, Any]:
    text = (
        resources.files("streamproc.presets").joinpath("replay", "readers.toml").read_text("utf-8")
    )
    preset: dict[str, Any] = tomllib.loads(text)
    return preset
