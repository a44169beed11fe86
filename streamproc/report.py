"""Replay reports: per bed and protocol, time in each MAP band, time with targets missed,
alert counts and burden, artefact time (``streamproc replay --report DIR``).

Two pieces, both pure:

* :class:`TraceRecorder` watches what ``ingest()`` made of each message and keeps, per bed,
  the MAP trace (numerics, or MAP derived from the ABP waveform with the same code the
  evaluator runs) and the artefact times. It does not depend on the protocol.
* :func:`summarise` combines a bed's trace with one protocol's alert events.

:func:`write_report` writes ``alerts.jsonl``, ``summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import json
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from streamproc.errors import RejectedReading
from streamproc.events import (
    ArtefactReading,
    BedContext,
    BedKey,
    ContextUpdate,
    Reading,
    WaveformChunk,
)
from streamproc.ingest import Outcome
from streamproc.models import AlertEventPayload
from streamproc.protocol import Protocol
from streamproc.timestamps import format_ts
from streamproc.waveform import WaveformState, derive_events

__all__ = [
    "BAND_ZONES",
    "BedTrace",
    "ProtocolRun",
    "TraceRecorder",
    "report_settings",
    "summarise",
    "write_report",
]

#: MAP zones a report counts time in, lowest first.
BAND_ZONES: Final = ("below_floor", "below_band", "in_band", "above_band", "artefact", "no_data")


@cache
def report_settings() -> dict[str, Any]:
    text = (
        resources.files("streamproc.presets").joinpath("replay", "report.toml").read_text("utf-8")
    )
    settings: dict[str, Any] = tomllib.loads(text)
    return settings


@dataclass(slots=True)
class BedTrace:
    """One bed's MAP trace; ``nan`` marks an artefact (a MAP that must not be used)."""

    ward: str
    bed: str
    ts: list[float] = field(default_factory=list)
    map: list[float] = field(default_factory=list)
    first: float | None = None
    last: float | None = None
    context: BedContext | None = None

    def seen(self, ts: float) -> None:
        self.first = ts if self.first is None else min(self.first, ts)
        self.last = ts if self.last is None else max(self.last, ts)

    def add(self, ts: float, value: float) -> None:
        self.ts.append(ts)
        self.map.append(value)
        self.seen(ts)

    @property
    def hours(self) -> float:
        return 0.0 if self.first is None or self.last is None else (self.last - self.first) / 3600


class TraceRecorder:
    """Collects every bed's MAP trace from the events ``ingest()`` decoded."""

    def __init__(self) -> None:
        self.beds: dict[BedKey, BedTrace] = {}
        self._waveforms: dict[BedKey, WaveformState] = {}

    def _trace(self, ward: str, bed: str) -> BedTrace:
        trace = self.beds.get((ward, bed))
        if trace is None:
            trace = self.beds[ward, bed] = BedTrace(ward, bed)
        return trace

    def observe(self, event: object, artefact: ArtefactReading | None = None) -> None:
        """One decoded event (or the artefact of an implausible reading)."""
        if artefact is not None:
            self._observe(artefact)
        if event is not None:
            self._observe(event)

    def observe_outcome(self, outcome: Outcome) -> None:
        """What ``ingest()`` made of one message (the replay loop's ``observe`` hook)."""
        artefact = None if outcome.rejection is None else outcome.rejection.artefact
        self.observe(outcome.event, artefact)

    def _observe(self, event: object) -> None:
        if isinstance(event, Reading):
            trace = self._trace(event.ward, event.bed)
            if "map" in event.values:
                trace.add(event.ts, event.values["map"])
            else:
                trace.seen(event.ts)
        elif isinstance(event, ArtefactReading):
            trace = self._trace(event.ward, event.bed)
            if "map" in event.signals:
                trace.add(event.ts, float("nan"))
        elif isinstance(event, WaveformChunk):
            self._observe_waveform(event)
        elif isinstance(event, ContextUpdate):
            self._trace(event.ward, event.bed).context = event.context

    def _observe_waveform(self, chunk: WaveformChunk) -> None:
        key = (chunk.ward, chunk.bed)
        state = self._waveforms.get(key)
        if state is None:
            state = self._waveforms[key] = WaveformState()
        try:
            derived = derive_events(state, chunk)
        except RejectedReading:  # an overlapping chunk: the evaluator rejects it too
            return
        for event in derived:
            self._observe(event)


