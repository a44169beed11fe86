"""Per-bed replay plots (``streamproc replay --plot``): matplotlib, an optional extra.

One PNG per bed, one pair of panels per protocol, sharing the time axis:

* MAP: the trace, the protocol's band (shaded) and floor (dashed), artefact spans (grey);
* alerts: one lane per rule, a bar from onset to clear, coloured by priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from streamproc.errors import ConfigError
from streamproc.report import AlertSpan, BedTrace, ProtocolRun, alert_spans, report_settings

__all__ = ["plot_bed", "plot_beds"]

_PRIORITY_COLOURS: Final = {"high": "#d62728", "medium": "#ff7f0e", "low": "#e6c229"}
_BAND_COLOUR: Final = "#2ca02c"
_FLOOR_COLOUR: Final = "#b22222"
_TRACE_COLOUR: Final = "#1f3b73"
#: Sparse traces (charted values) get a marker per value.
_MARKERS_BELOW: Final = 120
#: Panel heights in inches: the MAP trace, one alert lane, the least for the lanes.
_MAP_PANEL_IN: Final = 2.6
_LANE_IN: Final = 0.22
_MIN_LANES_IN: Final = 0.6


def _pyplot() -> Any:
    try:
        import matplotlib as mpl
    except ImportError as exc:
        raise ConfigError("--plot needs the plot extra: pip install 'streamproc[plot]'") from exc
    mpl.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _dates(ts: Sequence[float] | np.ndarray[Any, Any]) -> list[datetime]:
    return [datetime.fromtimestamp(t, tz=UTC) for t in ts]


def _artefact_spans(trace: BedTrace, hold: float) -> list[tuple[float, float]]:
    ts = np.asarray(trace.ts)
    values = np.asarray(trace.map)
    nxt = np.append(ts[1:], ts[-1] + 1.0) if ts.size else ts
    spans: list[tuple[float, float]] = []
    for start, following in zip(ts[np.isnan(values)], nxt[np.isnan(values)], strict=True):
        stop = min(following, start + hold)
        if spans and start <= spans[-1][1] + 1e-9:
            spans[-1] = (spans[-1][0], max(spans[-1][1], stop))
        else:
            spans.append((float(start), float(stop)))
    return spans


def _trace_with_gaps(
    trace: BedTrace, hold: float
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """The MAP line, broken (NaN) at artefacts and at gaps longer than ``hold``."""
    ts = np.asarray(trace.ts, dtype=np.float64)
    values = np.asarray(trace.map, dtype=np.float64)
    gaps = np.flatnonzero(np.diff(ts) > hold) + 1
    return np.insert(ts, gaps, ts[gaps - 1] + 1.0), np.insert(values, gaps, np.nan)


def _map_panel(ax: Any, trace: BedTrace, run: ProtocolRun, hold: float) -> None:
    """The MAP trace over the protocol's band and floor, with the artefact spans."""
    band = run.protocol.band_at(trace.context, trace.first or 0.0, None)
    floor = run.protocol.floor
    label = f"target band {band.low:g}–{band.high:g} mmHg"
    ax.axhspan(band.low, band.high, color=_BAND_COLOUR, alpha=0.15, lw=0, label=label)
    ax.axhline(floor, color=_FLOOR_COLOUR, ls="--", lw=1.2, label=f"safety floor {floor:g} mmHg")
    for i, (start, stop) in enumerate(_artefact_spans(trace, hold)):
        first = "artefact (no MAP used)" if i == 0 else None
        ax.axvspan(*_dates([start, stop]), color="0.6", alpha=0.35, lw=0, hatch="//", label=first)
    ts, values = _trace_with_gaps(trace, hold)
    marker = "o" if ts.size < _MARKERS_BELOW else None
    ax.plot(_dates(ts), values, color=_TRACE_COLOUR, lw=1.0, marker=marker, ms=3, label="MAP")
    finite = values[np.isfinite(values)]
    low = min(float(finite.min()), floor) if finite.size else floor
    high = max(float(finite.max()), band.high) if finite.size else band.high
    ax.set_ylim(max(0.0, low - 10), high + 10)
    ax.set_ylabel("MAP (mmHg)")
    ax.set_title(f"{trace.ward}/{trace.bed} — {run.protocol.title}", loc="left", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7, ncol=2, framealpha=0.85)


