"""Compare the alerts a run produced with the alerts its scenario expects.

Works on alert event payloads as plain dicts (from MQTT, or the JSON Lines of ``streamproc
replay``), so ``devices`` needs nothing of the evaluator. An expectation is met by a
``raised`` event of its rule and priority on the bed, whose ``at`` lies within the
tolerance of the expected time. Every other ``raised`` physiological alert is
*unexpected*; unexpected technical and advisory alerts are listed apart, as *other*.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devices.scenario import Expectation, Scenario

__all__ = ["Verdict", "check_alerts"]

Alert = Mapping[str, Any]


@dataclass(slots=True)
class Verdict:
    matched: list[tuple[Expectation, Alert]] = field(default_factory=list)
    missing: list[Expectation] = field(default_factory=list)
    unexpected: list[Alert] = field(default_factory=list)  # physiological
    other: list[Alert] = field(default_factory=list)  # technical / advisory, not expected

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected

    def describe(self, start_ts: float) -> str:
        def when(alert: Alert) -> str:
            return f"{(_epoch(alert['at']) - start_ts) / 60.0:.1f} min"

        lines = [f"missing {e.rule} ({e.priority}) at {e.at_min:g} min" for e in self.missing]
        lines += [f"unexpected {a['rule']} ({a['priority']}) at {when(a)}" for a in self.unexpected]
        lines += [f"other {a['rule']} ({a['priority']}) at {when(a)}" for a in self.other]
        return "; ".join(lines) or "as expected"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _meets(exp: Expectation, alert: Alert, start_ts: float) -> bool:
    if alert.get("rule") != exp.rule or alert.get("priority") != exp.priority:
        return False
    offset_min = (_epoch(alert["at"]) - start_ts) / 60.0
    return abs(offset_min - exp.at_min) <= exp.tolerance_min


def check_alerts(
    scenario: Scenario,
    alerts: Iterable[Alert],
    *,
    start_ts: float,
    duration_s: float | None = None,
    with_arrival_clock: bool = True,
) -> Verdict:
    """Judge one bed's alerts against its scenario; ``start_ts`` is event offset 0.

    Alerts raised after the run's end (``duration_s``, default the scenario's length) are
    not judged: the bed is silent then.

    ``with_arrival_clock=False`` leaves out expectations on the receiver's clock
    (``signal.lost``...), which a compressed live run cannot produce; such alerts are then
    neither required nor counted as unexpected.
    """
    end = start_ts + (scenario.duration_s if duration_s is None else duration_s)
    # after its end a bed is silent (in a mix, shorter scenarios end first): not judged
    raised = [a for a in alerts if a.get("event") == "raised" and _epoch(a["at"]) <= end]
    expectations = [e for e in scenario.expect if with_arrival_clock or e.clock == "event"]
    skipped_rules = {e.rule for e in scenario.expect if e not in expectations}
    verdict = Verdict()
    used: set[int] = set()
    for exp in expectations:
        match = next(
            (i for i, a in enumerate(raised) if i not in used and _meets(exp, a, start_ts)), None
        )
        if match is None:
            if not exp.optional:
                verdict.missing.append(exp)
        else:
            used.add(match)
            verdict.matched.append((exp, raised[match]))
    for i, alert in enumerate(raised):
        if i in used or alert.get("rule") in skipped_rules:
            continue
        target = verdict.unexpected if alert.get("kind") == "physiological" else verdict.other
        target.append(alert)
    return verdict
