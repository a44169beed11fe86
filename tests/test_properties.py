"""Properties of the evaluator over generated bedside histories (hypothesis)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

from bedside import BED, T0, WARD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamproc.errors import RejectedReading
from streamproc.evaluator import Evaluator
from streamproc.events import Ack, BedContext, ContextUpdate, Reading
from streamproc.models import dump
from streamproc.rules import ReadingRule, SkinColdRule

Step = tuple[str, float, float]  # (kind, seconds to wait before it, value)

_SIGNALS = {
    "map": st.floats(20.0, 120.0),
    "skin_temp": st.floats(25.0, 37.0),
    "core_temp": st.floats(35.0, 39.0),
    "crt": st.floats(1.0, 6.0),
    "lactate": st.floats(0.5, 6.0),
    "urine_output": st.floats(0.0, 2.0),
}
_WAIT = st.sampled_from([0.0, 1.0, 1.0, 1.0, 5.0, 20.0, 45.0, 400.0])
_STEP = st.one_of(
    *(st.tuples(st.just(name), _WAIT, values) for name, values in _SIGNALS.items()),
    st.tuples(st.just("tick"), _WAIT, st.just(0.0)),
    st.tuples(st.just("ack"), st.just(0.0), st.just(0.0)),
    st.tuples(st.just("context"), st.just(0.0), st.sampled_from([0.0, 1.0, 2.0, 3.0])),
    st.tuples(st.just("late"), st.just(0.0), st.floats(20.0, 120.0)),
)
_STEPS = st.lists(_STEP, max_size=120)


@dataclass
class Driver:
    """Plays steps into an evaluator; its own state (time, last alert) is part of the run."""

    evaluator: Evaluator
    t: float = 0.0
    last_alert: str | None = None
    output: list[bytes] = field(default_factory=list)

    def play(self, steps: Sequence[Step]) -> None:
        for kind, wait, value in steps:
            self.t += wait
            self._step(kind, value)

    def _step(self, kind: str, value: float) -> None:
        ts = T0 + self.t
        if kind == "tick":
            self._emit(self.evaluator.advance(ts))
        elif kind == "ack":
            if self.last_alert is not None:
                self._emit(self.evaluator.feed(Ack(WARD, BED, self.last_alert, "n")))
        elif kind == "context":
            flags = int(value)
            ctx = BedContext(
                patient="p",
                protocol="tartare2s-ttp" if flags != 3 else "tartare2s-sc",
                chronic_hypertension=bool(flags & 1),
                map_trial_until=ts + 3600 if flags & 2 else None,
                protocol_started=T0,
            )
            self._emit(self.evaluator.feed(ContextUpdate(WARD, BED, ctx)))
        else:
            signal, at = ("map", ts - 30) if kind == "late" else (kind, ts)
            self._feed(Reading(WARD, BED, at, {signal: value}))

    def _feed(self, event: Reading) -> None:
        try:
            alerts = self.evaluator.feed(event)
        except RejectedReading as exc:
            self.output.append(f"rejected {exc.reason}".encode())
            return
        self._emit(alerts)

    def _emit(self, alerts: list) -> None:  # type: ignore[type-arg]
        for alert in alerts:
            self.output.append(dump(alert))
            self.last_alert = alert.alert_id


def _run(steps: Sequence[Step]) -> list[bytes]:
    driver = Driver(Evaluator())
    driver.play(steps)
    return driver.output


_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_STEPS)
def test_same_input_gives_byte_identical_output(steps: list[Step]) -> None:
    assert _run(steps) == _run(steps)


@_SETTINGS
@given(_STEPS, st.data())
def test_snapshot_restore_continue_equals_uninterrupted(
    steps: list[Step], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    whole = _run(steps)

    first = Driver(Evaluator())
    first.play(steps[:cut])
    saved = json.loads(json.dumps(first.evaluator.snapshot()))
    second = Driver(Evaluator.restore(saved), t=first.t, last_alert=first.last_alert)
    second.play(steps[cut:])
    assert first.output + second.output == whole


_IN_TARGET = st.one_of(
    st.tuples(st.just("map"), _WAIT, st.floats(52.0, 65.0)),
    st.tuples(st.just("skin_temp"), _WAIT, st.floats(33.0, 36.0)),
    st.tuples(st.just("core_temp"), _WAIT, st.floats(36.0, 38.0)),
    st.tuples(st.just("crt"), _WAIT, st.floats(0.5, 2.99)),
    st.tuples(st.just("lactate"), _WAIT, st.floats(0.5, 1.99)),
    st.tuples(st.just("urine_output"), _WAIT, st.floats(0.5, 3.0)),
    st.tuples(st.just("tick"), _WAIT, st.just(0.0)),
)


@_SETTINGS
@given(st.lists(_IN_TARGET, max_size=150))
def test_readings_that_meet_their_targets_raise_no_physiological_alert(
    steps: list[Step],
) -> None:
    driver = Driver(Evaluator())
    driver.play(steps)
    kinds = {json.loads(raw)["kind"] for raw in driver.output if raw.startswith(b"{")}
    assert "physiological" not in kinds


class _NoTickCache(Driver):
    """Forgets every bed's tick cache before each tick: ticks run in full every time."""

    def _step(self, kind: str, value: float) -> None:
        if kind == "tick":
            for bed in self.evaluator._beds.values():
                bed.tick_due = None
        super()._step(kind, value)


@_SETTINGS
@given(_STEPS)
def test_tick_cache_changes_nothing_but_cost(steps: list[Step]) -> None:
    uncached = _NoTickCache(Evaluator())
    uncached.play(steps)
    assert uncached.output == _run(steps)


@_SETTINGS
@given(_STEPS)
def test_quiet_ranges_change_nothing_but_cost(steps: list[Step]) -> None:
    """Skipping a signal's rules inside its quiet range gives the same alerts as judging."""
    evaluator = Evaluator()
    for name in ("tartare2s-ttp", "tartare2s-sc"):
        protocol = evaluator._protocol(name)
        assert protocol is not None
        evaluator._rules(protocol).quiet.clear()
    judged = Driver(evaluator)
    judged.play(steps)
    assert judged.output == _run(steps)


_SKIN_STEP = st.one_of(
    st.tuples(st.just("skin_temp"), _WAIT, st.floats(25.0, 37.0)),
    st.tuples(st.just("core_temp"), _WAIT, st.floats(35.0, 39.0)),
    st.tuples(st.just("skin_temp_ref"), _WAIT, st.floats(28.0, 37.0)),
    st.tuples(st.just("map"), _WAIT, st.floats(20.0, 120.0)),
    st.tuples(st.just("tick"), _WAIT, st.just(0.0)),
    st.tuples(st.just("context"), st.just(0.0), st.sampled_from([0.0, 1.0, 2.0, 3.0])),
)


@_SETTINGS
@given(st.lists(_SKIN_STEP, max_size=120))
def test_skin_cold_fast_path_changes_nothing_but_cost(steps: list[Step]) -> None:
    """Skipping skin.cold for a warm idle bed without reference probes gives the same alerts
    and the same state (a pending onset shows in the snapshot long before it raises)."""
    with patch.object(SkinColdRule, "check", ReadingRule.check):
        judged = _run_and_snapshot(steps)
    assert judged == _run_and_snapshot(steps)


def _run_and_snapshot(steps: Sequence[Step]) -> tuple[list[bytes], dict[str, Any]]:
    driver = Driver(Evaluator())
    driver.play(steps)
    return driver.output, driver.evaluator.snapshot()