def _alert_lanes(ax: Any, trace: BedTrace, run: ProtocolRun) -> None:
    """One lane per rule: the onset delay hatched, the condition solid, latched (awaiting an
    acknowledgement) as an outline, up to the clear or the end of the recording."""
    end = trace.last if trace.last is not None else 0.0
    spans = alert_spans(run.bed_alerts(trace.ward, trace.bed), end=end)
    rules = sorted(spans)
    for lane, rule in enumerate(rules):
        for span in spans[rule]:
            _draw_span(ax, lane, span)
    ax.set_yticks(range(len(rules)), rules, fontsize=7)
    ax.set_ylim(-0.7, max(len(rules), 1) - 0.3)
    if not rules:
        ax.text(
            0.5,
            0.5,
            "no alerts",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="0.4",
        )
        ax.set_yticks([])
    ax.grid(axis="x", alpha=0.3)


def _bar(ax: Any, lane: int, start: float, stop: float, **style: Any) -> None:
    left, right = _dates([start, max(stop, start + 1.0)])
    ax.barh(lane, right - left, left=left, height=0.6, **style)


def _draw_span(ax: Any, lane: int, span: AlertSpan) -> None:
    colour = _PRIORITY_COLOURS.get(span.priority, "0.5")
    _bar(ax, lane, span.onset, span.end, facecolor="none", edgecolor=colour, lw=0.8)
    if span.raised > span.onset:
        _bar(ax, lane, span.onset, span.raised, color=colour, alpha=0.3, hatch="///", lw=0)
    for start, stop in span.condition:
        if stop > span.raised:
            _bar(ax, lane, max(start, span.raised), stop, color=colour, edgecolor="none")


def plot_bed(path: Path, trace: BedTrace, runs: Sequence[ProtocolRun]) -> Path:
    """Draw one bed under every protocol into ``path`` (PNG)."""
    plt = _pyplot()
    hold = float(report_settings()["time"]["hold_s"])
    ratios = _panel_heights(trace, runs)
    fig, axes = plt.subplots(
        len(ratios),
        1,
        sharex=True,
        figsize=(11, sum(ratios) + 1.2),
        gridspec_kw={"height_ratios": ratios},
        squeeze=False,
    )
    for i, run in enumerate(runs):
        _map_panel(axes[2 * i][0], trace, run, hold)
        _alert_lanes(axes[2 * i + 1][0], trace, run)
    _time_axis(axes[-1][0], trace)
    _legend(fig)
    fig.suptitle("streamproc replay (a secondary alerting system)", fontsize=9, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _panel_heights(trace: BedTrace, runs: Sequence[ProtocolRun]) -> list[float]:
    """Inches per panel: the MAP trace, then its alert lanes, per protocol."""
    end = trace.last if trace.last is not None else 0.0
    heights: list[float] = []
    for run in runs:
        lanes = len(alert_spans(run.bed_alerts(trace.ward, trace.bed), end=end))
        heights += [_MAP_PANEL_IN, max(_LANE_IN * lanes, _MIN_LANES_IN)]
    return heights


def _time_axis(ax: Any, trace: BedTrace) -> None:
    import matplotlib.dates as mdates

    if trace.first is not None and trace.last is not None:
        # the bed's own recording: a clock that ran on after it (other beds) is not drawn
        margin = max(1.0, 0.01 * (trace.last - trace.first))
        ax.set_xlim(*_dates([trace.first - margin, trace.last + margin]))
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))  # type: ignore[no-untyped-call]
    ax.set_xlabel("event time (UTC)")


def _legend(fig: Any) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=f"{p} priority alert") for p, c in _PRIORITY_COLOURS.items()]
    handles.append(Patch(facecolor="0.85", hatch="///", edgecolor="0.5", label="onset delay"))
    handles.append(Patch(facecolor="none", edgecolor="0.3", label="latched, awaiting ack"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=7, frameon=False)


def plot_beds(
    directory: Path, traces: Sequence[BedTrace], runs: Sequence[ProtocolRun]
) -> list[Path]:
    """One PNG per bed in ``directory`` (the first ``plot.max_beds`` beds of the preset)."""
    limit = int(report_settings()["plot"]["max_beds"])
    drawn = [t for t in traces if t.ts][:limit]
    return [plot_bed(directory / f"{t.ward}_{t.bed}.png", t, runs) for t in drawn]
