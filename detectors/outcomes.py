"""Serving latency and business KPIs of one model version (issue 15): their trackers, fed per
event or per run of rows, and the alerts they raise through the version's lifecycle. Pure: no I/O.
"""
from __future__ import annotations

import numpy as np

from detectors.columns import PredictionColumns
from detectors.kpi import KpiTracker, kpi_alert
from detectors.latency import LatencyTracker, latency_alert
from detectors.settings import ModelSettings
from detectors.suite import WindowSettings


class OutcomeWatch:
    """The latency and KPI trackers of one version."""

    def __init__(self, settings: ModelSettings, window_settings: WindowSettings):
        s = settings
        self.latency = LatencyTracker(s.reference_size, s.window_size, s.latency_rolling_size, s.latency_slo_ms,
                                      s.calibrate_ert_windows, window_settings)
        self.kpis = KpiTracker(s.kpis, s.performance_window, s.kpi_tolerance, s.kpi_alpha)

    def observe_event(self, kpis: dict, invalid: list, segment: dict | None) -> None:
        self.kpis.observe_event(kpis, segment)
        if invalid:
            self.kpis.reject(len(invalid))

    def feeder(self, batch: PredictionColumns):
        """``feed(stop)``: rows up to ``stop`` (from where the last call left off) go to
        :meth:`observe_rows`; a no-op for a batch without latencies or KPIs."""
        if not batch.kpis and np.isnan(batch.latency_ms).all() and not any(batch.invalid_kpis):
            return lambda stop: None
        fed = [0]

        def feed(stop: int) -> None:
            if stop > fed[0]:
                self.observe_rows(batch, fed[0], stop)
                fed[0] = stop
        return feed

    def observe_rows(self, batch: PredictionColumns, start: int, stop: int) -> None:
        """Rows ``start:stop`` of ``batch`` enter the reference or the open window: their
        latencies (NaN: none) and KPIs go to the trackers, one batch per KPI, as
        :meth:`observe_event` and ``latency.add`` take them one event at a time."""
        latency = batch.latency_ms[start:stop]
        present = ~np.isnan(latency)
        if present.any():
            self.latency.observe(latency[present])
        segments = None
        for name, column in batch.kpis.items():
            values = column[start:stop]
            rows = np.flatnonzero(~np.isnan(values))
            if not rows.size:
                continue
            if batch.segments and segments is None:
                segments = [batch.segment_of(j) for j in range(start, stop)]
            self.kpis.observe(name, values[rows],
                              None if segments is None else [segments[j] for j in rows.tolist()])
        refused = sum(len(names) for names in batch.invalid_kpis[start:stop])
        if refused:
            self.kpis.reject(refused)

    def alerts(self, latency, bounds: dict, issuer, common: dict, errors: dict, closing: bool = True) -> list:
        """Latency and KPI alerts through the version's lifecycle (``issuer``): at a window close, and
        for KPIs between closes too (``closing=False``: announces only, nothing counts as clear).
        Returns ``(decisions, bounds)``: ``("announce", kind, alert)`` and ``("resolved", kind, key)``
        in the order they are to be emitted, and the window bounds the resolved alerts carry.

        ``common``: the fields every alert of the version carries; ``errors``: where a failing KPI
        check is recorded (it never stops the window or the label).
        """
        found_items = []
        try:
            kpis = self.kpis.check()
        except Exception as exc:   # recorded; never stops the window or the label
            issuer.counts["check_errors"] += 1
            errors.setdefault("errors", {})["kpi"] = f"{type(exc).__name__}: {exc}"
            kpis = {}
        if bounds.get("n") is None:   # between closes: the rolling KPI values tested, as a performance alert
            bounds = {**bounds, "n": max((r.evidence["n_rolling"] for r in kpis.values()), default=0),
                      "size": self.kpis.window}
        common = {**common, "window": bounds}
        for kind, found, build in (
                ("latency", latency.findings() if latency is not None else {},
                 lambda keys: latency_alert(keys=keys, report=latency, **common)),
                ("kpi", kpis, lambda keys: kpi_alert(keys=keys, findings=kpis, **common))):
            held = frozenset() if closing else issuer.active(kind)
            announce, resolved = issuer.lifecycle.observe(common["window_index"], kind, set(found), held)
            if announce:
                found_items.append(("announce", kind, build(sorted(found))))
            for key in resolved:
                found_items.append(("resolved", kind, key))
        return found_items, bounds

    # -- checkpoint ----------------------------------------------------------------
    def to_state(self) -> dict:
        return {"latency": self.latency.to_state(), "kpis": self.kpis.to_state()}

    @classmethod
    def from_state(cls, state: dict, settings: ModelSettings, window_settings: WindowSettings) -> "OutcomeWatch":
        watch = cls(settings, window_settings)
        watch.latency.load_state(state["latency"])
        watch.kpis.load_state(state["kpis"])
        return watch