class AlertRow(NamedTuple):
    """What a report keeps of one alert event (a replay can produce millions)."""

    alert_id: str
    event: str
    state: str
    rule: str
    priority: str
    kind: str
    onset: float
    at: float


class ProtocolRun:
    """One protocol's pass over the recording: the alert events it produced, by bed."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.by_bed: dict[BedKey, list[AlertRow]] = defaultdict(list)

    def add(self, alert: AlertEventPayload) -> None:
        row = AlertRow(
            alert.alert_id,
            alert.event,
            alert.state,
            alert.rule,
            alert.priority,
            alert.kind,
            _epoch(alert.onset),
            _epoch(alert.at),
        )
        self.by_bed[alert.ward, alert.bed].append(row)

    def bed_alerts(self, ward: str, bed: str) -> Sequence[AlertRow]:
        return self.by_bed.get((ward, bed), ())


@lru_cache(maxsize=1 << 16)
def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _durations(ts: npt.NDArray[np.float64], end: float, hold: float) -> npt.NDArray[np.float64]:
    """How long each reading stands for: until the next one (the last: until ``end``)."""
    nxt = np.append(ts[1:], max(end, float(ts[-1])))
    held: npt.NDArray[np.float64] = np.minimum(nxt - ts, hold)
    return held


def map_time(trace: BedTrace, protocol: Protocol, *, hold: float) -> dict[str, float]:
    """Seconds in each of :data:`BAND_ZONES` under ``protocol`` (carry-forward, capped)."""
    out = dict.fromkeys(BAND_ZONES, 0.0)
    if not trace.ts or trace.first is None or trace.last is None:
        return out
    ts = np.asarray(trace.ts)
    values = np.asarray(trace.map)
    held = _durations(ts, trace.last, hold)
    band = protocol.band_at(trace.context, float(ts[0]), None)
    floor = protocol.floor
    artefact = np.isnan(values)
    out["artefact"] = float(held[artefact].sum())
    ok = ~artefact
    out["below_floor"] = float(held[ok & (values < floor)].sum())
    out["below_band"] = float(held[ok & (values >= floor) & (values < band.low)].sum())
    out["in_band"] = float(
        held[ok & (values >= max(band.low, floor)) & (values <= band.high)].sum()
    )
    out["above_band"] = float(held[ok & (values > band.high)].sum())
    out["no_data"] = max(0.0, (trace.last - trace.first) - float(held.sum()))
    return out


@dataclass(slots=True)
class AlertSpan:
    """One alert's life::

        onset ──(onset delay)──▶ raised ──active──▶ latched ──(awaiting ack)──▶ … end
        └──────────── condition periods ─────────┘  (re-opened if it turns active again)

    ``end`` is when it cleared, or the end of the recording if it never did.
    """

    onset: float
    raised: float
    end: float
    priority: str
    #: ``[start, stop]`` periods in which the alert condition held (a target was missed)
    condition: list[list[float]] = field(default_factory=list)

    @property
    def latched(self) -> bool:
        return bool(self.condition) and self.condition[-1][1] < self.end


def alert_spans(alerts: Iterable[AlertRow], *, end: float) -> dict[str, list[AlertSpan]]:
    """Per rule, every alert's span; an alert still open at the end runs to ``end``."""
    spans: dict[str, dict[str, AlertSpan]] = defaultdict(dict)
    for alert in alerts:
        by_id = spans[alert.rule]
        span = by_id.get(alert.alert_id)
        if span is None:
            stop = max(end, alert.at)
            span = AlertSpan(alert.onset, alert.at, stop, alert.priority, [[alert.onset, stop]])
            by_id[alert.alert_id] = span
        _follow(span, alert)
    return {rule: list(by_id.values()) for rule, by_id in spans.items()}


def _follow(span: AlertSpan, alert: AlertRow) -> None:
    if alert.event == "escalated":
        span.priority = alert.priority
    holding = span.condition[-1][1] == span.end  # the last period is still open
    if alert.state in ("latched", "cleared") and holding:
        span.condition[-1][1] = alert.at
    elif alert.state in ("active", "acknowledged") and not holding:
        span.condition.append([alert.at, span.end])
    if alert.event == "cleared":
        span.end = alert.at
        span.condition[-1][1] = min(span.condition[-1][1], alert.at)


