"""Everything the evaluator remembers about one bed, with ``snapshot()``/``restore()``."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Final

from streamproc.alerts import AlertBook, Header
from streamproc.events import BedContext
from streamproc.protocol import Protocol
from streamproc.waveform import WaveformState
from streamproc.windows import ArtefactWindow, DedupWindow, RollingWindow, SustainedCondition

if TYPE_CHECKING:
    from streamproc.rules import RuleSet

__all__ = ["DEDUP_WIDTH", "MAP_WINDOW_S", "BedState"]

#: How many sequence numbers behind the newest one a redelivery is recognised, per device.
DEDUP_WIDTH: Final = 1024
#: The span of the MAP statistics published with MAP alerts (``map_mean_60s``, design §3.4).
MAP_WINDOW_S: Final = 60.0


class BedState:
    """Context, latest values, windows, rule trackers and open alerts of one bed."""

    __slots__ = (
        "alerts",
        "arrivals",
        "artefacts",
        "bed",
        "clock",
        "context",
        "first_ts",
        "latest",
        "map_arrival",
        "map_window",
        "newest_ts",
        "overdue_next",
        "protocol",
        "rules",
        "seen",
        "tick_due",
        "trackers",
        "trial_start",
        "ward",
        "waveform",
    )

    def __init__(self, ward: str, bed: str, protocol: Protocol, rules: RuleSet) -> None:
        self.ward, self.bed = ward, bed
        self.protocol = protocol
        self.rules = rules  # the protocol's rules, built once per protocol by the evaluator
        self.context: BedContext | None = None  # None: evaluated with the default protocol
        #: signal → (value, event time) of the newest accepted reading
        self.latest: dict[str, tuple[float, float]] = {}
        self.first_ts: float | None = None
        self.newest_ts: float | None = None
        self.trial_start: float | None = None
        self.map_arrival: float | None = None  # arrival (or event) time of the newest MAP
        self.arrivals: dict[str, float] = {}  # device → arrival (or event) time
        self.seen: dict[str, DedupWindow] = {}  # device → sequence numbers seen
        self.map_window = RollingWindow(MAP_WINDOW_S)
        self.artefacts = ArtefactWindow(protocol.rules.signal_artefact.window_s)
        self.trackers: dict[str, SustainedCondition] = {}
        self.alerts = AlertBook()
        #: ABP waveform → 1-s MAP state (design §3.2); created by the bed's first chunk
        self.waveform: WaveformState | None = None
        #: cache of the earliest time an assessment can fall due (None: work it out); not
        #: state, so not in snapshots
        self.overdue_next: float | None = None
        #: cache: no clock rule can fire before this time (None: run them at the next tick)
        self.tick_due: float | None = None
        #: the tick clock of what is being evaluated (a message's arrival, offline its event
        #: time; a tick's now): when an alert raised now was raised, for escalation
        self.clock = 0.0

    def header(self) -> Header:
        patient = None if self.context is None else self.context.patient
        return Header(self.ward, self.bed, patient, self.protocol.name)

    def tracker(self, rule: str) -> SustainedCondition:
        tracker = self.trackers.get(rule)
        if tracker is None:
            tracker = self.trackers[rule] = SustainedCondition()
        return tracker

    def failing(self, rule: str) -> bool:
        tracker = self.trackers.get(rule)
        return tracker is not None and tracker.active

    def snapshot(self) -> dict[str, Any]:
        return {
            "ward": self.ward,
            "bed": self.bed,
            "protocol": self.protocol.name,
            "context": None if self.context is None else asdict(self.context),
            "latest": {k: list(v) for k, v in self.latest.items()},
            "first_ts": self.first_ts,
            "newest_ts": self.newest_ts,
            "trial_start": self.trial_start,
            "map_arrival": self.map_arrival,
            "arrivals": dict(self.arrivals),
            "seen": {k: v.snapshot() for k, v in self.seen.items()},
            "map_window": self.map_window.snapshot(),
            "artefacts": self.artefacts.snapshot(),
            "trackers": {k: v.snapshot() for k, v in self.trackers.items()},
            "alerts": self.alerts.snapshot(),
            "waveform": None if self.waveform is None else self.waveform.snapshot(),
        }

    @classmethod
    def restore(cls, data: dict[str, Any], protocol: Protocol, rules: RuleSet) -> BedState:
        state = cls(data["ward"], data["bed"], protocol, rules)
        raw_context = data["context"]
        state.context = None if raw_context is None else BedContext(**raw_context)
        state.latest = {k: (v[0], v[1]) for k, v in data["latest"].items()}
        state.first_ts, state.newest_ts = data["first_ts"], data["newest_ts"]
        state.trial_start, state.map_arrival = data["trial_start"], data["map_arrival"]
        state.arrivals = dict(data["arrivals"])
        state.seen = {k: DedupWindow.restore(v) for k, v in data["seen"].items()}
        state.map_window = RollingWindow.restore(data["map_window"])
        state.artefacts = ArtefactWindow.restore(data["artefacts"])
        state.trackers = {k: SustainedCondition.restore(v) for k, v in data["trackers"].items()}
        state.alerts = AlertBook.restore(data["alerts"])
        waveform = data.get("waveform")  # absent in snapshots from before waveforms
        state.waveform = None if waveform is None else WaveformState.restore(waveform)
        return state
