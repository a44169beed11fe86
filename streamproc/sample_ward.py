"""A minimal simulated ward for ``streamproc demo``: four kinds of bed, in fast-forward.

The full simulator (realistic physiology, artefacts, scenarios) lives in the ``devices``
package; this one only needs to make the demo show every kind of alert within seconds.
Readings start ``lead`` seconds in the past and run ``speed`` times faster than the wall
clock until they catch up with it, then in real time: a 60-s onset delay then takes
under 10 wall-clock seconds at the default speed, and no reading is ever ahead of the clock.

Bed ``n`` follows course ``n % 4``:

* ``stable``       — MAP about 72 mmHg, warm periphery, CRT and lactate normal;
* ``hypotension``  — MAP falls below the 50 mmHg floor and stays there (high priority);
* ``hypoperfusion``— MAP in band but CRT 4.2 s and lactate 3.4 mmol/L (medium priority);
* ``recovery``     — MAP below the floor for two minutes, then back at 62 (latches).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Callable
from typing import Final

from streamproc.mqtt import Publisher, open_publisher

__all__ = ["COURSES", "run_sample_ward", "sample_values"]

COURSES: Final = ("stable", "hypotension", "hypoperfusion", "recovery")


def sample_values(course: str, elapsed: float, rng: random.Random) -> dict[str, float]:
    """The readings of a bed on ``course``, ``elapsed`` event-time seconds into the demo."""
    noise = rng.gauss(0.0, 1.0)
    if course == "hypotension":
        map_value = max(44.0, 58.0 - elapsed) + noise
    elif course == "recovery":
        map_value = (46.0 if elapsed < 120 else 62.0) + noise
    else:
        map_value = 72.0 + 3.0 * math.sin(elapsed / 30.0) + noise
    skin = 33.5 if course in {"stable", "recovery"} else 31.5
    return {"map": round(map_value, 1), "skin_temp": skin, "core_temp": 37.4}


def _hourly(course: str) -> dict[str, float]:
    if course == "hypoperfusion":
        return {"crt": 4.2, "lactate": 3.4}
    return {"crt": 2.1, "lactate": 1.3}


def _context(bed: int, started: float) -> bytes:
    context = {
        "patient": f"demo-{bed:02d}",
        "protocol": "tartare2s-ttp",
        "chronic_hypertension": False,
        "weight_kg": 70,
        "protocol_started": started,
    }
    return json.dumps(context).encode()


async def run_sample_ward(
    *,
    broker: str,
    beds: int,
    ward: str = "w1",
    lead: float = 240.0,
    speed: float = 8.0,
    seed: int = 1,
    clock: Callable[[], float] = time.time,
) -> None:
    """Publish the ward's contexts, then one reading per bed per event-time second, forever."""
    rng = random.Random(seed)
    start = clock() - lead
    async with open_publisher(broker, identifier=f"sample-ward-{ward}") as publisher:
        for bed in range(1, beds + 1):
            topic = f"icu/{ward}/b{bed:02d}"
            await publisher.publish(f"{topic}/context", _context(bed, start), retain=True)
        await _readings(
            publisher, ward=ward, beds=beds, start=start, speed=speed, rng=rng, clock=clock
        )


async def _readings(
    publisher: Publisher,
    *,
    ward: str,
    beds: int,
    start: float,
    speed: float,
    rng: random.Random,
    clock: Callable[[], float],
) -> None:
    wall_start = clock()
    second = 0
    while True:
        ts = start + second
        for bed in range(1, beds + 1):
            course = COURSES[(bed - 1) % len(COURSES)]
            values = sample_values(course, second, rng)
            if second % 3600 == 0:
                values |= _hourly(course)
            payload = {"ts": ts, "device": f"mon-{bed:02d}", "seq": second, "values": values}
            await publisher.publish(f"icu/{ward}/b{bed:02d}/vitals", json.dumps(payload).encode())
        second += 1
        # fast-forward while behind the wall clock, real time once caught up
        due = max(wall_start + second / speed, start + second)
        await asyncio.sleep(max(0.0, due - clock()))