def _union_seconds(spans: Iterable[AlertSpan], *, lo: float, hi: float) -> float:
    """Seconds within ``[lo, hi]`` (the bed's recording) in which an alert condition held."""
    periods = sorted((max(p[0], lo), min(p[1], hi)) for span in spans for p in span.condition)
    total, reach = 0.0, float("-inf")
    for begin, stop in periods:
        start = max(begin, reach)
        if stop > start:
            total += stop - start
            reach = stop
    return total


def summarise(trace: BedTrace, run: ProtocolRun) -> dict[str, Any]:
    """One bed under one protocol, as plain JSON-able numbers."""
    protocol = run.protocol
    hold = float(report_settings()["time"]["hold_s"])
    end = trace.last if trace.last is not None else 0.0
    bed_alerts = run.bed_alerts(trace.ward, trace.bed)
    spans = alert_spans(bed_alerts, end=end)
    raised = [a for a in bed_alerts if a.event == "raised"]
    by_kind = Counter(a.kind for a in raised)
    by_rule: dict[str, dict[str, int]] = defaultdict(dict)
    for (rule, priority), n in sorted(Counter((a.rule, a.priority) for a in raised).items()):
        by_rule[rule][priority] = n
    band = protocol.band_at(trace.context, trace.first or 0.0, None)
    return {
        "protocol": protocol.name,
        "floor": protocol.floor,
        "band": {"low": band.low, "high": band.high},
        "map_time_s": map_time(trace, protocol, hold=hold),
        "target_missed_s": {
            rule: _union_seconds(s, lo=trace.first or 0.0, hi=end)
            for rule, s in sorted(spans.items())
        },
        "alerts": dict(by_rule),
        "alerts_raised": len(raised),
        "alerts_by_kind": dict(sorted(by_kind.items())),
        "escalations": sum(a.event == "escalated" for a in bed_alerts),
        "alerts_per_bed_hour": len(raised) / trace.hours if trace.hours > 0 else None,
    }


def _bed_entry(trace: BedTrace, runs: Sequence[ProtocolRun]) -> dict[str, Any]:
    return {
        "ward": trace.ward,
        "bed": trace.bed,
        "start": None if trace.first is None else format_ts(trace.first),
        "end": None if trace.last is None else format_ts(trace.last),
        "hours": trace.hours,
        "map_readings": int(np.isfinite(np.asarray(trace.map)).sum()) if trace.map else 0,
        "protocols": {run.protocol.name: summarise(trace, run) for run in runs},
    }


def _totals(beds: Sequence[Mapping[str, Any]], runs: Sequence[ProtocolRun]) -> dict[str, Any]:
    totals: dict[str, Any] = {}
    hours = sum(b["hours"] for b in beds)
    for run in runs:
        name = run.protocol.name
        per_bed = [b["protocols"][name] for b in beds]
        zones = {z: sum(p["map_time_s"][z] for p in per_bed) for z in BAND_ZONES}
        missed: Counter[str] = Counter()
        alerts: dict[str, Counter[str]] = defaultdict(Counter)
        for p in per_bed:
            missed.update(p["target_missed_s"])
            for rule, by_priority in p["alerts"].items():
                alerts[rule].update(by_priority)
        raised = sum(p["alerts_raised"] for p in per_bed)
        kinds: Counter[str] = Counter()
        for p in per_bed:
            kinds.update(p["alerts_by_kind"])
        totals[name] = {
            "beds": len(per_bed),
            "bed_hours": hours,
            "map_time_s": zones,
            "target_missed_s": dict(sorted(missed.items())),
            "alerts": {rule: dict(c) for rule, c in sorted(alerts.items())},
            "alerts_raised": raised,
            "alerts_by_kind": dict(sorted(kinds.items())),
            "alerts_per_bed_hour": raised / hours if hours > 0 else None,
        }
    return totals


def build_summary(
    recorder: TraceRecorder, runs: Sequence[ProtocolRun], *, sources: Sequence[str]
) -> dict[str, Any]:
    beds = [_bed_entry(t, runs) for _, t in sorted(recorder.beds.items())]
    return {
        "sources": list(sources),
        "protocols": [run.protocol.name for run in runs],
        "secondary": True,
        "totals": _totals(beds, runs),
        "beds": beds,
    }


def write_report(
    directory: Path,
    recorder: TraceRecorder,
    runs: Sequence[ProtocolRun],
    *,
    sources: Sequence[str],
    max_bed_sections: int = 50,
) -> dict[str, Any]:
    """Write ``summary.json`` and ``summary.md`` (the replay streams ``alerts.jsonl``)."""
    directory.mkdir(parents=True, exist_ok=True)
    summary = build_summary(recorder, runs, sources=sources)
    (directory / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", "utf-8")
    markdown = render_markdown(summary, max_bed_sections=max_bed_sections)
    (directory / "summary.md").write_text(markdown, "utf-8")
    return summary


# -- Markdown ------------------------------------------------------------------------------

_ZONE_LABELS: Final = {
    "below_floor": "MAP below the floor",
    "below_band": "MAP above the floor, below the band",
    "in_band": "MAP in the band",
    "above_band": "MAP above the band",
    "artefact": "artefact (no usable MAP)",
    "no_data": "no MAP data",
}


def _hm(seconds: float) -> str:
    minutes = round(seconds / 60)
    return (
        f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{seconds / 60:.1f} min"
    )


def _pct(part: float, whole: float) -> str:
    return f" ({100 * part / whole:.0f} %)" if whole > 0 else ""


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _row(label: str, cells: Iterable[str]) -> list[str]:
    return [label, *cells]


def _protocol_table(entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Metrics down, protocols across (the side-by-side comparison)."""
    runs = list(entries.values())
    total = sum(runs[0]["map_time_s"].values())
    rows: list[list[str]] = []
    if "band" in runs[0]:
        rows.append(
            _row(
                "MAP band / floor",
                (f"{e['band']['low']:g}–{e['band']['high']:g} / {e['floor']:g} mmHg" for e in runs),
            )
        )
    rows += [
        _row(
            _ZONE_LABELS[z],
            (_hm(e["map_time_s"][z]) + _pct(e["map_time_s"][z], total) for e in runs),
        )
        for z in BAND_ZONES
    ]
    active = sorted({r for e in runs for r in e["target_missed_s"]})
    rows += [
        _row(f"time with `{r}` active", (_hm(e["target_missed_s"].get(r, 0.0)) for e in runs))
        for r in active
    ]
    raised = sorted({r for e in runs for r in e["alerts"]})
    rows += [
        _row(f"alerts `{r}`", (_by_priority(e["alerts"].get(r, {})) for e in runs)) for r in raised
    ]
    rows.append(_row("alerts raised", (str(e["alerts_raised"]) for e in runs)))
    kinds = sorted({k for e in runs for k in e["alerts_by_kind"]})
    rows += [
        _row(f"… of them {k}", (str(e["alerts_by_kind"].get(k, 0)) for e in runs)) for k in kinds
    ]
    rows.append(_row("alerts per bed-hour", (_rate(e["alerts_per_bed_hour"]) for e in runs)))
    return _table(["", *(f"`{n}`" for n in entries)], rows)


def _by_priority(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {p}" for p, n in sorted(counts.items())) or "–"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render_markdown(summary: Mapping[str, Any], *, max_bed_sections: int = 50) -> str:
    beds = summary["beds"]
    hours = sum(b["hours"] for b in beds)
    lines = [
        "# streamproc replay report",
        "",
        (
            "> streamproc is a secondary alerting system: these alerts never replace the "
            "bedside monitor's own alarms."
        ),
        "",
        f"- recordings: {', '.join(f'`{s}`' for s in summary['sources'])}",
        f"- protocols: {', '.join(f'`{p}`' for p in summary['protocols'])}",
        f"- beds: {len(beds)}, {hours:.1f} bed-hours",
        "",
        "## All beds",
        "",
        *_protocol_table(summary["totals"]),
        "",
    ]
    for bed in beds[:max_bed_sections]:
        lines += [
            f"## Bed `{bed['ward']}/{bed['bed']}`",
            "",
            (
                f"{bed['start']} → {bed['end']} "
                f"({bed['hours']:.2f} h, {bed['map_readings']} MAP values)"
            ),
            "",
            *_protocol_table(bed["protocols"]),
            "",
        ]
    if len(beds) > max_bed_sections:
        lines += [f"*{len(beds) - max_bed_sections} more beds: see `summary.json`.*", ""]
    return "\n".join(lines)
